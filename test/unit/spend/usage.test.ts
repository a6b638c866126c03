import { describe, expect, test } from "bun:test";
import { UsageMeter, geminiModelFromPath, type LlmProvider } from "../../../app/spend/usage.ts";
import { priceFor, priced, type Price } from "../../../app/spend/prices.ts";
import { ANTHROPIC_JSON, anthropicSse, GEMINI_JSON, geminiSse, OPENAI_CHAT_JSON, openaiChatSse, OPENAI_RESPONSES_JSON, openaiResponsesSse } from "./shapes.ts";

/** Feeds `body` in pieces of `step` bytes (SSE events and UTF-8 split anywhere). */
function meter(provider: LlmProvider, contentType: string, body: string, opts: { step?: number; ended?: boolean; target?: string; status?: number } = {}) {
  const m = new UsageMeter(provider, opts.target ?? "/v1/messages");
  m.head(opts.status ?? 200, contentType, undefined);
  const bytes = new TextEncoder().encode(body);
  const step = opts.step ?? bytes.length;
  for (let i = 0; i < bytes.length; i += step) m.body(bytes.subarray(i, i + step));
  return m.finish(opts.ended ?? true);
}

describe("usage meter", () => {
  test("anthropic JSON: input, cache writes and reads, output", () => {
    expect(meter("anthropic", "application/json", ANTHROPIC_JSON)).toEqual({
      provider: "anthropic", model: "claude-sonnet-4-20250514", inputTokens: 1200, cacheWriteTokens: 100, cacheReadTokens: 2000, outputTokens: 300, complete: true,
    });
  });

  for (const step of [1, 7, 64, 100_000]) {
    test(`anthropic SSE in pieces of ${step} bytes: message_start's input, message_delta's output; a text delta that spells "usage" counts for nothing`, () => {
      expect(meter("anthropic", "text/event-stream; charset=utf-8", anthropicSse(321), { step })).toEqual({
        provider: "anthropic", model: "claude-sonnet-4-20250514", inputTokens: 472, cacheWriteTokens: 0, cacheReadTokens: 0, outputTokens: 321, complete: true,
      });
    });
  }

  test("anthropic SSE cut off before message_delta: the input and the first output count, not complete", () => {
    const body = anthropicSse(321);
    const cut = body.slice(0, body.indexOf("event: message_delta"));
    expect(meter("anthropic", "text/event-stream", cut, { ended: false })).toMatchObject({ inputTokens: 472, outputTokens: 2, complete: false });
  });

  test("openai chat JSON: cached prompt tokens apart from the rest", () => {
    expect(meter("openai", "application/json", OPENAI_CHAT_JSON)).toEqual({
      provider: "openai", model: "gpt-4o-2024-08-06", inputTokens: 93, cacheReadTokens: 1024, cacheWriteTokens: 0, outputTokens: 46, complete: true,
    });
  });

  test("openai chat SSE with include_usage: the last chunk's usage (the others say usage: null)", () => {
    expect(meter("openai", "text/event-stream", openaiChatSse(), { step: 13 })).toEqual({
      provider: "openai", model: "gpt-4o-mini", inputTokens: 9, cacheReadTokens: 0, cacheWriteTokens: 0, outputTokens: 12, complete: true,
    });
  });

  test("openai responses, JSON and SSE (response.completed)", () => {
    expect(meter("openai", "application/json", OPENAI_RESPONSES_JSON)).toMatchObject({ model: "gpt-4.1-2025-04-14", inputTokens: 36, outputTokens: 87, cacheReadTokens: 0 });
    expect(meter("openai", "text/event-stream", openaiResponsesSse(), { step: 5 })).toMatchObject({ model: "gpt-4.1-2025-04-14", inputTokens: 300, cacheReadTokens: 200, outputTokens: 50, complete: true });
  });

  test("gemini JSON and SSE (CRLF): thoughts count as output, cached content apart; the last chunk's totals", () => {
    expect(meter("gemini", "application/json", GEMINI_JSON, { target: "/v1beta/models/gemini-2.5-pro:generateContent" })).toEqual({
      provider: "gemini", model: "gemini-2.5-pro", inputTokens: 600, cacheReadTokens: 400, cacheWriteTokens: 0, outputTokens: 300, complete: true,
    });
    expect(meter("gemini", "text/event-stream", geminiSse(), { step: 3, target: "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse" })).toMatchObject({
      model: "gemini-2.5-flash", inputTokens: 80, outputTokens: 14,
    });
    expect(geminiModelFromPath("/v1beta/models/gemini-2.0-flash-001:countTokens")).toBe("gemini-2.0-flash-001");
  });

  test("nothing is reported for an error answer, a compressed body, another content type or garbage", () => {
    expect(meter("anthropic", "application/json", ANTHROPIC_JSON, { status: 529 })).toBeUndefined();
    const gz = new UsageMeter("anthropic", "/v1/messages");
    gz.head(200, "application/json", "gzip");
    gz.body(Bun.gzipSync(Buffer.from(ANTHROPIC_JSON)));
    expect(gz.finish(true)).toBeUndefined();
    expect(meter("anthropic", "text/plain", ANTHROPIC_JSON)).toBeUndefined();
    expect(meter("openai", "application/json", "{not json")).toBeUndefined();
    expect(meter("openai", "text/event-stream", "data: {\"usage\": {\"prompt_tokens\": -5, \"completion_tokens\": \"x\"}}\n\n")).toMatchObject({ inputTokens: 0, outputTokens: 0 });
    // A JSON body cut short is not read.
    expect(meter("anthropic", "application/json", ANTHROPIC_JSON.slice(0, 50), { ended: false })).toBeUndefined();
  });
});

