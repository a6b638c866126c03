// The loop-stall clock: lateness of its ticks is stall; a deadline corrected
// by it measures what it waits for, not the loop's own queue.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import tls from "node:tls";
import type { AddressInfo } from "node:net";
import { LoopStall, stallCorrectedTimeout } from "../../../app/net/loop-stall.ts";
import { UpstreamPool, isTransientDialError } from "../../../app/endpoints/https/upstream.ts";
import type { Endpoint } from "../../../app/policy/types.ts";
import { makeTestPki } from "../../integration/support/pki.ts";

/** Keeps the loop busy, as a burst of handshakes does. */
function blockLoop(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    /* busy */
  }
}

describe("LoopStall", () => {
  test("ticks on time add nothing; a late tick adds its lateness, the overdue one counts before it runs", () => {
    const s = new LoopStall(25, 0);
    s.tick(25);
    s.tick(50);
    expect(s.stalledMs(60)).toBe(0);
    expect(s.stalledMs(575)).toBe(500); // due at 75, not yet run
    s.tick(575);
    expect(s.stalledMs(575)).toBe(500);
    s.tick(600);
    expect(s.stalledMs(610)).toBe(500);
    expect(s.takeMaxLag()).toBe(500);
    expect(s.takeMaxLag()).toBe(0);
  });
});

describe("stallCorrectedTimeout", () => {
  test("fires after its time when the loop ran freely", async () => {
    const s = new LoopStall(25, performance.now());
    const tick = setInterval(() => s.tick(performance.now()), 25);
    const t0 = performance.now();
    try {
      await new Promise<void>((resolve) => stallCorrectedTimeout(100, resolve, s));
      expect(performance.now() - t0).toBeGreaterThanOrEqual(99);
    } finally {
      clearInterval(tick);
    }
  });

  test("a loop blocked past the deadline does not spend it", async () => {
    const s = new LoopStall(25, performance.now());
    const tick = setInterval(() => s.tick(performance.now()), 25);
    let fired = false;
    const cancel = stallCorrectedTimeout(300, () => (fired = true), s);
    try {
      blockLoop(1_000);
      // The timer's first turn came 700 ms late: it re-armed instead of firing.
      await new Promise((r) => setTimeout(r, 0));
      await new Promise((r) => setImmediate(r));
      expect(fired).toBe(false);
      // And it still fires, once the loop has run for its time.
      while (!fired) await new Promise((r) => setTimeout(r, 20));
    } finally {
      cancel();
      clearInterval(tick);
    }
  });
});

describe("the upstream connect timeout", () => {
  test("a dial whose handshake waited behind a blocked loop still connects", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "cp-stall-"));
    const pki = makeTestPki(dir, ["upstream.test"]);
    const server = tls.createServer({ cert: pki.certPem, key: pki.keyPem }, (sock) => sock.end());
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const endpoint = { type: "https", name: "up", ref: "https.up", hosts: ["upstream.test"], caCertPem: pki.caCertPem } as unknown as Endpoint;
    const pool = new UpstreamPool(300);
    try {
      const dial = pool.dial({ host: "127.0.0.1", port: (server.address() as AddressInfo).port, sni: "upstream.test", endpoint });
      expect(pool.stats().dialing).toBe(1);
      // Before the fix the 300 ms timer fired first in the loop's next turn and the dial failed.
      blockLoop(1_500);
      const conn = await dial;
      expect(pool.stats().dialing).toBe(0);
      conn.destroy();
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a dial to nothing still times out, and that failure is transient (dialed once more)", async () => {
    // A listener that never accepts past its backlog would be flaky; a black-holed
    // address is not available here, so a server that takes the TCP connection and never answers TLS.
    const net = await import("node:net");
    const held: import("node:net").Socket[] = [];
    const silent = net.createServer((s) => held.push(s));
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const pool = new UpstreamPool(200);
    const endpoint = { type: "https", name: "up", ref: "https.up", hosts: ["upstream.test"] } as unknown as Endpoint;
    try {
      const e = await pool.dial({ host: "127.0.0.1", port: (silent.address() as AddressInfo).port, sni: "upstream.test", endpoint }).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect((e as Error).message).toBe("connect timeout after 200 ms");
      expect(isTransientDialError(e)).toBe(true);
      expect(pool.stats().dialing).toBe(0);
    } finally {
      for (const s of held) s.destroy();
      silent.close();
    }
  });

  test("which dial errors are transient", () => {
    expect(isTransientDialError(Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" }))).toBe(true);
    expect(isTransientDialError(Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }))).toBe(true);
    expect(isTransientDialError(Object.assign(new Error("unable to verify the first certificate"), { code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE" }))).toBe(false);
    expect(isTransientDialError(Object.assign(new Error("Hostname/IP does not match"), { code: "ERR_TLS_CERT_ALTNAME_INVALID" }))).toBe(false);
    expect(isTransientDialError(new Error("Client network socket disconnected before secure TLS connection was established"))).toBe(true);
  });
});
