// HTTP/2 through interception, end to end on loopback: the real curl
// (--http2) through the explicit proxy and the real nghttp (nghttp2-client)
// through the SOCKS5 side of the same listener, to a real TLS upstream
// (HTTP/1.1: each stream is translated). Every stream is judged and
// credentialed on its own; a denied stream is answered alone; floods and
// malformed frames end only the connection that sent them.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import path from "node:path";
import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import { makeTestPki, type TestPki } from "../support/pki.ts";
import { startUpstream, downloadBlock, type TestUpstream } from "../support/upstream.ts";
import { curlVia, startTestGateway, tempDir, type TestGateway } from "../support/gateway.ts";
import { socksForward, type SocksForward } from "../support/socks-forward.ts";
import { waitFor } from "../support/netns.ts";

const SECRET = "sk-live-REAL-h2-secret-0123456789abcdef";
const PLACEHOLDER = "clawpatrol-placeholder-api";
const HOST = "localhost";

let pki: TestPki;
let upstream: TestUpstream;
let t: TestGateway;
let fwd: SocksForward;
let trailerServer: tls.Server;
let trailerFwd: SocksForward;
let h2Upstream: http2.Http2SecureServer;
let h2Port = 0;
let h2Fwd: SocksForward;
const h2FwdPort = () => h2Fwd.port;
let grpcServer: ReturnType<typeof Bun.spawn> | undefined;
let grpcPort = 0;
const GRPC_SCRIPT = path.join(import.meta.dir, "grpc", "echo.py");
const h2Seen: http2.IncomingHttpHeaders[] = [];

beforeAll(async () => {
  pki = makeTestPki(tempDir("h2pki"), [HOST]);
  upstream = startUpstream(pki);
  // An HTTP/1.1 upstream that ends its chunked body with trailers (gRPC's status lives there), echoing the credential in one.
  trailerServer = tls.createServer({ cert: pki.certPem, key: pki.keyPem }, (sock) => {
    let head = "";
    sock.on("data", (d: Buffer) => {
      head += d.toString("latin1");
      if (!head.includes("\r\n\r\n")) return;
      const auth = /authorization: ([^\r]*)/i.exec(head)?.[1] ?? "";
      head = "";
      sock.write(
        "HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\nTransfer-Encoding: chunked\r\nTrailer: grpc-status, x-auth\r\n\r\n" +
          "5\r\nhello\r\n0\r\ngrpc-status: 7\r\nx-auth: " + auth + "\r\n\r\n",
      );
    });
    sock.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => trailerServer.listen(0, "127.0.0.1", resolve));
  const trailerPort = (trailerServer.address() as net.AddressInfo).port;
  // An upstream that speaks only h2 (a gRPC server's shape): the echo of what it got, or a body ending in trailers.
  h2Upstream = http2.createSecureServer({ cert: pki.certPem, key: pki.keyPem, allowHTTP1: false });
  h2Upstream.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    h2Seen.push(headers);
    const chunks: Buffer[] = [];
    stream.on("data", (d: Buffer) => chunks.push(d));
    stream.on("end", () => {
      const path = String(headers[":path"]);
      if (path.startsWith("/rpc")) {
        stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
        stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0", "x-auth": String(headers["authorization"] ?? "") }));
        stream.end(Buffer.concat([Buffer.from("got "), ...chunks]));
        return;
      }
      stream.respond({ ":status": 200, "content-type": "application/json" });
      stream.end(JSON.stringify({ path, authority: headers[":authority"], authorization: headers["authorization"] ?? null, bytes: Buffer.concat(chunks).length }));
    });
  });
  await new Promise<void>((resolve) => h2Upstream.listen(0, "127.0.0.1", resolve));
  h2Port = (h2Upstream.address() as net.AddressInfo).port;
  // A real gRPC server (python3-grpcio) with the test PKI's leaf.
  const certFile = path.join(pki.dir, "leaf.crt");
  const keyFile = path.join(pki.dir, "leaf.key");
  grpcServer = Bun.spawn(["timeout", "600", "/usr/bin/python3", GRPC_SCRIPT, "serve", certFile, keyFile], { stdout: "pipe", stderr: "ignore" });
  const reader = (grpcServer.stdout as ReadableStream<Uint8Array>).getReader();
  let firstLine = "";
  while (!firstLine.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("gRPC server did not start");
    firstLine += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  grpcPort = Number(firstLine.trim());
  t = await startTestGateway(
    `
defaults {
  verdict = "allow"
  unknown_host = "passthrough"
  profile = profile.agents
}
endpoint "https" "api" {
  hosts = ["${HOST}"]
  ports = [${upstream.port}, ${trailerPort}, ${h2Port}, ${grpcPort}]
  ca_cert = "${pki.caCertPath}"
  credential = bearer_token.api
}
credential "bearer_token" "api" {}
profile "agents" {
  credentials = [bearer_token.api]
}
rule "no-secret-path" {
  endpoint = https.api
  condition = "http.path == '/denied'"
  verdict = "deny"
  reason = "not this path"
}
rule "no-prod-in-body" {
  endpoint = https.api
  condition = "http.method == 'POST' && http.path == '/echo' && http.body_json.env == 'prod'"
  verdict = "deny"
  reason = "no prod from agents"
}
rule "no-forbidden-rpc" {
  endpoint = https.api
  condition = "http.path == '/demo.Echo/Forbidden'"
  verdict = "deny"
  reason = "not this method"
}
rule "no-deletes" {
  endpoint = https.api
  condition = "http.method == 'DELETE'"
  verdict = "deny"
  reason = "deletes need a human"
}
`,
    { CLAWPATROL_SECRET_API: SECRET },
  );
  fwd = await socksForward(t.gw.proxies[0]!.address, { host: "127.0.0.1", port: upstream.port });
  trailerFwd = await socksForward(t.gw.proxies[0]!.address, { host: "127.0.0.1", port: trailerPort });
  h2Fwd = await socksForward(t.gw.proxies[0]!.address, { host: "127.0.0.1", port: h2Port });
}, 60_000);

