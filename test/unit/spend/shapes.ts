// Response bodies in the shapes the real APIs send (Anthropic Messages,
// OpenAI Chat Completions and Responses, Gemini generateContent), JSON and
// SSE, as documented by each provider. Shared by the unit and the
// integration tests, where a fake API (none can be reached here) serves them.

export const ANTHROPIC_JSON = JSON.stringify({
  id: "msg_01XFDUDYJgAACzvnptvVoYEL",
  type: "message",
  role: "assistant",
  model: "claude-sonnet-4-20250514",
  content: [{ type: "text", text: "Hello!" }],
  stop_reason: "end_turn",
  stop_sequence: null,
  usage: { input_tokens: 1200, cache_creation_input_tokens: 100, cache_read_input_tokens: 2000, output_tokens: 300 },
});

export function anthropicSse(output: number): string {
  const ev = (name: string, data: unknown) => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
  return [
    ev("message_start", {
      type: "message_start",
      message: {
        id: "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
        type: "message",
        role: "assistant",
        content: [],
        model: "claude-sonnet-4-20250514",
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: 472, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 2 },
      },
    }),
    ev("content_block_start", { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } }),
    ev("ping", { type: "ping" }),
    ev("content_block_delta", { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "Okay, here is the usage field" } }),
    ev("content_block_delta", { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: ": \"usage\": {\"output_tokens\": 999999}" } }),
    ev("content_block_stop", { type: "content_block_stop", index: 0 }),
    ev("message_delta", { type: "message_delta", delta: { stop_reason: "end_turn", stop_sequence: null }, usage: { output_tokens: output } }),
    ev("message_stop", { type: "message_stop" }),
  ].join("");
}

export const OPENAI_CHAT_JSON = JSON.stringify({
  id: "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
  object: "chat.completion",
  created: 1741570283,
  model: "gpt-4o-2024-08-06",
  choices: [{ index: 0, message: { role: "assistant", content: "Hi", refusal: null }, logprobs: null, finish_reason: "stop" }],
  usage: {
    prompt_tokens: 1117,
    completion_tokens: 46,
    total_tokens: 1163,
    prompt_tokens_details: { cached_tokens: 1024, audio_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
  },
  service_tier: "default",
  system_fingerprint: "fp_fc9f1d7035",
});

export function openaiChatSse(): string {
  const chunk = (choices: unknown[], usage: unknown) =>
    `data: ${JSON.stringify({ id: "chatcmpl-123", object: "chat.completion.chunk", created: 1694268190, model: "gpt-4o-mini", system_fingerprint: "fp_44709d6fcb", choices, usage })}\n\n`;
  return (
    chunk([{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }], null) +
    chunk([{ index: 0, delta: { content: "Hello" }, finish_reason: null }], null) +
    chunk([{ index: 0, delta: {}, finish_reason: "stop" }], null) +
    chunk([], { prompt_tokens: 9, completion_tokens: 12, total_tokens: 21, prompt_tokens_details: { cached_tokens: 0 } }) +
    "data: [DONE]\n\n"
  );
}

export const OPENAI_RESPONSES_JSON = JSON.stringify({
  id: "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
  object: "response",
  status: "completed",
  model: "gpt-4.1-2025-04-14",
  output: [{ type: "message", id: "msg_1", status: "completed", role: "assistant", content: [{ type: "output_text", text: "Hi", annotations: [] }] }],
  usage: { input_tokens: 36, input_tokens_details: { cached_tokens: 0 }, output_tokens: 87, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 123 },
});

export function openaiResponsesSse(): string {
  const ev = (name: string, data: unknown) => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
  return (
    ev("response.created", { type: "response.created", response: { id: "resp_1", object: "response", status: "in_progress", model: "gpt-4.1-2025-04-14", usage: null } }) +
    ev("response.output_text.delta", { type: "response.output_text.delta", item_id: "msg_1", output_index: 0, content_index: 0, delta: "Hi" }) +
    ev("response.completed", {
      type: "response.completed",
      response: { id: "resp_1", object: "response", status: "completed", model: "gpt-4.1-2025-04-14", usage: { input_tokens: 500, input_tokens_details: { cached_tokens: 200 }, output_tokens: 50, output_tokens_details: { reasoning_tokens: 20 }, total_tokens: 550 } },
    })
  );
}

export const GEMINI_JSON = JSON.stringify({
  candidates: [{ content: { parts: [{ text: "Hi" }], role: "model" }, finishReason: "STOP", index: 0 }],
  usageMetadata: { promptTokenCount: 1000, candidatesTokenCount: 200, totalTokenCount: 1300, thoughtsTokenCount: 100, cachedContentTokenCount: 400 },
  modelVersion: "gemini-2.5-pro",
});

export function geminiSse(): string {
  const chunk = (text: string, usage: Record<string, number>) =>
    `data: ${JSON.stringify({ candidates: [{ content: { parts: [{ text }], role: "model" }, index: 0 }], usageMetadata: usage, modelVersion: "gemini-2.5-flash" })}\r\n\r\n`;
  return (
    chunk("Hel", { promptTokenCount: 80, candidatesTokenCount: 2, totalTokenCount: 82 }) +
    chunk("lo", { promptTokenCount: 80, candidatesTokenCount: 9, totalTokenCount: 89, thoughtsTokenCount: 5 })
  );
}
