// Per-run peers: the store (addresses, keys, caps, revocation), the liveness
// rules that expire killed runs, the service against an in-memory plane, and
// the routes called in-process (device API token auth).
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { randomBytes } from "node:crypto";
import { openStateDb } from "../../../app/store/db.ts";
import { DeviceRegistry } from "../../../app/store/devices.ts";
import { AddressPool } from "../../../app/store/addresses.ts";
import { MAX_RUNS_PER_DEVICE, RunPeerError, RunPeerStore } from "../../../app/store/run-peers.ts";
import {
  DeviceRuns,
  deviceRunControlRoutes,
  deviceRunPublicRoutes,
  initialLiveness,
  judge,
  observe,
  RUN_HANDSHAKE_GRACE_MS,
  RUN_IDLE_MS,
  type Liveness,
  type RunPlane,
} from "../../../app/control/device-runs/index.ts";
import type { TunnelPeer } from "../../../app/net/packet-plane.ts";
import { setLogWriter } from "../../../app/log.ts";
import { tempDir } from "../events/fixtures.ts";

const key = () => randomBytes(32).toString("base64");
const GATEWAY_KEY = Buffer.alloc(32, 9).toString("base64");

/** The plane's in-memory twin: peers and their status, set by the test. */
class FakePlane implements RunPlane {
  publicKey = GATEWAY_KEY;
  readonly peersByKey = new Map<string, TunnelPeer>();
  readonly status = new Map<string, { lastHandshake: number | undefined; rxBytes: number; txBytes: number }>();
  addPeer(p: TunnelPeer): void {
    this.peersByKey.set(p.publicKey, p);
  }
  removePeer(k: string): void {
    this.peersByKey.delete(k);
    this.status.delete(k);
  }
  peers() {
    return [...this.peersByKey.keys()].map((publicKey) => ({ publicKey, ...(this.status.get(publicKey) ?? { lastHandshake: undefined, rxBytes: 0, txBytes: 0 }) }));
  }
}

describe("liveness", () => {
  const T0 = 1_000_000;
  const cases: { name: string; steps: { at: number; hs?: number; rx: number }[] | null; now: number; verdict: "keep" | "expire"; reason?: RegExp }[] = [
    { name: "fresh, within the grace", steps: null, now: T0 + RUN_HANDSHAKE_GRACE_MS - 1, verdict: "keep" },
    { name: "never handshook within the grace", steps: null, now: T0 + RUN_HANDSHAKE_GRACE_MS, verdict: "expire", reason: /no handshake/ },
    { name: "handshook, keepalives keep coming", steps: [{ at: T0 + 1000, hs: T0 + 1000, rx: 148 }, { at: T0 + RUN_IDLE_MS, rx: 180 }], now: T0 + RUN_IDLE_MS + 60_000, verdict: "keep" },
    { name: "handshook, then silent past the idle bound", steps: [{ at: T0 + 1000, hs: T0 + 1000, rx: 148 }, { at: T0 + 2000, hs: T0 + 1000, rx: 148 }], now: T0 + 1000 + RUN_IDLE_MS, verdict: "expire", reason: /nothing received/ },
    { name: "a handshake alone counts as activity", steps: [{ at: T0 + 300_000, hs: T0 + 300_000, rx: 0 }], now: T0 + 300_000 + RUN_IDLE_MS - 1, verdict: "keep" },
  ];
  for (const c of cases) {
    test(c.name, () => {
      let l: Liveness = initialLiveness(T0);
      for (const s of c.steps ?? []) l = observe(l, { lastHandshake: s.hs, rxBytes: s.rx }, s.at);
      const v = judge(l, c.now);
      expect(v.verdict).toBe(c.verdict);
      if (c.reason && v.verdict === "expire") expect(v.reason).toMatch(c.reason);
    });
  }
  test("a peer the plane does not list changes nothing", async () => {
    const l = initialLiveness(T0);
    expect(observe(l, undefined, T0 + 5000)).toEqual(l);
  });
});