describe("prices", () => {
  const prices: Price[] = [
    { pattern: "claude-sonnet-4*", inputPerMtok: 3, outputPerMtok: 15, cacheReadPerMtok: 0.3, cacheWritePerMtok: 3.75 },
    { pattern: "claude-*", inputPerMtok: 15, outputPerMtok: 75, cacheReadPerMtok: 1.5, cacheWritePerMtok: 18.75 },
    { pattern: "gpt-4o-mini", inputPerMtok: 0.15, outputPerMtok: 0.6, cacheReadPerMtok: 0.075, cacheWritePerMtok: 0.15 },
    { pattern: "gpt-4o*", inputPerMtok: 2.5, outputPerMtok: 10, cacheReadPerMtok: 1.25, cacheWritePerMtok: 2.5 },
  ];

  test("exact beats a pattern, the most specific pattern beats the rest", () => {
    expect(priceFor(prices, "claude-sonnet-4-20250514")?.pattern).toBe("claude-sonnet-4*");
    expect(priceFor(prices, "claude-opus-4-1")?.pattern).toBe("claude-*");
    expect(priceFor(prices, "gpt-4o-mini")?.pattern).toBe("gpt-4o-mini");
    expect(priceFor(prices, "gpt-4o-2024-08-06")?.pattern).toBe("gpt-4o*");
    expect(priceFor(prices, "llama")).toBeUndefined();
  });

  test("the cost of each kind of token at its price; an unknown model at the highest price of each kind", () => {
    const usage = meter("anthropic", "application/json", ANTHROPIC_JSON)!;
    // 1200 × 3 + 300 × 15 + 2000 × 0.3 + 100 × 3.75, per million
    expect(priced(prices, usage).usd).toBeCloseTo((3600 + 4500 + 600 + 375) / 1e6, 12);
    const unknown = priced(prices, { ...usage, model: "mystery-1" });
    expect(unknown.unpriced).toBe(true);
    expect(unknown.usd).toBeCloseTo((1200 * 15 + 300 * 75 + 2000 * 1.5 + 100 * 18.75) / 1e6, 12);
    expect(priced([], usage).usd).toBeUndefined();
  });
});
