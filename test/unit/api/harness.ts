// The operator API in-process: a state db in a temp dir, a fake clock, a
// real approval hub asking the dashboard approver, a fake bus, devices over
// the real registry, accounts made with a tiny argon2 cost; and helpers to
// log in and call routes as a browser (cookie + CSRF) or with a token.
import type { Database } from "bun:sqlite";
import { openStateDb } from "../../../app/store/db.ts";
import { OperatorStore, type Role } from "../../../app/store/operators.ts";
import { DeviceRegistry } from "../../../app/store/devices.ts";
import { registryDeviceOps } from "../../../app/control/api/device-ops.ts";
import { ApprovalHub } from "../../../app/approvers/hub.ts";
import { DashboardApprover } from "../../../app/approvers/dashboard.ts";
import type { ApprovalRequest, ApproverPlugin } from "../../../app/approvers/types.ts";
import type { GatewayEvent } from "../../../app/events/types.ts";
import type { Profile, Rule } from "../../../app/policy/types.ts";
import { operatorApi, type OperatorApiDeps, type DeviceOps } from "../../../app/control/api/index.ts";
import { ApiError } from "../../../app/control/errors.ts";
import { queryAudit } from "../../../app/store/audit.ts";
import { tempDir } from "../events/fixtures.ts";

export const HASHING = { memoryCost: 64, timeCost: 1 };
export const T0 = 1_700_000_000_000;

export class Clock {
  t = T0;
  now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

export class FakeBus {
  readonly subs = new Set<(e: GatewayEvent) => void>();
  subscribe(fn: (e: GatewayEvent) => void): () => void {
    this.subs.add(fn);
    return () => this.subs.delete(fn);
  }
  publish(e: GatewayEvent): void {
    for (const fn of this.subs) fn(e);
  }
}

let seq = 0;
export function heldRequest(over: Partial<ApprovalRequest> = {}): ApprovalRequest {
  seq++;
  return {
    id: `op-${seq}`,
    time: "2024-01-01T00:00:00.000Z",
    device: "laptop",
    profile: "dev",
    endpoint: "https.github",
    rule: "merge-needs-approval",
    reason: "merging a pull request",
    method: "PUT",
    host: "api.github.com",
    path: "/repos/o/r/pulls/1/merge",
    headers: { "content-type": "application/json" },
    bodyPreview: "{}",
    bodyTruncated: false,
    fingerprint: `fp-${seq}`,
    ...over,
  };
}

export async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

export interface Session {
  cookie: string;
  csrf: string;
}

export interface CallOptions {
  session?: Session;
  /** Override the CSRF header (null: leave it out). */
  csrf?: string | null;
  token?: string;
  body?: unknown;
  headers?: Record<string, string>;
  /** Default http://localhost */
  base?: string;
  signal?: AbortSignal;
}

export function harness(extra: Partial<OperatorApiDeps> = {}) {
  const dir = tempDir();
  const db: Database = openStateDb(dir.dir);
  const clock = new Clock();
  const bus = new FakeBus();
  const plugins = new Map<string, ApproverPlugin>();
  const hub = new ApprovalHub({ now: clock.now, plugins: (ref) => plugins.get(ref), realTimers: false });
  plugins.set("dashboard", new DashboardApprover(hub));
  const registry = new DeviceRegistry(db, { now: clock.now });
  const profiles = new Map<string, Profile>([["dev", { name: "dev", credentials: ["github_token.gh"], source: { file: "gw.hcl", line: 3 } }]]);
  const rules: Rule[] = [
    {
      name: "merge-needs-approval",
      endpoints: ["https.github"],
      family: "http",
      priority: 0,
      disabled: false,
      readsDeferred: false,
      approve: ["dashboard"],
      reason: "merging a pull request",
      source: { file: "gw.hcl", line: 10 },
    } as Rule,
  ];
  const devices: DeviceOps = registryDeviceOps(registry, () => profiles);
  let reloads = 0;
  let reloadErrors: string[] = [];
  const deps: OperatorApiDeps = {
    db,
    hub,
    bus,
    devices,
    policy: () => ({ profiles, rules }),
    reload: async () => {
      reloads++;
      return reloadErrors;
    },
    now: clock.now,
    hashing: HASHING,
    // Tests name their source address in a header; the real default is the peer address.
    clientIp: (req) => req.headers.get("x-test-ip") ?? "192.0.2.1",
    ...extra,
  };
  const app = operatorApi(deps);
  const store = new OperatorStore(db, { now: clock.now, hashing: HASHING });

  async function call(method: string, path: string, o: CallOptions = {}): Promise<Response> {
    const headers: Record<string, string> = { ...(o.headers ?? {}) };
    if (o.session) {
      headers.cookie = o.session.cookie;
      const csrf = o.csrf === undefined ? o.session.csrf : o.csrf;
      if (csrf !== null) headers["x-csrf-token"] = csrf;
    }
    if (o.token) headers.authorization = `Bearer ${o.token}`;
    let body: string | undefined;
    if (o.body !== undefined) {
      body = JSON.stringify(o.body);
      headers["content-type"] = "application/json";
    }
    return app.handle(new Request(`${o.base ?? "http://localhost"}${path}`, { method, headers, body, signal: o.signal ?? null }));
  }

  /**
   * An operator and its password: a permanent one (as after the first
   * change), or with `oneTime` the one-time password the CLI prints.
   */
  async function addOperator(name: string, role: Role, o: { oneTime?: boolean } = {}): Promise<string> {
    const { password, operator } = await store.add(name, role);
    if (o.oneTime) return password;
    const permanent = `${password}-changed`;
    await store.setPassword(operator.id, permanent, false);
    return permanent;
  }

  async function login(name: string, password: string, o: { ip?: string; base?: string } = {}): Promise<Session> {
    const res = await call("POST", "/api/auth/login", { body: { name, password }, base: o.base, headers: o.ip ? { "x-test-ip": o.ip } : {} });
    if (res.status !== 200) throw new Error(`login failed: ${res.status} ${await res.text()}`);
    const { csrf } = (await res.json()) as { csrf: string };
    const setCookie = res.headers.get("set-cookie")!;
    return { cookie: setCookie.split(";")[0]!, csrf };
  }

  /** An operator of that role, logged in. */
  async function as(role: Role, name: string = role): Promise<Session> {
    return login(name, await addOperator(name, role));
  }

  /** Holds a request for the dashboard; returns its id and the pending decision. */
  async function hold(over: Partial<ApprovalRequest> = {}) {
    const req = heldRequest(over);
    const done = hub.request(req, ["dashboard"], { rule: req.rule, timeoutMs: 60_000 });
    await flush();
    return { id: req.id, done };
  }

  const auditRows = (action?: string) => queryAudit(db, { limit: 1000, ...(action ? { action } : {}) });

  return {
    app,
    db,
    dir,
    clock,
    bus,
    hub,
    registry,
    store,
    call,
    login,
    as,
    addOperator,
    hold,
    auditRows,
    reloads: () => reloads,
    failReload(errors: string[]) {
      reloadErrors = errors;
    },
    close() {
      hub.close();
      db.close();
      dir.cleanup();
    },
  };
}

export type Harness = ReturnType<typeof harness>;

export async function errorOf(res: Response): Promise<{ status: number; code: string; message: string }> {
  const b = (await res.json()) as { error?: { code: string; message: string } };
  if (!b.error) throw new Error(`no error body (HTTP ${res.status})`);
  return { status: res.status, code: b.error.code, message: b.error.message };
}
