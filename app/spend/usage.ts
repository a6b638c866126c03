// The token usage an LLM API reports in its response, read as the response
// streams past (sans-IO: head, body bytes, finish). Three shapes:
//   anthropic: `usage` in the JSON body, or `message_start` (input, cache)
//              then `message_delta` (output so far) in the SSE stream;
//   openai:    `usage` of Chat Completions (prompt/completion tokens, the
//              last chunk when streamed) or of Responses (input/output tokens,
//              `response.completed` when streamed);
//   gemini:    `usageMetadata` of every JSON or SSE chunk (the last counts).
// Counts are normalised so a price applies to each exactly once: `input`
// excludes tokens read from the cache, `output` includes reasoning tokens.
// A stream cut short yields what it reported so far (`complete: false`).

export type LlmProvider = "anthropic" | "openai" | "gemini";

export interface LlmUsage {
  provider: LlmProvider;
  model: string;
  /** Input tokens billed at the input price (cache reads and writes apart). */
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
  /** The response ended normally and its final counts were read. */
  complete: boolean;
  /** What the tokens cost by the config's prices (set by the gateway, not the meter). */
  usd?: number;
  /** No configured price matched the model: charged at the highest configured one. */
  unpriced?: boolean;
}

/** A JSON body larger than this is not read for usage (LLM answers are far smaller). */
const MAX_JSON_BYTES = 8 * 1024 * 1024;
/** One SSE event's data past this is skipped (usage events are a few hundred bytes). */
const MAX_EVENT_BYTES = 1024 * 1024;

