// A fake clock with timers, and a harness: state db, registry, pool, service
// and both route plugins, called in-process.
import type { Database } from "bun:sqlite";
import { randomBytes } from "node:crypto";
import { openStateDb } from "../../../app/store/db.ts";
import { DeviceRegistry, type WireguardDevice, type DeviceInfo } from "../../../app/store/devices.ts";
import { AddressPool } from "../../../app/store/addresses.ts";
import {
  OnboardService,
  onboardControlRoutes,
  onboardPublicRoutes,
  type OnboardClock,
  type OnboardDeps,
  type OnboardSettings,
} from "../../../app/control/onboard/index.ts";
import { tempDir } from "../events/fixtures.ts";
import { setLogWriter } from "../../../app/log.ts";

export class FakeClock implements OnboardClock {
  private timers: { at: number; fn: () => void; id: number }[] = [];
  private seq = 0;
  constructor(public t = 1_000_000) {}
  now = (): number => this.t;
  setTimer(ms: number, fn: () => void): () => void {
    const id = ++this.seq;
    this.timers.push({ at: this.t + ms, fn, id });
    return () => {
      this.timers = this.timers.filter((x) => x.id !== id);
    };
  }
  /** Moves time on, firing due timers in order and letting awaiting code run between them. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      await settle();
      this.timers.sort((a, b) => a.at - b.at);
      const next = this.timers[0];
      if (!next || next.at > end) break;
      this.timers.shift();
      this.t = next.at;
      next.fn();
    }
    this.t = end;
    await settle();
  }
  get pendingTimers(): number {
    return this.timers.length;
  }
}

/** Lets promise continuations run (several rounds: handlers await more than once). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
  await new Promise((r) => setImmediate(r));
}

export const GATEWAY_PUBLIC_KEY = Buffer.alloc(32, 7).toString("base64");
export const CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";

export function newKey(): string {
  return randomBytes(32).toString("base64");
}

export interface Harness {
  dir: string;
  db: Database;
  clock: FakeClock;
  registry: DeviceRegistry;
  pool: AddressPool;
  service: OnboardService;
  approved: WireguardDevice[];
  revoked: WireguardDevice[];
  profileChanged: DeviceInfo[];
  /** Log lines written while the harness was open. */
  logs: string[];
  /** Calls the public plugin in-process. */
  pub(path: string, body: unknown, ip?: string): Promise<Response>;
  /** Calls the control plugin in-process. */
  ctl(method: string, path: string, body?: unknown): Promise<Response>;
  close(): void;
}

export function harness(
  settings: Partial<OnboardSettings> = {},
  opts: { dir?: string; failPeer?: boolean; sshTrust?: (db: Database, dir: string) => OnboardDeps["sshTrust"] } = {},
): Harness {
  const t = opts.dir ? { dir: opts.dir, cleanup: () => {} } : tempDir("clawpatrol-onboard-");
  const db = openStateDb(t.dir);
  const clock = new FakeClock();
  const registry = new DeviceRegistry(db, { now: clock.now });
  const full: OnboardSettings = {
    subnetCidr: "10.77.0.0/24",
    listenPort: 51820,
    publicUrl: "https://gw.example.test",
    ...settings,
  };
  const pool = new AddressPool(db, full.subnetCidr, full.subnet6Cidr);
  const approved: WireguardDevice[] = [];
  const revoked: WireguardDevice[] = [];
  const profileChanged: DeviceInfo[] = [];
  const service = new OnboardService({
    db,
    registry,
    pool,
    settings: full,
    profileNames: () => ["dev", "ops"],
    gatewayPublicKey: () => GATEWAY_PUBLIC_KEY,
    caCertPem: () => CA_PEM,
    ...(opts.sshTrust ? { sshTrust: opts.sshTrust(db, t.dir) } : {}),
    clock,
    hooks: {
      onDeviceApproved: (d) => {
        if (opts.failPeer) throw new Error("wg set failed");
        approved.push(d);
      },
      onDeviceRevoked: (d) => {
        revoked.push(d);
      },
      onDeviceProfileChanged: (d) => {
        profileChanged.push(d);
      },
    },
  });
  const logs: string[] = [];
  setLogWriter((line) => logs.push(line));
  const pubApp = onboardPublicRoutes(service, { clientIp: (req) => req.headers.get("x-test-ip") ?? "unknown" });
  const ctlApp = onboardControlRoutes(service);
  return {
    dir: t.dir,
    db,
    clock,
    registry,
    pool,
    service,
    approved,
    revoked,
    profileChanged,
    logs,
    pub: (path, body, ip = "192.0.2.1") =>
      pubApp.handle(
        new Request(`http://localhost${path}`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-test-ip": ip },
          body: typeof body === "string" ? body : JSON.stringify(body),
        }),
      ),
    ctl: (method, path, body) =>
      ctlApp.handle(
        new Request(`http://clawpatrol${path}`, {
          method,
          ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
        }),
      ),
    close() {
      service.close();
      setLogWriter(undefined);
      db.close();
      t.cleanup();
    },
  };
}