describe("run peers", () => {
  let dir: { dir: string; cleanup: () => void };
  let db: Database;
  let registry: DeviceRegistry;
  let pool: AddressPool;
  let store: RunPeerStore;
  let plane: FakePlane;
  let now = 1_000_000;
  let runs: DeviceRuns;
  const logs: string[] = [];

  const enroll = (name: string) => {
    const d = registry.addWireguard(name, "dev", key(), pool);
    return { ...d, token: registry.issueApiToken(name)! };
  };

  beforeEach(() => {
    dir = tempDir("clawpatrol-runs-");
    db = openStateDb(dir.dir);
    now = 1_000_000;
    registry = new DeviceRegistry(db, { now: () => now });
    pool = new AddressPool(db, "10.77.0.0/24");
    store = new RunPeerStore(db, { now: () => now });
    plane = new FakePlane();
    runs = new DeviceRuns({ store, pool, plane, now: () => now });
    logs.length = 0;
    setLogWriter((l) => logs.push(l));
  });
  afterEach(() => {
    setLogWriter(undefined);
    db.close();
    dir.cleanup();
  });

  test("two runs of one device: distinct keys, distinct addresses from the cursor, the same device identity", async () => {
    const laptop = enroll("laptop");
    const a = await runs.register("laptop", key());
    const b = await runs.register("laptop", key());
    expect(laptop.address).toBe("10.77.0.2");
    expect([a.address, b.address]).toEqual(["10.77.0.3", "10.77.0.4"]);
    expect(a.id).not.toBe(b.id);
    expect(plane.peersByKey.get(a.publicKey)).toEqual({ publicKey: a.publicKey, address: a.address });
    expect(store.lookupByAddress(a.address)).toEqual({ name: "laptop", profile: "dev" });
    expect(store.lookupByAddress(b.address)).toEqual({ name: "laptop", profile: "dev" });
    // The next device still gets a fresh address: run addresses are taken.
    expect(enroll("desk").address).toBe("10.77.0.5");
  });

  test("an ended run's address is reused only by the same device; never by another", async () => {
    enroll("laptop");
    enroll("desk");
    const a = await runs.register("laptop", key());
    expect(runs.end("laptop", a.id)).toBe(true);
    expect(plane.peersByKey.has(a.publicKey)).toBe(false);
    expect(store.lookupByAddress(a.address)).toBeUndefined();
    const d = await runs.register("desk", key());
    expect(d.address).not.toBe(a.address);
    const again = await runs.register("laptop", key());
    expect(again.address).toBe(a.address);
    expect(store.addressesOf("laptop")).toEqual([a.address]);
  });

  test("a run cannot take a device's key, another run's key or the gateway's; a device has a cap", async () => {
    const laptop = enroll("laptop");
    const a = await runs.register("laptop", key());
    for (const k of [laptop.publicKey, a.publicKey, GATEWAY_KEY]) {
      expect(() => store.register("laptop", k, pool, [GATEWAY_KEY])).toThrow(RunPeerError);
    }
    for (let i = 1; i < MAX_RUNS_PER_DEVICE; i++) await runs.register("laptop", key());
    await expect(runs.register("laptop", key())).rejects.toThrow(/limit/);
  });

  test("a peer the plane cannot add undoes the registration (500, the address stays free for the next run)", async () => {
    enroll("laptop");
    const failing = new FakePlane();
    failing.addPeer = () => Promise.reject(new Error("wg set failed"));
    const r = new DeviceRuns({ store, pool, plane: failing, now: () => now });
    await expect(r.register("laptop", key())).rejects.toMatchObject({ status: 500, code: "peer_setup_failed" });
    expect(store.active()).toEqual([]);
    const ok = await runs.register("laptop", key());
    expect(store.addressesOf("laptop")).toEqual([ok.address]);
  });

  test("another device cannot end a run that is not its own", async () => {
    enroll("laptop");
    enroll("desk");
    const a = await runs.register("laptop", key());
    expect(runs.end("desk", a.id)).toBe(false);
    expect(plane.peersByKey.has(a.publicKey)).toBe(true);
  });

  test("revocation ends every run of the device; a revoked device registers none; deleting the device frees its run addresses", async () => {
    enroll("laptop");
    const a = await runs.register("laptop", key());
    const b = await runs.register("laptop", key());
    registry.revoke("laptop");
    expect(store.lookupByAddress(a.address)).toBeUndefined(); // identity goes with the revoke at once
    const ended = runs.endDevice("laptop");
    expect(ended.map((p) => p.id).sort()).toEqual([a.id, b.id].sort());
    expect(plane.peersByKey.size).toBe(0);
    await expect(runs.register("laptop", key())).rejects.toThrow(/no active WireGuard device/);
    // The revoked device keeps its addresses (and its runs'): a new device gets others.
    expect(enroll("desk").address).toBe("10.77.0.5");
    // Re-enrolling the name deletes the old row and its run addresses with it.
    enroll("laptop");
    expect(store.addressesOf("laptop")).toEqual([]);
  });

  test("at start: runs of devices revoked while the gateway was down are ended; live ones are loaded", async () => {
    enroll("laptop");
    enroll("desk");
    const a = await runs.register("laptop", key());
    const d = await runs.register("desk", key());
    registry.revoke("desk");
    expect(DeviceRuns.tunnelPeers(store)).toEqual([{ publicKey: a.publicKey, address: a.address }]);
    const plane2 = new FakePlane();
    plane2.addPeer({ publicKey: d.publicKey, address: d.address });
    new DeviceRuns({ store, pool, plane: plane2, now: () => now });
    expect(plane2.peersByKey.has(d.publicKey)).toBe(false);
    expect(store.active().map((p) => p.id)).toEqual([a.id]);
  });

  test("sweep: a run that never handshakes, and one that goes quiet, are expired; a live one stays", async () => {
    enroll("laptop");
    const silent = await runs.register("laptop", key());
    const live = await runs.register("laptop", key());
    const quiet = await runs.register("laptop", key());
    plane.status.set(live.publicKey, { lastHandshake: now + 1000, rxBytes: 148, txBytes: 92 });
    plane.status.set(quiet.publicKey, { lastHandshake: now + 1000, rxBytes: 148, txBytes: 92 });
    now += 30_000;
    expect(runs.sweep()).toEqual([]);
    now += RUN_HANDSHAKE_GRACE_MS;
    expect(runs.sweep().map((p) => p.id)).toEqual([silent.id]);
    expect(plane.peersByKey.has(silent.publicKey)).toBe(false);
    // live keeps receiving keepalives; quiet does not.
    for (let t = 0; t < RUN_IDLE_MS; t += 30_000) {
      now += 30_000;
      plane.status.get(live.publicKey)!.rxBytes += 32;
      runs.sweep();
    }
    expect(runs.list().map((p) => p.id)).toEqual([live.id]);
    expect(plane.peersByKey.has(quiet.publicKey)).toBe(false);
    expect(logs.join("\n")).toContain("nothing received");
  });

  describe("routes", () => {
    const call = (app: { handle(r: Request): Promise<Response> }, method: string, path: string, token?: string, body?: unknown) =>
      app.handle(
        new Request(`http://gw.test${path}`, {
          method,
          headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { "content-type": "application/json" } : {}) },
          ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
        }),
      );

    test("register, list, deregister with the device's API token; the operator sees the runs", async () => {
      const laptop = enroll("laptop");
      const pub = deviceRunPublicRoutes(runs, registry);
      const ctl = deviceRunControlRoutes(runs);
      const k = key();
      const res = await call(pub, "POST", "/api/device/runs", laptop.token, { public_key: k });
      expect(res.status).toBe(201);
      const body = (await res.json()) as { run: { id: string; address: string; device: string; addresses: string[] }; idle_timeout: number };
      expect(body.run.device).toBe("laptop");
      expect(body.run.addresses).toEqual([`${body.run.address}/32`]);
      expect(body.idle_timeout).toBe(RUN_IDLE_MS / 1000);
      expect(plane.peersByKey.has(k)).toBe(true);

      const mine = (await (await call(pub, "GET", "/api/device/runs", laptop.token)).json()) as { runs: { id: string }[] };
      expect(mine.runs.map((r) => r.id)).toEqual([body.run.id]);
      const seen = (await (await call(ctl, "GET", "/api/devices/laptop/runs")).json()) as { runs: { id: string; public_key: string }[] };
      expect(seen.runs).toMatchObject([{ id: body.run.id, public_key: k }]);

      expect((await call(pub, "DELETE", `/api/device/runs/${body.run.id}`, laptop.token)).status).toBe(200);
      expect((await call(pub, "DELETE", `/api/device/runs/${body.run.id}`, laptop.token)).status).toBe(404);
      expect(plane.peersByKey.has(k)).toBe(false);
      expect(((await (await call(ctl, "GET", "/api/runs")).json()) as { runs: unknown[] }).runs).toEqual([]);
    });

    test("without a valid token: 401, and the token never appears in the answer or the log", async () => {
      const laptop = enroll("laptop");
      const pub = deviceRunPublicRoutes(runs, registry);
      const bad = ["", "Bearer", `Bearer ${laptop.token}x`, `Basic ${laptop.token}`, "Bearer cpd_proxytoken"];
      for (const h of bad) {
        const res = await pub.handle(new Request("http://gw.test/api/device/runs", { method: "POST", headers: { authorization: h }, body: JSON.stringify({ public_key: key() }) }));
        expect(res.status).toBe(401);
        expect(res.headers.get("www-authenticate")).toBe("Bearer");
        expect(await res.text()).not.toContain(laptop.token);
      }
      registry.revoke("laptop");
      expect((await call(pub, "POST", "/api/device/runs", laptop.token, { public_key: key() })).status).toBe(401);
      expect(plane.peersByKey.size).toBe(0);
      expect(logs.join("\n")).not.toContain(laptop.token);
    });

    test("bad bodies: 400; a key in use: 409", async () => {
      const laptop = enroll("laptop");
      const pub = deviceRunPublicRoutes(runs, registry);
      expect((await call(pub, "POST", "/api/device/runs", laptop.token, "not json")).status).toBe(400);
      expect((await call(pub, "POST", "/api/device/runs", laptop.token, { public_key: "short" })).status).toBe(400);
      expect((await call(pub, "POST", "/api/device/runs", laptop.token, [1])).status).toBe(400);
      const res = await call(pub, "POST", "/api/device/runs", laptop.token, { public_key: laptop.publicKey });
      expect(res.status).toBe(409);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("key_in_use");
    });
  });
});