/** `"usage": {` or gemini's `"usageMetadata": {` (OpenAI's chunks say `"usage": null` until the last). */
const CARRIES_USAGE = /"usage(?:Metadata)?"\s*:\s*\{/;

type Counts = Omit<LlmUsage, "provider" | "model" | "complete" | "usd" | "unpriced">;

export class UsageMeter {
  private mode: "json" | "sse" | "off" = "off";
  private readonly decoder = new TextDecoder();
  private json: Uint8Array[] = [];
  private jsonBytes = 0;
  /** SSE: the text after the last complete line, and the event being gathered. */
  private pending = "";
  private eventName = "";
  private eventData: string[] = [];
  private eventBytes = 0;
  private model = "";
  private counts: Counts | undefined;
  private sawFinal = false;

  constructor(
    private readonly provider: LlmProvider,
    /** The request target (gemini names the model in the path). */
    target: string,
  ) {
    if (provider === "gemini") this.model = geminiModelFromPath(target);
  }

  /** The response head: only a 2xx answer in JSON or SSE is read. */
  head(status: number, contentType: string | undefined, contentEncoding: string | undefined): void {
    const type = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
    const coded = contentEncoding !== undefined && contentEncoding.trim().toLowerCase() !== "identity" && contentEncoding.trim() !== "";
    if (status < 200 || status > 299 || coded) this.mode = "off";
    else if (type === "text/event-stream") this.mode = "sse";
    else if (type === "application/json" || type.endsWith("+json")) this.mode = "json";
    else this.mode = "off";
  }

  body(data: Uint8Array): void {
    if (this.mode === "json") {
      this.jsonBytes += data.length;
      if (this.jsonBytes > MAX_JSON_BYTES) {
        this.mode = "off";
        this.json = [];
        return;
      }
      this.json.push(data);
    } else if (this.mode === "sse") {
      this.feedSse(this.decoder.decode(data, { stream: true }));
    }
  }

  /** What was reported; undefined when nothing was (an error answer, another shape). */
  finish(ended: boolean): LlmUsage | undefined {
    if (this.mode === "json" && ended) {
      const text = this.decoder.decode(Buffer.concat(this.json));
      this.json = [];
      try {
        this.take(JSON.parse(text), true);
      } catch {
        // Not JSON after all: nothing reported.
      }
    } else if (this.mode === "sse") {
      this.feedSse(this.decoder.decode());
      if (ended) {
        // A last event without its blank line (or its line end) still counts.
        if (this.pending !== "") this.sseLine(this.pending.replace(/\r$/, ""));
        this.pending = "";
        this.dispatch();
      }
    }
    this.mode = "off";
    if (!this.counts) return undefined;
    return { provider: this.provider, model: this.model, ...this.counts, complete: ended && this.sawFinal };
  }

  private feedSse(text: string): void {
    let buf = this.pending + text;
    let nl: number;
    while ((nl = buf.search(/\r\n|\r|\n/)) !== -1) {
      // A CR at the end may be the first half of a CRLF split across reads.
      if (buf[nl] === "\r" && nl === buf.length - 1) break;
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf[nl] === "\r" && buf[nl + 1] === "\n" ? 2 : 1));
      this.sseLine(line);
    }
    // A line longer than an event may be is never going to be read.
    this.pending = buf.length > MAX_EVENT_BYTES ? "" : buf;
  }

  private sseLine(line: string): void {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.eventName = value;
    else if (field === "data") {
      this.eventBytes += value.length;
      if (this.eventBytes <= MAX_EVENT_BYTES) this.eventData.push(value);
    }
  }

  private dispatch(): void {
    const name = this.eventName;
    const data = this.eventBytes <= MAX_EVENT_BYTES ? this.eventData.join("\n") : "";
    this.eventName = "";
    this.eventData = [];
    this.eventBytes = 0;
    // Most events are text deltas: parse only those that carry a usage object.
    if (data === "" || data === "[DONE]" || !CARRIES_USAGE.test(data)) return;
    let value: unknown;
    try {
      value = JSON.parse(data);
    } catch {
      return;
    }
    this.take(value, name === "message_delta" || name === "response.completed" || name === "");
  }

  private take(value: unknown, maybeFinal: boolean): void {
    if (!isObject(value)) return;
    switch (this.provider) {
      case "anthropic":
        return this.takeAnthropic(value);
      case "openai":
        return this.takeOpenai(value, maybeFinal);
      case "gemini":
        return this.takeGemini(value);
    }
  }

  private takeAnthropic(v: Record<string, unknown>): void {
    // message_start wraps the message; the JSON answer is the message.
    const message = v.type === "message_start" && isObject(v.message) ? v.message : v;
    if (typeof message.model === "string") this.model = message.model;
    const u = message.usage ?? v.usage;
    if (!isObject(u)) return;
    const prev = this.counts ?? zero();
    // message_delta repeats only what changed (output, sometimes the rest); a field absent keeps its value.
    this.counts = {
      inputTokens: count(u.input_tokens, prev.inputTokens),
      outputTokens: count(u.output_tokens, prev.outputTokens),
      cacheReadTokens: count(u.cache_read_input_tokens, prev.cacheReadTokens),
      cacheWriteTokens: count(u.cache_creation_input_tokens, prev.cacheWriteTokens),
    };
    if (v.type === "message_delta" || v.type === "message") this.sawFinal = true;
    if (v.type === undefined && v.usage !== undefined) this.sawFinal = true;
  }

  private takeOpenai(v: Record<string, unknown>, maybeFinal: boolean): void {
    // Responses API streams wrap the response; its JSON answer is the response.
    const r = isObject(v.response) ? v.response : v;
    if (typeof r.model === "string") this.model = r.model;
    const u = r.usage;
    if (!isObject(u)) return;
    if (typeof u.prompt_tokens === "number" || typeof u.completion_tokens === "number") {
      // Chat Completions: prompt_tokens includes the cached ones.
      const cached = count(isObject(u.prompt_tokens_details) ? u.prompt_tokens_details.cached_tokens : undefined, 0);
      this.counts = {
        inputTokens: Math.max(0, count(u.prompt_tokens, 0) - cached),
        outputTokens: count(u.completion_tokens, 0),
        cacheReadTokens: cached,
        cacheWriteTokens: 0,
      };
    } else {
      // Responses: input_tokens includes the cached ones.
      const cached = count(isObject(u.input_tokens_details) ? u.input_tokens_details.cached_tokens : undefined, 0);
      this.counts = {
        inputTokens: Math.max(0, count(u.input_tokens, 0) - cached),
        outputTokens: count(u.output_tokens, 0),
        cacheReadTokens: cached,
        cacheWriteTokens: 0,
      };
    }
    if (maybeFinal) this.sawFinal = true;
  }

  private takeGemini(v: Record<string, unknown>): void {
    if (typeof v.modelVersion === "string" && v.modelVersion !== "") this.model = v.modelVersion;
    const u = v.usageMetadata;
    if (!isObject(u)) return;
    // Every chunk repeats the totals so far; promptTokenCount includes the cached tokens.
    const cached = count(u.cachedContentTokenCount, 0);
    this.counts = {
      inputTokens: Math.max(0, count(u.promptTokenCount, 0) - cached),
      outputTokens: count(u.candidatesTokenCount, 0) + count(u.thoughtsTokenCount, 0),
      cacheReadTokens: cached,
      cacheWriteTokens: 0,
    };
    this.sawFinal = true;
  }
}

/** `/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse` → `gemini-2.5-pro`. */
export function geminiModelFromPath(target: string): string {
  const m = /\/models\/([^/:?]+)/.exec(target);
  return m ? decodeURIComponent(m[1]!) : "";
}

function zero(): Counts {
  return { inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheWriteTokens: 0 };
}

/** A reported token count: a whole non-negative number, else `fallback`. */
function count(v: unknown, fallback: number): number {
  return typeof v === "number" && Number.isFinite(v) && v >= 0 ? Math.floor(v) : fallback;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
