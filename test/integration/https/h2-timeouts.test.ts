// HTTP/2's answer to slowloris, as HTTP/1.1's timeouts (header_timeout,
// idle_timeout, min_rate) against a real gateway with short settings: a
// stream whose body trickles slower than min_rate gets 408 alone while
// another stream on the connection is served; a connection with no stream
// open is closed at idle_timeout even when the agent keeps it busy with
// PINGs, or with a header block that never ends.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import http2 from "node:http2";
import tls from "node:tls";
import { makeTestPki } from "../support/pki.ts";
import { startUpstream, type TestUpstream } from "../support/upstream.ts";
import { startTestGateway, tempDir, type TestGateway } from "../support/gateway.ts";
import { socksForward, type SocksForward } from "../support/socks-forward.ts";

const HOST = "api.test";
let upstream: TestUpstream;
let t: TestGateway;
let fwd: SocksForward;

beforeAll(async () => {
  const pki = makeTestPki(tempDir("h2to-pki"), [HOST]);
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
  hosts = ["${HOST}"]
  ports = [${upstream.port}]
  ca_cert = "${pki.caCertPath}"
}
profile "agents" {}
`);
  fwd = await socksForward(t.gw.proxies[0]!.address, { host: "127.0.0.1", port: upstream.port });
}, 60_000);

afterAll(async () => {
  fwd?.close();
  await t?.stop();
  upstream?.stop();
});

function tlsToGateway(): tls.TLSSocket {
  return tls.connect({ host: "127.0.0.1", port: fwd.port, servername: HOST, ALPNProtocols: ["h2"], rejectUnauthorized: false });
}

function connect(): http2.ClientHttp2Session {
  const s = http2.connect(`https://${HOST}:${upstream.port}`, { createConnection: () => tlsToGateway() });
  s.on("error", () => undefined);
  return s;
}

const closed = (s: http2.ClientHttp2Session) => new Promise<void>((resolve) => (s.closed || s.destroyed ? resolve() : s.once("close", () => resolve())));

/** One request's status and body. */
function request(s: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, feed?: (req: http2.ClientHttp2Stream) => void): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = s.request({ ":authority": `${HOST}:${upstream.port}`, ...headers }, { endStream: !feed });
    let status = 0;
    const parts: Buffer[] = [];
    req.on("response", (h) => (status = Number(h[":status"])));
    req.on("data", (d: Buffer) => parts.push(d));
    req.on("end", () => resolve({ status, body: Buffer.concat(parts).toString() }));
    req.on("error", reject);
    feed?.(req);
  });
}

describe("HTTP/2 timeouts", () => {
  test("a stream whose body trickles below min_rate gets 408 alone; another stream on the connection is served", async () => {
    const s = connect();
    try {
      let tick: ReturnType<typeof setInterval> | undefined;
      const slow = request(s, { ":method": "POST", ":path": "/echo?slow=1", "content-type": "text/plain" }, (req) => {
        // 8 bytes every 100 ms: 80 B/s, far below 1 KiB/s.
        tick = setInterval(() => (req.closed ? clearInterval(tick) : req.write("01234567")), 100);
        req.once("close", () => clearInterval(tick));
      });
      const fast = await request(s, { ":method": "GET", ":path": "/echo?fast=1" });
      expect(fast.status).toBe(200);
      const r = await slow;
      clearInterval(tick);
      expect(r.status).toBe(408);
      expect(r.body).toContain("request body too slow");
      // The connection still serves.
      expect((await request(s, { ":method": "GET", ":path": "/echo?after=1" })).status).toBe(200);
      const ev = t.events.find((e) => e.kind === "http" && e.path === "/echo?slow=1");
      expect(ev).toMatchObject({ status: 408, detail: "client out of time (slow_body)" });
      expect(ev?.action).toMatchObject({ closedBy: "client" });
    } finally {
      s.destroy();
    }
  }, 60_000);

  test("a connection with no stream open is closed at idle_timeout though the agent sends PINGs", async () => {
    const s = connect();
    const tick = setInterval(() => {
      if (!s.destroyed && !s.closed) s.ping(() => undefined);
    }, 100);
    try {
      expect((await request(s, { ":method": "GET", ":path": "/echo?before-idle=1" })).status).toBe(200);
      const goaway = new Promise<void>((resolve) => s.once("goaway", () => resolve()));
      await Promise.race([goaway, closed(s)]);
      await closed(s);
    } finally {
      clearInterval(tick);
      s.destroy();
    }
  }, 60_000);

  test("a header block that never ends (CONTINUATION trickled) is closed at idle_timeout, no stream judged", async () => {
    const before = t.events.length;
    const sock = tlsToGateway();
    const frame = (type: number, flags: number, id: number, payload: Uint8Array) => {
      const b = Buffer.alloc(9 + payload.length);
      b.writeUIntBE(payload.length, 0, 3);
      b[3] = type;
      b[4] = flags;
      b.writeUInt32BE(id, 5);
      b.set(payload, 9);
      return b;
    };
    const auth = Buffer.from(`${HOST}:${upstream.port}`);
    let tick: ReturnType<typeof setInterval> | undefined;
    const gone = new Promise<void>((resolve) => sock.once("close", () => resolve()));
    sock.on("error", () => undefined);
    sock.on("data", () => undefined);
    sock.once("secureConnect", () => {
      sock.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
      sock.write(frame(4, 0, 0, new Uint8Array(0)));
      // HEADERS without END_HEADERS: GET, https, /, the authority; then one small valid field per CONTINUATION.
      sock.write(frame(1, 0x1, 1, Buffer.concat([Buffer.from([0x82, 0x87, 0x84, 0x41, auth.length]), auth])));
      let n = 0;
      tick = setInterval(() => {
        const name = Buffer.from(`x-slow-${n++}`);
        if (!sock.destroyed) sock.write(frame(9, 0, 1, Buffer.concat([Buffer.from([0x00, name.length]), name, Buffer.from([1, 0x61])])));
      }, 100);
    });
    try {
      await gone;
    } finally {
      clearInterval(tick);
      sock.destroy();
    }
    expect(t.events.slice(before).filter((e) => e.kind === "http")).toEqual([]);
  }, 60_000);
});
