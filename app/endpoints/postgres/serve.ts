// The shell of a Postgres flow: with the database shell it shares with
// ClickHouse (../db-shell.ts), the only code here that touches sockets.
// It carries out the session's commands (session.ts) and feeds it events:
//   1. the agent's bytes (through TLS with the gateway's leaf once the agent asked),
//   2. the upstream: dialed by name, TLS per the endpoint's sslmode (upstream-tls.ts),
//   3. verdicts: each statement judged by the sql family's rules, approvals held here,
//   4. events: one per statement; cancel keys mapped to the upstream's.
import { randomBytes, randomInt } from "node:crypto";
import type { EndpointHandler, ServeRequest } from "../spec.ts";
import type { FlowDeps } from "../../dispatch/handle.ts";
import type { Decision } from "../../policy/types.ts";
import { needsDeferredFacts } from "../../policy/engine.ts";
import type { SqlFacts } from "../../families/sql/family.ts";
import { DbShell, passwordCredential } from "../db-shell.ts";
import { PostgresSession, type ActionOutcome, type MessageVerdict, type SessionCommand } from "./session.ts";
import { postgresSettings } from "./spec.ts";
import { openUpstream } from "./upstream-tls.ts";
import { cancelKeys, sendCancel } from "./cancel.ts";
import { loadSqlParser, parseSql } from "./sql.ts";
import { log } from "../../log.ts";

export const postgresHandler: EndpointHandler = {
  serve: (req, deps) => servePostgres(req, deps as FlowDeps),
};

async function servePostgres(req: ServeRequest, deps: FlowDeps): Promise<void> {
  const { flow, endpoint, upstream } = req;
  // The parser's WASM loads once (tens of ms); later flows find it ready.
  await loadSqlParser();
  const settings = postgresSettings(endpoint.settings);
  const policy = req.policy();
  const device = flow.device;
  const credential = passwordCredential(policy, endpoint, device.profile, deps);
  const processId = randomInt(1, 2 ** 31 - 1);
  const secretKey = new Uint8Array(randomBytes(4));
  const session = new PostgresSession({
    credential: credential.ok ? credential.value : undefined,
    allowMd5: settings.allowMd5,
    agentTls: true,
    now: Date.now,
    parse: parseSql,
    needsFacets: needsDeferredFacts(policy, endpoint, device.profile),
    // A reload makes a new Policy: prepared statements are judged again at their next Bind.
    policyVersion: deps.policy,
    processId,
    secretKey,
  });
  if (!credential.ok) log.warn("postgres credential unavailable", { flow: flow.id, endpoint: endpoint.ref, reason: credential.reason });

  let registered: string | undefined;
  const shell: DbShell<MessageVerdict, SessionCommand> = new DbShell({
    name: "postgres",
    req,
    deps,
    session,
    credentialRef: credential.ok ? credential.ref : undefined,
    onClose: () => {
      if (registered) cancelKeys.delete(registered);
    },
    execute: (c) => {
      switch (c.type) {
        case "start-agent-tls":
          shell.terminateAgentTls((t) => {
            t.on("secure", () => shell.run(session.handle({ type: "agent-tls-ready" })));
            t.on("data", shell.onAgentData);
            t.on("close", shell.onAgentClosed);
          });
          break;
        case "open-upstream":
          shell.openUpstream(openUpstream(upstream, settings, endpoint.caCertPem, deps.dial), (u) => {
            // Paused after the SSLRequest answer when the server said 'N' (sslmode = prefer).
            u.socket.resume();
            shell.run(session.handle({ type: "upstream-ready", tls: u.tls, ...(u.channelBinding ? { channelBinding: u.channelBinding } : {}) }));
          });
          break;
        case "judge": {
          const now = judgeWithoutApproval(c.actions, c.kind);
          if ("outcomes" in now) shell.decide(c.id, now);
          else shell.decideLater(c.id, judgeActions(c.actions, c.kind, now.judged));
          break;
        }
        case "cancel":
          void forwardCancel(c.processId, c.secretKey);
          break;
        case "register-keys":
          registered = keyOf(c.processId, c.secretKey);
          cancelKeys.set(registered, { processId: c.upstreamProcessId, secretKey: c.upstreamSecretKey, upstream, settings, caCertPem: endpoint.caCertPem });
          break;
        case "record": {
          const r = c.record;
          const action = { ...(r.rows !== undefined ? { rows: r.rows } : {}), ...(r.sqlstate ? { sqlstate: r.sqlstate } : {}) };
          shell.publish(r, r.durationMs, action, r.approval);
          break;
        }
        default:
          shell.carryOut(c);
      }
    },
  });
  shell.acceptAgent();

  /**
   * The verdict on each action when rules alone decide it (no approval is
   * asked for): the common case, answered without a promise per statement.
   * When an action needs an approval: the decisions taken so far (that one
   * last), which judgeActions goes on from (judging again would count a
   * rate-limited rule twice).
   */
  function judgeWithoutApproval(actions: SqlFacts[], kind: "statement" | "function-call"): { outcomes: ActionOutcome[] } | { judged: Decision[] } {
    const outcomes: ActionOutcome[] = [];
    const judged: Decision[] = [];
    for (const facts of actions) {
      const d = shell.judge(facts).decision;
      judged.push(d);
      if (d.verdict !== "allow" && d.verdict !== "deny") return { judged };
      shell.warnIfFailedClosed(d);
      const rule = d.rule !== undefined ? { rule: d.rule } : {};
      let outcome: ActionOutcome = { allow: d.verdict === "allow", reason: d.reason, ...rule, ...shadowOf(d) };
      if (kind === "function-call" && outcome.allow && d.rule === undefined) {
        outcome = { allow: false, reason: "a FunctionCall needs a rule that allows it" };
      }
      outcomes.push(outcome);
      if (!outcome.allow) break;
    }
    return { outcomes };
  }

  /** Shadow verdicts ride on the outcome's extra event fields. */
  function shadowOf(d: Decision): Pick<ActionOutcome, "approval"> {
    return d.shadow ? { approval: { shadow: d.shadow } } : {};
  }

  /** Rules for each action; an approval holds this session only. */
  async function judgeActions(actions: SqlFacts[], kind: "statement" | "function-call", judged: Decision[]): Promise<MessageVerdict> {
    const outcomes: ActionOutcome[] = [];
    for (const [i, facts] of actions.entries()) {
      const j = shell.judge(facts, judged[i]);
      const d = j.decision;
      if (i >= judged.length) shell.warnIfFailedClosed(d);
      let outcome: ActionOutcome = { ...(await shell.settle(j)) };
      if (d.shadow) outcome.approval = { ...outcome.approval, shadow: d.shadow };
      // A FunctionCall names a function by OID only: it goes through only when a rule allows it.
      if (kind === "function-call" && outcome.allow && d.rule === undefined) {
        outcome = { allow: false, reason: "a FunctionCall needs a rule that allows it" };
      }
      outcomes.push(outcome);
      if (!outcome.allow) break;
    }
    return { outcomes };
  }

  async function forwardCancel(pid: number, key: Uint8Array): Promise<void> {
    const target = cancelKeys.get(keyOf(pid, key));
    if (!target) return;
    await sendCancel(target, deps.dial).catch((e: Error) => log.debug("postgres cancel failed", { error: e.message }));
  }

  return shell.done;
}

function keyOf(processId: number, secretKey: Uint8Array): string {
  return `${processId}:${Buffer.from(secretKey).toString("hex")}`;
}