afterAll(async () => {
  fwd?.close();
  trailerFwd?.close();
  h2Fwd?.close();
  trailerServer?.close();
  h2Upstream?.close();
  grpcServer?.kill();
  await t?.stop();
  upstream?.stop();
});

const h2 = ["--http2"];
const httpEvents = () => t.events.filter((e) => e.kind === "http");

async function run(cmd: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill(), 90_000);
  try {
    const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    return { exitCode, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

describe("HTTP/2 toward the agent", () => {
  test("ALPN gives h2; the upstream sees the real secret, the agent never does", async () => {
    const r = await curlVia(t, HOST, upstream.port, "/echo?x=1", [...h2, "-H", `Authorization: Bearer ${PLACEHOLDER}`]);
    expect(r.exitCode).toBe(0);
    expect(r.headers).toContain("HTTP/2 200");
    expect(upstream.seen.at(-1)!.headers["authorization"]).toBe(`Bearer ${SECRET}`);
    expect(r.body).not.toContain(SECRET);
    expect(r.headers).not.toContain(SECRET);
    const echoed = JSON.parse(r.body);
    expect(echoed.path).toBe("/echo?x=1");
    expect(echoed.headers["host"]).toBe(`${HOST}:${upstream.port}`);
    const e = httpEvents().at(-1)!;
    expect(e.path).toBe("/echo?x=1");
    expect(e.verdict).toBe("allow");
    expect(e.credential).toBe("bearer_token.api");
    expect(e.status).toBe(200);
    expect(JSON.stringify(t.events)).not.toContain(SECRET);
  }, 60_000);

  test("a secret the upstream echoes in a header and the body is masked on the stream", async () => {
    const r = await curlVia(t, HOST, upstream.port, "/echo-auth", [...h2, "-H", `Authorization: Bearer ${PLACEHOLDER}`]);
    expect(r.headers).toContain("HTTP/2 200");
    expect(r.body.startsWith("you sent: ")).toBe(true);
    expect(r.body).not.toContain(SECRET);
    expect(r.headers).toContain("x-echo-auth: ");
    expect(r.headers).not.toContain(SECRET);
  }, 60_000);

  test("many streams on one connection: the one a rule denies gets 403 alone, the others succeed", async () => {
    const before = httpEvents().length;
    const urls: string[] = [];
    for (let i = 0; i < 12; i++) urls.push(`https://${HOST}:${upstream.port}/echo?i=${i}`);
    urls.splice(5, 0, `https://${HOST}:${upstream.port}/denied`);
    const r = await run([
      "curl", "-sS", "--max-time", "60", "--http2", "-Z", "--parallel-max", "20",
      "--cacert", t.caPath, "-x", t.proxyUrl, "--connect-to", `${HOST}:${upstream.port}:127.0.0.1:${upstream.port}`,
      "-w", "%{http_version} %{http_code} %{url_effective}\\n", ...urls.flatMap((u) => ["-o", "/dev/null", u]),
    ]);
    expect(r.exitCode).toBe(0);
    const lines = r.stdout.trim().split("\n").sort();
    expect(lines.length).toBe(13);
    for (const l of lines) {
      const [version, code, url] = l.split(" ");
      expect(version).toBe("2");
      expect(code).toBe(url!.endsWith("/denied") ? "403" : "200");
    }
    const events = httpEvents().slice(before);
    expect(events.length).toBe(13);
    const denied = events.find((e) => e.path === "/denied")!;
    expect(denied.verdict).toBe("deny");
    expect(denied.rule).toBe("no-secret-path");
    // One connection carried them all (curl multiplexes parallel transfers).
    expect(new Set(events.map((e) => e.flowId)).size).toBeLessThan(events.length);
  }, 60_000);

  test("a denied stream carries the usual JSON body", async () => {
    const r = await curlVia(t, HOST, upstream.port, "/denied", h2);
    expect(r.headers).toContain("HTTP/2 403");
    expect(JSON.parse(r.body)).toEqual({ error: "denied by clawpatrol", rule: "no-secret-path", reason: "not this path" });
    const d = await curlVia(t, HOST, upstream.port, "/echo", [...h2, "-X", "DELETE"]);
    expect(d.headers).toContain("HTTP/2 403");
  }, 60_000);

  test("a 64 MiB download per stream arrives sha256-exact", async () => {
    const mb = 64;
    const want = createHash("sha256");
    for (let i = 0; i < mb; i++) want.update(downloadBlock(i));
    const out = path.join(t.dir, "h2-download.bin");
    const r = await curlVia(t, HOST, upstream.port, `/download?mb=${mb}`, [...h2, "-o", out]);
    expect(r.exitCode).toBe(0);
    expect(r.status).toBe(200);
    const got = createHash("sha256").update(new Uint8Array(await Bun.file(out).arrayBuffer())).digest("hex");
    expect(got).toBe(want.digest("hex"));
  }, 60_000);

  test("a 16 MiB upload per stream arrives sha256-exact", async () => {
    const file = path.join(t.dir, "h2-upload.bin");
    const data = new Uint8Array(16 << 20);
    for (let i = 0; i < 16; i++) data.set(downloadBlock(i + 100), i << 20);
    await Bun.write(file, data);
    const r = await curlVia(t, HOST, upstream.port, "/upload", [...h2, "--data-binary", `@${file}`, "-H", "Content-Type: application/octet-stream"]);
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.body)).toEqual({ sha256: createHash("sha256").update(data).digest("hex"), size: data.length });
  }, 60_000);

  test("Expect: 100-continue on a stream: the gateway reads the body for a rule and decides on it", async () => {
    const prod = JSON.stringify({ env: "prod", pad: "x".repeat(4000) });
    const denied = await curlVia(t, HOST, upstream.port, "/echo", [...h2, "-H", "content-type: application/json", "-H", "Expect: 100-continue", "--data", prod]);
    expect(denied.headers).toContain("HTTP/2 403");
    expect(JSON.parse(denied.body).rule).toBe("no-prod-in-body");
    const dev = JSON.stringify({ env: "dev", pad: "x".repeat(4000) });
    const allowed = await curlVia(t, HOST, upstream.port, "/echo", [...h2, "-H", "content-type: application/json", "-H", "Expect: 100-continue", "--data", dev]);
    expect(allowed.headers).toContain("HTTP/2 200");
    expect(JSON.parse(allowed.body).body).toBe(dev);
    expect(upstream.seen.at(-1)!.headers["expect"]).toBeUndefined();
  }, 60_000);

  test("trailers from a chunked upstream response arrive as h2 trailers, a secret in them masked", async () => {
    const r = await run(["timeout", "60", "nghttp", "-v", "-H", `authorization: Bearer ${PLACEHOLDER}`, `https://${HOST}:${trailerFwd.port}/rpc`]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/recv \(stream_id=\d+\) grpc-status: 7/);
    expect(r.stdout).toMatch(/recv \(stream_id=\d+\) x-auth: \*+/);
    expect(r.stdout).not.toContain(SECRET);
    expect(r.stdout).toContain("hello");
  }, 60_000);

  test("nghttp: concurrent streams on one connection, one denied", async () => {
    const base = `https://${HOST}:${fwd.port}`;
    const r = await run(["timeout", "60", "nghttp", "-nv", `${base}/echo?n=1`, `${base}/denied`, `${base}/echo?n=2`, `${base}/sse?n=3&gap=50`]);
    expect(r.exitCode).toBe(0);
    const statuses = [...r.stdout.matchAll(/recv \(stream_id=(\d+)\) :status: (\d+)/g)].map((m) => m[2]);
    expect(statuses.sort()).toEqual(["200", "200", "200", "403"]);
    expect(r.stdout).toContain("negotiated protocol: h2");
  }, 60_000);
});

