// The command gate's kill switch on the gateway: an operator stops one
// device (or every device) at once. While it is on for a device:
//   - its wardens learn it at once (a long poll, GET /gate/kill) and end
//     their runs: running commands killed, the agent with them;
//   - every command it asks about is denied, and its held commands are
//     withdrawn (GateService does both);
//   - releasing it lets commands through again.
// The switch is held here and written to the state database by GateService
// (app/store/gate-kills.ts), which restores it at start: a restart does not
// release it.

export const ALL_DEVICES = "*";
/** After this long the gateway also ends the stopped devices' run peers (the tunnel closed). */
export const KILL_TUNNEL_GRACE_MS = 3_000;

export interface Engagement {
  /** A device name, or "*" for every device. */
  scope: string;
  operator: string;
  reason: string;
  since: number;
}

type Waiter = { device: string; resolve: (e: Engagement | undefined) => void };

export class KillSwitch {
  private readonly engaged = new Map<string, Engagement>();
  private readonly waiters = new Set<Waiter>();

  /** The engagement that stops `device`, if any (its own first, else the one for all). */
  stops(device: string): Engagement | undefined {
    return this.engaged.get(device) ?? this.engaged.get(ALL_DEVICES);
  }

  list(): Engagement[] {
    return [...this.engaged.values()].sort((a, b) => a.since - b.since);
  }

  /** Turns the switch on for `scope`; wardens waiting for that scope hear it now. */
  engage(scope: string, operator: string, reason: string, now: number): Engagement {
    const e: Engagement = { scope, operator, reason, since: now };
    this.engaged.set(scope, e);
    for (const w of [...this.waiters]) {
      if (scope === ALL_DEVICES || w.device === scope) {
        this.waiters.delete(w);
        w.resolve(e);
      }
    }
    return e;
  }

  /** An engagement read back at start (no warden is waiting yet). */
  restore(e: Engagement): void {
    this.engaged.set(e.scope, e);
  }

  /** Turns it off for `scope`; false when it was not on. */
  release(scope: string): boolean {
    return this.engaged.delete(scope);
  }

  /** Resolves with the engagement as soon as `device` is stopped, or undefined after `ms`. */
  wait(device: string, ms: number): Promise<Engagement | undefined> {
    const now = this.stops(device);
    if (now || ms <= 0) return Promise.resolve(now);
    return new Promise((resolve) => {
      const w: Waiter = {
        device,
        resolve: (e) => {
          clearTimeout(timer);
          resolve(e);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(w);
        resolve(undefined);
      }, ms);
      this.waiters.add(w);
    });
  }

  /** Wardens waiting now (for tests and status). */
  waiting(): number {
    return this.waiters.size;
  }
}

/** Who a kill answer names, as one line for the agent's stderr. */
export function engagementLine(e: Engagement): string {
  const who = e.scope === ALL_DEVICES ? "every device" : `device ${e.scope}`;
  return `the kill switch is on for ${who} (by ${e.operator}${e.reason ? `: ${e.reason}` : ""})`;
}
