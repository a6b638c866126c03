// The gateway core end to end on loopback: the real curl through the
// explicit proxy, TLS interception with a minted leaf, a real TLS upstream
// with its own CA, credential injection, deny, streaming, WebSocket.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import path from "node:path";
import net from "node:net";
import tls from "node:tls";
import { makeTestPki, type TestPki } from "../support/pki.ts";
import { startUpstream, downloadBlock, type TestUpstream } from "../support/upstream.ts";
import { curlVia, startTestGateway, tempDir, type TestGateway } from "../support/gateway.ts";

const SECRET = "sk-live-REAL-secret-0123456789abcdef";
const PLACEHOLDER = "clawpatrol-placeholder-api";

let pki: TestPki;
let upstream: TestUpstream;
let t: TestGateway;

beforeAll(async () => {
  pki = makeTestPki(tempDir("pki"), ["api.test", "other.test"]);
  upstream = startUpstream(pki);
  t = await startTestGateway(
    `
defaults {
  verdict = "allow"
  unknown_host = "passthrough"
  profile = profile.agents
}
endpoint "https" "api" {
  hosts = ["api.test"]
  ports = [${upstream.port}]
  ca_cert = "${pki.caCertPath}"
  credential = bearer_token.api
}
credential "bearer_token" "api" {}
profile "agents" {
  credentials = [bearer_token.api]
}
rule "no-deletes" {
  endpoint = https.api
  condition = "http.method == 'DELETE'"
  verdict = "deny"
  reason = "deletes need a human"
}
rule "no-prod-in-body" {
  endpoint = https.api
  condition = "http.method == 'POST' && http.path == '/echo' && http.body_json.env == 'prod'"
  verdict = "deny"
  reason = "no prod from agents"
}
`,
    { CLAWPATROL_SECRET_API: SECRET },
  );
});

afterAll(async () => {
  await t?.stop();
  upstream?.stop();
});

describe("credential injection", () => {
  test("the upstream sees the real secret in place of the placeholder; the agent never does", async () => {
    const r = await curlVia(t, "api.test", upstream.port, "/echo", ["-H", `Authorization: Bearer ${PLACEHOLDER}`]);
    expect(r.exitCode).toBe(0);
    expect(r.status).toBe(200);
    const echoed = JSON.parse(r.body);
    // What the upstream received (it echoes it back: the gateway scrubs the secret on the way back).
    const seen = upstream.seen.at(-1)!;
    expect(seen.headers["authorization"]).toBe(`Bearer ${SECRET}`);
    expect(echoed.headers["authorization"]).not.toContain(SECRET);
    expect(r.body).not.toContain(SECRET);
    expect(r.headers).not.toContain(SECRET);
  });

  test("a secret the upstream echoes in a header and the body is masked toward the agent", async () => {
    const r = await curlVia(t, "api.test", upstream.port, "/echo-auth", ["-H", `Authorization: Bearer ${PLACEHOLDER}`]);
    expect(r.status).toBe(200);
    expect(r.body.startsWith("you sent: ")).toBe(true);
    expect(r.body).not.toContain(SECRET);
    expect(r.headers.toLowerCase()).toContain("x-echo-auth:");
    expect(r.headers).not.toContain(SECRET);
  });

  test("every event names the credential, never its value", async () => {
    await curlVia(t, "api.test", upstream.port, "/echo");
    const e = t.events.filter((x) => x.kind === "http").at(-1)!;
    expect(e.credential).toBe("bearer_token.api");
    expect(JSON.stringify(t.events)).not.toContain(SECRET);
  });
});

describe("rules", () => {
  test("a deny rule answers 403 with the rule and reason, and the upstream sees nothing", async () => {
    const before = upstream.seen.length;
    const r = await curlVia(t, "api.test", upstream.port, "/echo", ["-X", "DELETE"]);
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body)).toEqual({ error: "denied by clawpatrol", rule: "no-deletes", reason: "deletes need a human" });
    expect(upstream.seen.length).toBe(before);
    const e = t.events.filter((x) => x.kind === "http").at(-1)!;
    expect(e.verdict).toBe("deny");
    expect(e.rule).toBe("no-deletes");
    expect(e.status).toBe(403);
  });

  test("a rule reading the JSON body decides on it", async () => {
    const denied = await curlVia(t, "api.test", upstream.port, "/echo", ["-H", "content-type: application/json", "--data", '{"env":"prod"}']);
    expect(denied.status).toBe(403);
    expect(JSON.parse(denied.body).rule).toBe("no-prod-in-body");
    const allowed = await curlVia(t, "api.test", upstream.port, "/echo", ["-H", "content-type: application/json", "--data", '{"env":"dev"}']);
    expect(allowed.status).toBe(200);
    expect(JSON.parse(allowed.body).body).toBe('{"env":"dev"}');
  });

  test("a Host header naming another server than the SNI is refused", async () => {
    const r = await curlVia(t, "api.test", upstream.port, "/echo", ["-H", "Host: other.test"]);
    expect(r.status).toBe(421);
  });
});