/** An HTTP/2 frame: 9-byte header, then the payload. */
function frame(type: number, flags: number, id: number, payload: Uint8Array): Buffer {
  const b = Buffer.alloc(9 + payload.length);
  b.writeUIntBE(payload.length, 0, 3);
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(id, 5);
  b.set(payload, 9);
  return b;
}

/** A GET / header block: indexed :method GET, :scheme https, :path /, a literal :authority. */
function getBlock(): Buffer {
  const auth = Buffer.from(`${HOST}:${upstream.port}`);
  return Buffer.concat([Buffer.from([0x82, 0x87, 0x84, 0x41, auth.length]), auth]);
}

/** Opens a raw h2 connection through the proxy, sends `attack`, and reports what came back until the gateway closed it. */
function rawH2(attack: (write: (b: Uint8Array) => boolean, sock: tls.TLSSocket) => void): Promise<{ frameTypes: Set<number>; closed: boolean }> {
  return new Promise((resolve) => {
    const sock = tls.connect({ host: "127.0.0.1", port: fwd.port, servername: HOST, ALPNProtocols: ["h2"], rejectUnauthorized: false });
    const types = new Set<number>();
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      sock.destroy();
      resolve({ frameTypes: types, closed: false });
    }, 30_000);
    sock.on("secureConnect", () => {
      sock.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
      sock.write(frame(4, 0, 0, new Uint8Array(0)));
      attack((b) => sock.write(b), sock);
    });
    sock.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        types.add(buf[3]!);
        buf = buf.subarray(9 + len);
      }
    });
    sock.on("error", () => undefined);
    sock.on("close", () => {
      clearTimeout(timer);
      resolve({ frameTypes: types, closed: true });
    });
  });
}

