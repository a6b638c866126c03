// What the server still owes the agent, in order, and which statement each
// answer belongs to: the Postgres session (session.ts) pushes an exchange
// for every Query, Execute, Sync and denial it sends upstream, and the
// server's CommandComplete / ErrorResponse / ReadyForQuery consume them,
// giving one record per statement (rows, duration, verdict, sqlstate).
import type { SqlFacts } from "../../families/sql/family.ts";

/** The verdict on one action (each statement of a message). */
export interface ActionOutcome {
  allow: boolean;
  /** The matched rule, if one matched. */
  rule?: string;
  /** Agent-safe reason (the denial's message). */
  reason: string;
  /** Extra event fields: an approval's (approvers, operator, approvalMs, remembered) and shadow verdicts. */
  approval?: Record<string, unknown>;
}

/** One statement's record (the shell turns it into an event). */
export interface StatementRecord {
  facts: SqlFacts;
  verdict: "allow" | "deny" | "error";
  rule?: string;
  reason: string;
  /** Rows from CommandComplete (`SELECT 3`, `INSERT 0 5`), when the tag has a count. */
  rows?: number;
  /** The server's SQLSTATE when it refused or failed the statement. */
  sqlstate?: string;
  /** The server's message for a failed statement (redacted by the event pass like every field). */
  detail?: string;
  startedAt: number;
  durationMs: number;
  approval?: Record<string, unknown>;
}

/** An exchange whose responses are still to come from the server, in order. */
export type Unit =
  | { kind: "query"; actions: SqlFacts[]; outcomes: ActionOutcome[]; index: number; failed: boolean; startedAt: number }
  | { kind: "execute"; actions: SqlFacts[]; outcomes: ActionOutcome[]; startedAt: number }
  | { kind: "sync" }
  /**
   * The raise the gateway sent for a denied message: its ErrorResponse is the
   * agent's denial. In the extended protocol the server first owes
   * ParseComplete and BindComplete for it, which are not the agent's (`swallow`).
   */
  | { kind: "denied"; simple: boolean; swallow: number };

export class ResponseLedger {
  private readonly units: Unit[] = [];

  push(unit: Unit): void {
    this.units.push(unit);
  }

  /** ParseComplete / BindComplete owed for the gateway's own raise (not the agent's): true when this one was. */
  owedForRaise(): boolean {
    // The exchanges before the raise have all been answered when its turn comes.
    const unit = this.units[0];
    if (unit?.kind !== "denied" || unit.swallow === 0) return false;
    unit.swallow--;
    return true;
  }

  /** CommandComplete or EmptyQueryResponse: the head exchange's statement ran. */
  completed(rows: number | undefined, now: number): StatementRecord[] {
    const unit = this.units[0];
    const out: StatementRecord[] = [];
    if (!unit) return out;
    if (unit.kind === "query") {
      const facts = unit.actions[unit.index];
      if (facts) {
        const o = unit.outcomes[unit.index];
        out.push({ facts, ...allowed(o), ...(rows !== undefined ? { rows } : {}), startedAt: unit.startedAt, durationMs: now - unit.startedAt });
      }
      unit.index++;
      unit.startedAt = now;
    } else if (unit.kind === "execute") {
      this.units.shift();
      unit.actions.forEach((facts, i) =>
        out.push({ facts, ...allowed(unit.outcomes[i]), ...(rows !== undefined ? { rows } : {}), startedAt: unit.startedAt, durationMs: now - unit.startedAt }),
      );
    }
    return out;
  }

  /** ErrorResponse: the head exchange failed (or it is our raise, `ourRaise`, the denial already recorded). */
  failed(code: string | undefined, message: string | undefined, now: number): { records: StatementRecord[]; ourRaise: boolean } {
    const unit = this.units[0];
    const out: StatementRecord[] = [];
    if (!unit) return { records: out, ourRaise: false };
    const base = { verdict: "error" as const, reason: "the database server refused the statement", ...(code ? { sqlstate: code } : {}), ...(message ? { detail: message } : {}) };
    if (unit.kind === "query") {
      const facts = unit.actions[unit.index];
      if (facts && !unit.failed) out.push({ facts, ...base, ...ruleOf(unit.outcomes[unit.index]), startedAt: unit.startedAt, durationMs: now - unit.startedAt });
      unit.failed = true;
    } else if (unit.kind === "execute") {
      this.units.shift();
      unit.actions.forEach((facts, i) => out.push({ facts, ...base, ...ruleOf(unit.outcomes[i]), startedAt: unit.startedAt, durationMs: now - unit.startedAt }));
    } else if (unit.kind === "denied") {
      // The raise did what it was sent for; the denial was recorded when judged.
      if (!unit.simple) this.units.shift();
      return { records: out, ourRaise: true };
    }
    return { records: out, ourRaise: false };
  }


  /** PortalSuspended: an Execute with a row limit stopped; it counts as done. */
  suspended(now: number): StatementRecord[] {
    return this.units[0]?.kind === "execute" ? this.completed(undefined, now) : [];
  }

  /** ReadyForQuery: whatever the server owed for this batch it has sent or skipped. */
  readyForQuery(): void {
    while (this.units.length > 0) {
      const u = this.units.shift()!;
      if (u.kind === "sync" || u.kind === "query" || (u.kind === "denied" && u.simple)) break;
    }
  }
}

function allowed(o: ActionOutcome | undefined): Pick<StatementRecord, "verdict" | "reason" | "rule" | "approval"> {
  return {
    verdict: "allow",
    reason: o?.reason ?? "allowed",
    ...(o?.rule !== undefined ? { rule: o.rule } : {}),
    ...(o?.approval ? { approval: o.approval } : {}),
  };
}

function ruleOf(o: ActionOutcome | undefined): { rule?: string } {
  return o?.rule !== undefined ? { rule: o.rule } : {};
}
