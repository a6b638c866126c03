// Shared test helpers for the approval hub: a fake clock, requests, and
// scripted approver plugins whose answers the test controls.
import { ApprovalHub, type ApprovalDecisionEvent, type HubOptions } from "../../../app/approvers/hub.ts";
import type { ApprovalRequest, ApproverContext, ApproverPlugin, ApproverVerdict } from "../../../app/approvers/types.ts";

export class FakeClock {
  t = 1_700_000_000_000;
  now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

let seq = 0;
export function request(over: Partial<ApprovalRequest> = {}): ApprovalRequest {
  seq++;
  return {
    id: `op-${seq}`,
    time: "2024-01-01T00:00:00.000Z",
    device: "laptop",
    profile: "default",
    endpoint: "https.github",
    rule: "merge-needs-approval",
    reason: "merging a pull request",
    method: "PUT",
    host: "api.github.com",
    path: "/repos/o/r/pulls/1/merge",
    headers: { "content-type": "application/json" },
    bodyPreview: '{"merge_method":"squash"}',
    bodyTruncated: false,
    fingerprint: "fp-1",
    ...over,
  };
}

/** A held SQL statement, shaped as the postgres endpoint holds one (app/endpoints/postgres/serve.ts approvalRequestFor). */
export function sqlRequest(over: Partial<ApprovalRequest> = {}): ApprovalRequest {
  const statement = "DELETE FROM public.users WHERE id = 7";
  return request({
    endpoint: "postgres.db",
    rule: "writes-need-approval",
    reason: "a write to the app database",
    method: "DELETE",
    host: "db.internal",
    path: statement,
    headers: { database: "app", user: "agent" },
    bodyPreview: statement,
    family: "sql",
    summary: "delete public.users",
    ...over,
  });
}

/** Lets promise chains run (the hub resolves through several microtask hops). */
export async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

export interface Asked {
  req: ApprovalRequest;
  ctx: ApproverContext;
  answer(v: Omit<ApproverVerdict, "approver"> | unknown): void;
  fail(err: unknown): void;
}

/** A plugin whose every ask waits for the test to answer it (or answers with `auto`). */
export class ScriptedApprover implements ApproverPlugin {
  readonly asks: Asked[] = [];
  constructor(
    readonly ref: string,
    private readonly auto?: (n: number, req: ApprovalRequest) => unknown,
    readonly type: ApproverPlugin["type"] = "human_approver",
  ) {}

  ask(req: ApprovalRequest, ctx: ApproverContext): Promise<ApproverVerdict> {
    return new Promise((resolve, reject) => {
      const asked: Asked = { req, ctx, answer: (v) => resolve(v as ApproverVerdict), fail: reject };
      this.asks.push(asked);
      if (this.auto) {
        const v = this.auto(this.asks.length, req);
        if (v instanceof Error) reject(v);
        else if (v !== undefined) resolve(v as ApproverVerdict);
      }
    });
  }

  get last(): Asked {
    const a = this.asks.at(-1);
    if (!a) throw new Error(`${this.ref} was never asked`);
    return a;
  }
}

export function hubWith(plugins: ApproverPlugin[], extra: Partial<HubOptions> = {}) {
  const clock = new FakeClock();
  const events: ApprovalDecisionEvent[] = [];
  const byRef = new Map(plugins.map((p) => [p.ref, p]));
  const hub = new ApprovalHub({
    now: clock.now,
    plugins: (ref) => byRef.get(ref),
    publish: (e) => events.push(e),
    realTimers: false,
    ...extra,
  });
  const advance = async (ms: number) => {
    clock.advance(ms);
    hub.tick();
    await flush();
  };
  return { hub, clock, events, byRef, advance };
}

export const allow = (operator?: string) => ({ decision: "allow", reason: "looks fine", ...(operator ? { operator } : {}) });
export const deny = (reason = "no", operator?: string) => ({ decision: "deny", reason, ...(operator ? { operator } : {}) });