const GOAWAY = 7;

/** A GET for `path` (literal :path, indexed name). */
function getPathBlock(path: string): Buffer {
  const auth = Buffer.from(`${HOST}:${upstream.port}`);
  const p = Buffer.from(path);
  return Buffer.concat([Buffer.from([0x82, 0x87, 0x04, p.length]), p, Buffer.from([0x41, auth.length]), auth]);
}

interface Frame {
  type: number;
  flags: number;
  id: number;
  payload: Buffer;
}

/** A raw h2 connection through the proxy that records every frame the gateway sends. */
async function rawClient(): Promise<{ frames: Frame[]; write(b: Uint8Array): void; until(pred: () => boolean): Promise<void>; close(): void }> {
  const frames: Frame[] = [];
  let wake = () => undefined as void;
  const sock = tls.connect({ host: "127.0.0.1", port: fwd.port, servername: HOST, ALPNProtocols: ["h2"], rejectUnauthorized: false });
  await new Promise<void>((resolve, reject) => {
    sock.once("secureConnect", () => resolve());
    sock.once("error", reject);
  });
  let buf = Buffer.alloc(0);
  sock.on("data", (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 9) {
      const len = buf.readUIntBE(0, 3);
      if (buf.length < 9 + len) break;
      frames.push({ type: buf[3]!, flags: buf[4]!, id: buf.readUInt32BE(5) & 0x7fffffff, payload: Buffer.from(buf.subarray(9, 9 + len)) });
      buf = buf.subarray(9 + len);
    }
    wake();
  });
  sock.on("error", () => undefined);
  sock.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  sock.write(frame(4, 0, 0, new Uint8Array(0)));
  return {
    frames,
    write: (b) => void sock.write(b),
    async until(pred) {
      const deadline = Date.now() + 30_000;
      while (!pred()) {
        if (Date.now() > deadline || sock.destroyed) throw new Error("condition not reached");
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 200);
        });
      }
    },
    close: () => sock.destroy(),
  };
}

