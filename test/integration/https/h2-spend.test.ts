// LLM spend and coded credentialed answers over HTTP/2, end to end: the
// real curl --http2 through the gateway to a fake Anthropic API (none can
// be reached here) in the real response shapes, served once over HTTP/1.1
// (Bun.serve: each h2 stream translated) and once over h2 (node:http2: the
// gateway's own upstream session). The usage each answer reports is priced
// on the stream's event and counts toward the profile's budget, which then
// refuses the next stream with 429; a gzip answer echoing the key is
// decoded, masked and gzipped again, as HTTP/1.1 does.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import http2 from "node:http2";
import net from "node:net";
import zlib from "node:zlib";
import { makeTestPki } from "../support/pki.ts";
import { curlVia, startTestGateway, tempDir, type TestGateway } from "../support/gateway.ts";
import { ANTHROPIC_JSON, anthropicSse } from "../../unit/spend/shapes.ts";

const KEY = "sk-ant-api03-real-key-for-h2-spend-0123456789";
const HOST = "anthropic.test";

let t: TestGateway;
let h1: ReturnType<typeof Bun.serve>;
let h2: http2.Http2SecureServer;
let h2Port = 0;
const reached: { proto: string; keyOk: boolean }[] = [];

/** The fake API's answer to one request: JSON, SSE (in small pieces), or a gzip body echoing the key it got. */
function answer(path: string, key: string, body: string): { headers: Record<string, string>; pieces: Uint8Array[] } {
  if (path === "/gzip") {
    const text = JSON.stringify({ echo: key, pad: "y".repeat(2000) });
    return { headers: { "content-type": "application/json", "content-encoding": "gzip" }, pieces: [zlib.gzipSync(Buffer.from(text))] };
  }
  if ((JSON.parse(body || "{}") as { stream?: boolean }).stream) {
    const text = anthropicSse(1000);
    const pieces: Uint8Array[] = [];
    for (let i = 0; i < text.length; i += 97) pieces.push(Buffer.from(text.slice(i, i + 97)));
    return { headers: { "content-type": "text/event-stream; charset=utf-8" }, pieces };
  }
  return { headers: { "content-type": "application/json" }, pieces: [Buffer.from(ANTHROPIC_JSON)] };
}

beforeAll(async () => {
  const pki = makeTestPki(tempDir("h2spend-pki"), [HOST]);
  h1 = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: pki.certPem, key: pki.keyPem },
    async fetch(req) {
      const key = req.headers.get("x-api-key") ?? "";
      reached.push({ proto: "http/1.1", keyOk: key === KEY });
      const a = answer(new URL(req.url).pathname, key, await req.text());
      const stream = new ReadableStream({
        async start(c) {
          for (const p of a.pieces) {
            c.enqueue(p);
            await Bun.sleep(0);
          }
          c.close();
        },
      });
      return new Response(stream, { headers: a.headers });
    },
  });
  h2 = http2.createSecureServer({ cert: pki.certPem, key: pki.keyPem, allowHTTP1: false });
  h2.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    const chunks: Buffer[] = [];
    stream.on("data", (d: Buffer) => chunks.push(d));
    stream.on("end", () => {
      const key = String(headers["x-api-key"] ?? "");
      reached.push({ proto: "h2", keyOk: key === KEY });
      const a = answer(String(headers[":path"]), key, Buffer.concat(chunks).toString());
      stream.respond({ ":status": 200, ...a.headers });
      for (const p of a.pieces) stream.write(p);
      stream.end();
    });
  });
  await new Promise<void>((resolve) => h2.listen(0, "127.0.0.1", resolve));
  h2Port = (h2.address() as net.AddressInfo).port;
  t = await startTestGateway(
    `
defaults {
  verdict = "allow"
  profile = profile.agents
}
endpoint "https" "anthropic" {
  hosts      = ["${HOST}"]
  ports      = [${h1.port}, ${h2Port}]
  ca_cert    = "${pki.caCertPath}"
  credential = anthropic_manual_key.claude
}
credential "anthropic_manual_key" "claude" {}
price "claude-sonnet-4*" {
  input_per_mtok       = 3
  output_per_mtok      = 15
  cache_read_per_mtok  = 0.3
  cache_write_per_mtok = 3.75
}
profile "agents" {
  credentials = [anthropic_manual_key.claude]
  budget { daily_usd = 0.05 }
}
`,
    { CLAWPATROL_SECRET_CLAUDE: KEY },
  );
}, 60_000);

