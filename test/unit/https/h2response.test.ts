// What an HTTP/2 agent's stream is sent of an upstream response: masked
// in flight, a coded credentialed body re-coded whole, the LLM usage meter
// fed the bytes as the upstream sent them.
import { describe, expect, test } from "bun:test";
import zlib from "node:zlib";
import { H2ResponseFilter } from "../../../app/endpoints/https/h2response.ts";
import { UsageMeter } from "../../../app/spend/usage.ts";
import { ANTHROPIC_JSON, anthropicSse } from "../spend/shapes.ts";

const SECRET = "sk-h2-filter-0123456789abcdef";

function run(f: H2ResponseFilter, status: number, headers: [string, string][], pieces: Uint8Array[]) {
  const head = f.head(status, headers, true);
  const out: Uint8Array[] = [];
  for (const p of pieces) {
    const r = f.body(p);
    if (r.type === "refuse") return { head, refused: r.message };
    out.push(r.data);
  }
  const end = f.end();
  if (end.type === "refuse") return { head, refused: end.message };
  out.push(end.data);
  return { head, end, body: Buffer.concat(out) };
}

describe("H2ResponseFilter", () => {
  test("an identity body: head sent at once, connection-specific fields gone, the secret masked at the same length even split across pieces", () => {
    const text = Buffer.from(`{"echo":"${SECRET}"}`);
    const r = run(new H2ResponseFilter([SECRET]), 200, [["Content-Type", "application/json"], ["Connection", "keep-alive"], ["X-Echo", SECRET]], [text.subarray(0, 14), text.subarray(14)]);
    expect(r.head.type).toBe("respond");
    const headers = (r.head as { headers: Record<string, unknown> }).headers;
    expect(headers[":status"]).toBe(200);
    expect(headers["connection"]).toBeUndefined();
    expect(String(headers["x-echo"])).not.toContain(SECRET);
    expect(r.body!.length).toBe(text.length);
    expect(r.body!.toString()).not.toContain(SECRET);
    expect(r.end!.headers).toBeUndefined();
  });

  test("a gzip body on a credentialed request is held, masked, gzipped again and sent with its head and new length", () => {
    const text = `{"echo":"Bearer ${SECRET}","pad":"${"x".repeat(500)}"}`;
    const wire = zlib.gzipSync(Buffer.from(text));
    const r = run(new H2ResponseFilter([SECRET]), 200, [["content-type", "application/json"], ["content-encoding", "gzip"], ["content-length", String(wire.length)]], [wire.subarray(0, 10), wire.subarray(10)]);
    expect(r.head.type).toBe("hold");
    const headers = r.end!.headers!;
    expect(headers["content-encoding"]).toBe("gzip");
    expect(Number(headers["content-length"])).toBe(r.body!.length);
    const plain = zlib.gunzipSync(r.body!).toString();
    expect(plain.length).toBe(text.length);
    expect(plain).not.toContain(SECRET);
    expect(plain).toContain(`"pad":"${"x".repeat(500)}"`);
  });

  test("a coding that cannot be re-coded, or a body that does not decode, is refused", () => {
    expect(run(new H2ResponseFilter([SECRET]), 200, [["content-encoding", "zstd"]], []).head).toEqual({ type: "refuse", message: "upstream sent Content-Encoding zstd despite identity" });
    expect(run(new H2ResponseFilter([SECRET]), 200, [["content-encoding", "gzip"]], [Buffer.from("not gzip")]).refused).toContain("does not decode");
  });

  test("without a secret to mask, a coded body passes as it came", () => {
    const wire = zlib.gzipSync(Buffer.from("plain"));
    const r = run(new H2ResponseFilter([]), 200, [["content-encoding", "gzip"]], [wire]);
    expect(r.head.type).toBe("respond");
    expect(Buffer.compare(r.body!, wire)).toBe(0);
  });

  test("the usage meter reads the answer as the upstream sent it, JSON or SSE cut anywhere", () => {
    const json = new UsageMeter("anthropic", "/v1/messages");
    run(new H2ResponseFilter([SECRET], json), 200, [["content-type", "application/json"]], [Buffer.from(ANTHROPIC_JSON.slice(0, 33)), Buffer.from(ANTHROPIC_JSON.slice(33))]);
    expect(json.finish(true)).toMatchObject({ provider: "anthropic", model: "claude-sonnet-4-20250514", outputTokens: 300, complete: true });
    const sse = new UsageMeter("anthropic", "/v1/messages");
    const text = anthropicSse(1000);
    const pieces: Uint8Array[] = [];
    for (let i = 0; i < text.length; i += 61) pieces.push(Buffer.from(text.slice(i, i + 61)));
    run(new H2ResponseFilter([SECRET], sse), 200, [["content-type", "text/event-stream"]], pieces);
    expect(sse.finish(true)).toMatchObject({ outputTokens: 1000, complete: true });
  });
});