const windowUpdate = (id: number, n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return frame(8, 0, id, b);
};

describe("HTTP/2 toward an h2-only upstream", () => {
  test("streams go out on the upstream's own h2 session: credential injected, denial alone, trailers passed and masked", async () => {
    const before = h2Seen.length;
    const ok = await curlVia(t, HOST, h2Port, "/echo?a=1", [...h2, "-H", `Authorization: Bearer ${PLACEHOLDER}`]);
    expect(ok.headers).toContain("HTTP/2 200");
    expect(h2Seen.at(-1)!["authorization"]).toBe(`Bearer ${SECRET}`);
    expect(ok.body).not.toContain(SECRET);
    expect(JSON.parse(ok.body).path).toBe("/echo?a=1");
    const denied = await curlVia(t, HOST, h2Port, "/denied", h2);
    expect(denied.headers).toContain("HTTP/2 403");
    expect(h2Seen.length).toBe(before + 1);
    const rpc = await run(["timeout", "60", "nghttp", "-v", "-H", "te: trailers", "-H", `authorization: Bearer ${PLACEHOLDER}`, "-d", "/dev/null", `https://${HOST}:${h2FwdPort()}/rpc`]);
    expect(rpc.exitCode).toBe(0);
    expect(rpc.stdout).toMatch(/recv \(stream_id=\d+\) grpc-status: 0/);
    expect(rpc.stdout).toMatch(/recv \(stream_id=\d+\) x-auth: \*+/);
    expect(rpc.stdout).not.toContain(SECRET);
    expect(h2Seen.at(-1)!["te"]).toBe("trailers");
  }, 60_000);
});

describe("gRPC through interception", () => {
  test("unary and server-streaming calls pass credentialed; a method a rule denies fails alone; a status in trailers arrives", async () => {
    const before = httpEvents().length;
    const proc = Bun.spawn(["timeout", "60", "/usr/bin/python3", GRPC_SCRIPT, "call", String(grpcPort), t.caPath], {
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, https_proxy: t.proxyUrl, grpc_proxy: t.proxyUrl, no_proxy: "", NO_PROXY: "" },
    });
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    expect(code).toBe(0);
    // A refusal in gRPC's own form: nothing the client cannot parse.
    expect(err).not.toContain("Error parsing");
    const calls = Object.fromEntries(out.trim().split("\n").map((l) => JSON.parse(l)).map((c) => [c.call, c]));
    expect(calls.unary.code).toBe("OK");
    // The server saw the real secret (it echoes it); the agent gets it masked, same length.
    expect(calls.unary.reply).toMatch(/^echo:hi auth=\*+$/);
    expect(calls.unary.reply.length).toBe("echo:hi auth=Bearer ".length + SECRET.length);
    expect(calls.stream).toEqual({ call: "stream", code: "OK", reply: ["part-0", "part-1", "part-2"] });
    expect(calls.forbidden.code).toBe("PERMISSION_DENIED");
    expect(calls.forbidden.details).toContain("not this method");
    expect(calls.fail).toEqual({ call: "fail", code: "NOT_FOUND", details: "no such thing" });
    expect(out).not.toContain(SECRET);
    const events = httpEvents().slice(before);
    expect(events.find((e) => e.path === "/demo.Echo/Forbidden")?.rule).toBe("no-forbidden-rpc");
    expect(events.filter((e) => e.verdict === "allow").length).toBe(3);
  }, 60_000);
});