afterAll(async () => {
  await t?.stop();
  h1?.stop(true);
  h2?.close();
});

const ports = () => [
  ["HTTP/1.1", h1.port!],
  ["h2", h2Port],
] as const;

const post = (port: number, path: string, body: unknown, extra: string[] = []) =>
  curlVia(t, HOST, port, path, ["--http2", "-X", "POST", "-H", "content-type: application/json", "-H", "x-api-key: placeholder", "--data", JSON.stringify(body), ...extra]);

// Costs by the prices above: JSON (1200×3 + 300×15 + 2000×0.3 + 100×3.75)/1e6 = $0.009075; SSE (472×3 + 1000×15)/1e6 = $0.016416.
const JSON_USD = 0.009075;
const SSE_USD = 0.016416;

describe("HTTP/2 streams and credentialed answers", () => {
  test("a gzip answer echoing the key is decoded, masked and gzipped again on the stream, from either kind of upstream", async () => {
    for (const [kind, port] of ports()) {
      const r = await post(port, "/gzip", {}, ["--compressed"]);
      expect(r.exitCode, `${kind}: ${r.stderr}`).toBe(0);
      expect(r.headers).toMatch(/^HTTP\/2 200/m);
      expect(r.headers).toMatch(/content-encoding: gzip/i);
      const body = JSON.parse(r.body) as { echo: string; pad: string };
      expect(body.echo.length).toBe(KEY.length);
      expect(body.echo).not.toBe(KEY);
      expect(body.pad).toBe("y".repeat(2000));
      expect(r.body + r.headers).not.toContain(KEY);
    }
    expect(reached.map((r) => r.proto)).toEqual(["http/1.1", "h2"]);
    expect(reached.every((r) => r.keyOk)).toBe(true);
  });

  test("usage read from JSON and SSE answers on h2 streams is priced on each stream's event; the agent gets the answer whole", async () => {
    const before = t.events.length;
    for (const [kind, port] of ports()) {
      const json = await post(port, "/v1/messages", { model: "x", stream: false });
      const sse = await post(port, "/v1/messages", { model: "x", stream: true });
      expect([json.status, sse.status], kind).toEqual([200, 200]);
      expect(json.headers).toMatch(/^HTTP\/2 200/m);
      expect(json.body).toBe(ANTHROPIC_JSON);
      expect(sse.body).toBe(anthropicSse(1000));
    }
    const usages = t.events.slice(before).filter((e) => e.kind === "http" && e.usage).map((e) => e.usage!);
    expect(usages.map((u) => u.model)).toEqual(Array(4).fill("claude-sonnet-4-20250514"));
    expect(usages.map((u) => u.outputTokens)).toEqual([300, 1000, 300, 1000]);
    [JSON_USD, SSE_USD, JSON_USD, SSE_USD].forEach((usd, i) => expect(usages[i]!.usd!).toBeCloseTo(usd, 10));
    expect(usages.every((u) => u.complete && !u.unpriced)).toBe(true);
  });

  test("the budget the streams spent refuses the next stream with 429 and Retry-After; nothing reaches the API", async () => {
    // $0.05098 spent of $0.05.
    const before = reached.length;
    for (const [, port] of ports()) {
      const r = await post(port, "/v1/messages", { model: "x", stream: false });
      expect(r.status).toBe(429);
      expect(r.headers).toMatch(/^HTTP\/2 429/m);
      expect(r.headers).toMatch(/retry-after: \d+/i);
      expect(r.body).toContain("daily budget of $0.05");
    }
    expect(reached.length).toBe(before);
    expect(JSON.stringify(t.events)).not.toContain(KEY);
  });
});
