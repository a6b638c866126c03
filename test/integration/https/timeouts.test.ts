// Timeouts after TLS termination (defaults header_timeout, idle_timeout,
// min_rate), against a real gateway with short settings: an idle client, a
// trickled head and a trickled body are cut off; a slow upstream is not the
// client's fault (time the upstream holds us is covered in the unit test).
import { afterAll, beforeAll, expect, test } from "bun:test";
import type tls from "node:tls";
import { makeTestPki } from "../support/pki.ts";
import { startUpstream, type TestUpstream } from "../support/upstream.ts";
import { startTestGateway, tempDir, type TestGateway } from "../support/gateway.ts";
import { agentSend, openSession } from "./differential/harness.ts";

let upstream: TestUpstream;
let t: TestGateway;

beforeAll(async () => {
  const pki = makeTestPki(tempDir("pki"), ["api.test"]);
  upstream = startUpstream(pki);
  t = await startTestGateway(`
defaults {
  verdict = "allow"
  profile = profile.agents
  header_timeout = "1s"
  idle_timeout = "1s"
  min_rate = "1KiB"
}
endpoint "https" "api" {
  hosts = ["api.test"]
  ports = [${upstream.port}]
  ca_cert = "${pki.caCertPath}"
}
profile "agents" {}
`);
});

afterAll(async () => {
  await t?.stop();
  upstream?.stop();
});

/** Everything the session sends until the gateway closes it. */
function untilClosed(sock: tls.TLSSocket): Promise<string> {
  const got: Buffer[] = [];
  sock.on("data", (d: Buffer) => got.push(d));
  return new Promise((resolve) => sock.once("close", () => resolve(Buffer.concat(got).toString("latin1"))));
}

/** Writes `text` a few bytes at a time until the socket closes. */
function trickle(sock: tls.TLSSocket, text: string, every = 150): void {
  let at = 0;
  const tick = setInterval(() => {
    if (sock.destroyed || at >= text.length) return clearInterval(tick);
    sock.write(text.slice(at, at + 4));
    at += 4;
  }, every);
  sock.once("close", () => clearInterval(tick));
}

test("an idle connection is closed without an answer", async () => {
  const sock = await openSession(t, upstream.port, "api.test");
  expect(await untilClosed(sock)).toBe("");
});

test("a connection idle after a request is closed", async () => {
  const sock = await openSession(t, upstream.port, "api.test");
  const closed = untilClosed(sock);
  sock.write(`GET /echo HTTP/1.1\r\nHost: api.test:${upstream.port}\r\n\r\n`);
  const got = await closed;
  expect(got).toStartWith("HTTP/1.1 200");
  expect(got).not.toContain("408");
});

test("a trickled head gets 408 and the connection closes", async () => {
  const sock = await openSession(t, upstream.port, "api.test");
  const closed = untilClosed(sock);
  trickle(sock, `GET /echo HTTP/1.1\r\nHost: api.test:${upstream.port}\r\nX-Pad: ${"p".repeat(400)}\r\n\r\n`);
  expect(await closed).toStartWith("HTTP/1.1 408");
  expect(upstream.seen.some((s) => s.headers["x-pad"] !== undefined)).toBe(false);
});

test("a body slower than min_rate gets 408 and the connection closes", async () => {
  const sock = await openSession(t, upstream.port, "api.test");
  const closed = untilClosed(sock);
  sock.write(`POST /upload HTTP/1.1\r\nHost: api.test:${upstream.port}\r\nContent-Length: 100000\r\n\r\n`);
  trickle(sock, "x".repeat(100_000));
  expect(await closed).toContain("HTTP/1.1 408");
});

test("an upstream slower than every client timeout is waited for", async () => {
  // Three events 700 ms apart: the answer takes longer than header_timeout and idle_timeout.
  const r = await agentSend(t, upstream.port, `GET /sse?n=3&gap=700 HTTP/1.1\r\nHost: api.test:${upstream.port}\r\nConnection: close\r\n\r\n`, {
    host: "api.test",
    methods: ["GET"],
    responses: 1,
  });
  expect(r.statuses).toEqual([200]);
  expect(r.bodies[0]!.match(/^data: /gm)).toHaveLength(3);
});