describe("HTTP/2 flow control and limits", () => {
  test("a stream whose window the agent never opens stalls alone: another stream on the connection completes", async () => {
    const c = await rawClient();
    try {
      // The connection window opened wide; stream 1's own window stays at 65,535 bytes.
      c.write(windowUpdate(0, 1 << 30));
      c.write(frame(1, 0x5, 1, getPathBlock("/download?mb=32")));
      const dataOn = (id: number) => c.frames.filter((f) => f.type === 0 && f.id === id).reduce((n, f) => n + f.payload.length, 0);
      await c.until(() => dataOn(1) >= 65_535);
      c.write(frame(1, 0x5, 3, getPathBlock("/echo?beside=stalled")));
      await c.until(() => c.frames.some((f) => f.id === 3 && (f.flags & 0x1) !== 0));
      // Stream 1 got no more than its window.
      expect(dataOn(1)).toBe(65_535);
      expect(c.frames.some((f) => f.id === 1 && (f.flags & 0x1) !== 0)).toBe(false);
      // Opening its window lets it go on.
      c.write(windowUpdate(1, 1 << 20));
      await c.until(() => dataOn(1) >= 65_535 + (1 << 20));
    } finally {
      c.close();
    }
  }, 60_000);

  test("streams past the concurrency limit are refused (REFUSED_STREAM or GOAWAY); the connection's open streams go on", async () => {
    const c = await rawClient();
    try {
      const parts: Buffer[] = [];
      for (let i = 0; i < 120; i++) parts.push(frame(1, 0x5, 1 + 2 * i, getPathBlock("/sse?n=2&gap=300")));
      c.write(Buffer.concat(parts));
      const refused = () => c.frames.filter((f) => (f.type === 3 && f.payload.readUInt32BE(0) === 7) || f.type === GOAWAY).length;
      await c.until(() => refused() > 0);
      // Some stream below the limit still finishes its response.
      await c.until(() => c.frames.some((f) => f.type === 0 && (f.flags & 0x1) !== 0));
    } finally {
      c.close();
    }
  }, 60_000);
});