describe("streaming", () => {
  test("server-sent events reach the agent one by one, not buffered", async () => {
    const gapMs = 300;
    const proc = Bun.spawn(
      ["curl", "-sSN", "--cacert", t.caPath, "-x", t.proxyUrl, "--connect-to", `api.test:${upstream.port}:127.0.0.1:${upstream.port}`,
        `https://api.test:${upstream.port}/sse?n=4&gap=${gapMs}`],
      { stdout: "pipe" },
    );
    const arrivals: number[] = [];
    const decoder = new TextDecoder();
    let text = "";
    for await (const chunk of proc.stdout as unknown as AsyncIterable<Uint8Array>) {
      text += decoder.decode(chunk);
      const n = text.split("\n\n").length - 1;
      while (arrivals.length < n) arrivals.push(Date.now());
    }
    await proc.exited;
    expect(arrivals.length).toBe(4);
    // Buffering would deliver everything at once at the end; event by event they are spread out.
    expect(arrivals[3]! - arrivals[0]!).toBeGreaterThan(gapMs * 2);
  });

  test("a 200 MB upload and download arrive sha256-exact", async () => {
    const mb = 200;
    const file = path.join(t.dir, "upload.bin");
    const expected = createHash("sha256");
    const writer = Bun.file(file).writer();
    for (let i = 0; i < mb; i++) {
      const block = downloadBlock(i + 1000);
      expected.update(block);
      writer.write(block);
    }
    await writer.end();
    const up = await curlVia(t, "api.test", upstream.port, "/upload", ["--data-binary", `@${file}`, "-H", "content-type: application/octet-stream"]);
    expect(up.status).toBe(200);
    expect(JSON.parse(up.body)).toEqual({ sha256: expected.digest("hex"), size: mb << 20 });

    const out = path.join(t.dir, "download.bin");
    const down = await curlVia(t, "api.test", upstream.port, `/download?mb=${mb}`, ["-o", out]);
    expect(down.status).toBe(200);
    const want = createHash("sha256");
    for (let i = 0; i < mb; i++) want.update(downloadBlock(i));
    const got = createHash("sha256");
    for await (const chunk of Bun.file(out).stream() as unknown as AsyncIterable<Uint8Array>) got.update(chunk);
    expect(got.digest("hex")).toBe(want.digest("hex"));
  }, 120_000);
});