describe("HTTP/2 floods and malformed frames", () => {
  async function stillServes(): Promise<void> {
    const r = await curlVia(t, HOST, upstream.port, "/echo?after=flood", h2);
    expect(r.headers).toContain("HTTP/2 200");
  }

  test("rapid reset (HEADERS then RST_STREAM, 20k times) ends that connection, few of its streams reach a rule", async () => {
    const before = httpEvents().length;
    const r = await rawH2((write) => {
      const parts: Buffer[] = [];
      for (let i = 0; i < 20_000; i++) {
        const id = 1 + 2 * i;
        parts.push(frame(1, 0x5, id, getBlock()), frame(3, 0, id, Buffer.from([0, 0, 0, 8])));
      }
      write(Buffer.concat(parts));
    });
    // GOAWAY is sent, but the socket closes with the flood unread, so the client may see a reset instead.
    expect(r.closed).toBe(true);
    expect(httpEvents().length - before).toBeLessThan(100);
    await stillServes();
  }, 60_000);

  test("an endless CONTINUATION sequence is cut off", async () => {
    const r = await rawH2((write, sock) => {
      write(frame(1, 0, 1, getBlock()));
      const junk = Buffer.alloc(16_000);
      let o = 0;
      for (; o + 16 <= junk.length; o += 16) {
        junk[o] = 0;
        junk[o + 1] = 3;
        junk.write("x-a", o + 2);
        junk[o + 5] = 10;
        junk.write("0123456789", o + 6);
      }
      let n = 0;
      const pump = () => {
        while (n < 4_000 && !sock.destroyed) {
          n++;
          if (!write(frame(9, 0, 1, junk.subarray(0, o)))) return void sock.once("drain", pump);
        }
      };
      pump();
    });
    expect(r.closed).toBe(true);
    await stillServes();
  }, 60_000);

  test("garbage after the preface, DATA on stream 0 and a PING flood each end only their connection", async () => {
    const garbage = await rawH2((write) => write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])));
    expect(garbage.closed).toBe(true);
    const data0 = await rawH2((write) => write(frame(0, 0, 0, Buffer.from("data on stream 0"))));
    expect(data0.closed).toBe(true);
    expect(data0.frameTypes.has(GOAWAY)).toBe(true);
    const pings = await rawH2((write) => {
      const parts: Buffer[] = [];
      for (let i = 0; i < 100_000; i++) parts.push(frame(6, 0, 0, Buffer.alloc(8)));
      write(Buffer.concat(parts));
    });
    expect(pings.closed).toBe(true);
    await stillServes();
  }, 60_000);

  test("WebSockets over h2 (RFC 8441) are refused: SETTINGS_ENABLE_CONNECT_PROTOCOL is never advertised, an extended CONNECT is reset alone, a plain CONNECT refused with 405 and recorded", async () => {
    const c = await rawClient();
    try {
      // The gateway's first SETTINGS: ENABLE_CONNECT_PROTOCOL (0x8) absent or 0.
      await c.until(() => c.frames.some((f) => f.type === 4 && (f.flags & 1) === 0));
      const settings = c.frames.find((f) => f.type === 4 && (f.flags & 1) === 0)!;
      const params = new Map<number, number>();
      for (let o = 0; o + 6 <= settings.payload.length; o += 6) params.set(settings.payload.readUInt16BE(o), settings.payload.readUInt32BE(o + 2));
      expect(params.get(8) ?? 0).toBe(0);
      const before = httpEvents().length;
      const auth = Buffer.from(`${HOST}:${upstream.port}`);
      const lit = (name: string, value: string) => Buffer.concat([Buffer.from([0x00, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
      // Stream 1: an extended CONNECT sent anyway (:protocol websocket), which the library resets before it is a stream.
      c.write(frame(1, 0x4, 1, Buffer.concat([lit(":method", "CONNECT"), lit(":protocol", "websocket"), Buffer.from([0x87]), lit(":path", "/ws"), Buffer.from([0x41, auth.length]), auth])));
      // Stream 3: a plain GET; stream 5: a plain CONNECT (a tunnel no rule could judge).
      c.write(frame(1, 0x5, 3, getPathBlock("/echo?after=connect")));
      c.write(frame(1, 0x4, 5, Buffer.concat([lit(":method", "CONNECT"), Buffer.from([0x41, auth.length]), auth])));
      await c.until(() => [1, 3, 5].every((id) => c.frames.some((f) => (f.type === 3 || f.type === 1) && f.id === id)));
      expect(c.frames.find((f) => f.id === 1)?.type).toBe(3);
      expect(c.frames.some((f) => f.type === GOAWAY)).toBe(false);
      expect(await waitFor(() => httpEvents().length - before >= 2, 30_000)).toBe(true);
      const got = httpEvents().slice(before);
      expect(got.find((e) => e.path === "/echo?after=connect")).toMatchObject({ status: 200 });
      expect(got.find((e) => e.method === "CONNECT")).toMatchObject({ status: 405, verdict: "deny", reason: "CONNECT is not forwarded on an intercepted HTTP/2 connection" });
    } finally {
      c.close();
    }
  }, 60_000);

  test("a header list over the limit is refused on its stream; the connection goes on", async () => {
    const big = "a".repeat(8_000);
    const headers = Array.from({ length: 12 }, (_, i) => ["-H", `x-big-${i}: ${big}`]).flat();
    const r = await curlVia(t, HOST, upstream.port, "/echo?big=1", [...h2, ...headers]);
    expect(r.status === 431 || r.exitCode !== 0).toBe(true);
    await stillServes();
  }, 60_000);
});