describe("websocket", () => {
  test("an upgrade is bridged and frames echo both ways", async () => {
    // Through the proxy by hand: CONNECT, TLS with the gateway CA, then the WebSocket handshake.
    const { hostname: host, port } = new URL(t.proxyUrl);
    const sock = net.connect(Number(port), host);
    await new Promise<void>((resolve) => sock.once("connect", () => resolve()));
    sock.write(`CONNECT 127.0.0.1:${upstream.port} HTTP/1.1\r\nHost: 127.0.0.1:${upstream.port}\r\n\r\n`);
    const established = await new Promise<string>((resolve) => sock.once("data", (d: Buffer) => resolve(d.toString())));
    expect(established).toStartWith("HTTP/1.1 200");
    const ca = await Bun.file(t.caPath).text();
    const tlsSock = tls.connect({ socket: sock, servername: "api.test", ca });
    await new Promise<void>((resolve, reject) => {
      tlsSock.once("secureConnect", () => resolve());
      tlsSock.once("error", reject);
    });
    const key = Buffer.from("0123456789abcdef").toString("base64");
    tlsSock.write(
      `GET /ws HTTP/1.1\r\nHost: api.test:${upstream.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    const head = await new Promise<string>((resolve) => tlsSock.once("data", (d: Buffer) => resolve(d.toString("latin1"))));
    expect(head).toStartWith("HTTP/1.1 101");
    // A masked text frame "hello" (RFC 6455 §5.2).
    const payload = Buffer.from("hello");
    const mask = Buffer.from([1, 2, 3, 4]);
    const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
    tlsSock.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]));
    const frame = await new Promise<Buffer>((resolve) => tlsSock.once("data", (d: Buffer) => resolve(d)));
    expect(frame[0]).toBe(0x81);
    expect(frame.subarray(2, 2 + frame[1]!).toString()).toBe("hello");
    tlsSock.destroy();
  });
});

describe("HTTP/1.1 details", () => {
  test("Expect: 100-continue: the gateway reads the body itself when a rule needs it, and decides on it", async () => {
    const big = JSON.stringify({ env: "prod", pad: "x".repeat(4000) });
    const denied = await curlVia(t, "api.test", upstream.port, "/echo", ["-H", "content-type: application/json", "-H", "Expect: 100-continue", "--data", big]);
    expect(denied.status).toBe(403);
    expect(JSON.parse(denied.body).rule).toBe("no-prod-in-body");
    const okBody = JSON.stringify({ env: "dev", pad: "x".repeat(4000) });
    const allowed = await curlVia(t, "api.test", upstream.port, "/echo", ["-H", "content-type: application/json", "-H", "Expect: 100-continue", "--data", okBody]);
    expect(allowed.status).toBe(200);
    expect(JSON.parse(allowed.body).body).toBe(okBody);
    // The upstream never saw the Expect we already answered.
    expect(upstream.seen.at(-1)!.headers["expect"]).toBeUndefined();
  });

  test("a chunked request body is forwarded intact", async () => {
    const file = path.join(t.dir, "chunked.bin");
    const data = downloadBlock(7, 300_000);
    await Bun.write(file, data);
    const r = await curlVia(t, "api.test", upstream.port, "/upload", ["-H", "Transfer-Encoding: chunked", "--data-binary", `@${file}`]);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ sha256: createHash("sha256").update(data).digest("hex"), size: data.length });
  });

  test("several requests share one agent connection (keep-alive), a deny in between included", async () => {
    const base = `https://api.test:${upstream.port}`;
    const proc = Bun.spawn(
      ["curl", "-sS", "--cacert", t.caPath, "-x", t.proxyUrl, "--connect-to", `api.test:${upstream.port}:127.0.0.1:${upstream.port}`,
        "-o", "/dev/null", "-w", "%{http_code} %{num_connects}\n", `${base}/echo`, "-o", "/dev/null", "-X", "DELETE", `${base}/echo?x=1`,
        "-o", "/dev/null", "-X", "GET", `${base}/echo?y=2`],
      { stdout: "pipe", stderr: "pipe" },
    );
    const lines = (await new Response(proc.stdout).text()).trim().split("\n");
    expect(await proc.exited).toBe(0);
    // -X applies to every URL given after it; what matters: one connection, then reuse.
    expect(lines.map((l) => l.split(" ")[1])).toEqual(["1", "0", "0"]);
    const http = t.events.filter((e) => e.kind === "http").slice(-3);
    expect(new Set(http.map((e) => e.flowId)).size).toBe(1);
  });

  test("HEAD keeps the upstream's Content-Length and sends no body", async () => {
    const r = await curlVia(t, "api.test", upstream.port, "/echo?head", ["-I"]);
    expect(r.status).toBe(200);
    // curl -I prints the head as its output; no JSON body may follow it.
    expect(r.body).not.toContain("{");
    // The upstream answers HEAD with the length a GET would have; it is kept.
    expect(r.headers.toLowerCase()).toMatch(/content-length: [1-9][0-9]*\r\n/);
  });

  test("an upstream whose certificate the gateway cannot verify gets 502, not a silent downgrade", async () => {
    const other = await startTestGateway(
      `
defaults {
  verdict = "allow"
  profile = profile.p
}
endpoint "https" "api" {
  hosts = ["api.test"]
  ports = [${upstream.port}]
}
profile "p" {}
`,
    );
    try {
      const r = await curlVia(other, "api.test", upstream.port, "/echo");
      expect(r.status).toBe(502);
      expect(upstream.seen.every((s) => s.path !== "/never")).toBe(true);
      const e = other.events.at(-1)!;
      expect(e.status).toBe(502);
      expect(e.detail).toContain("upstream");
    } finally {
      await other.stop();
    }
  });
});
