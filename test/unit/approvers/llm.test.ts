// llm_approver against a FAKE of the Anthropic Messages API and the OpenAI
// Responses API at the HTTP level: a Bun.serve on 127.0.0.1 that checks the
// real request shapes and headers of each API and answers like it (allow,
// deny, fenced, malformed, HTTP 500, slow). No real provider is contacted.
import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import type { LlmApproverConfig } from "../../../app/approvers/config.ts";
import { DEFAULT_COMMON } from "../../../app/approvers/config.ts";
import { ApprovalHub } from "../../../app/approvers/hub.ts";
import { ANTHROPIC_VERSION, LlmApprover, parseModelVerdict, VERDICT_INSTRUCTIONS } from "../../../app/approvers/llm.ts";
import type { ApproverContext } from "../../../app/approvers/types.ts";
import { setLogWriter } from "../../../app/log.ts";
import type { Credential } from "../../../app/policy/types.ts";
import { FakeClock, request, sqlRequest } from "./helpers.ts";

const ANTHROPIC_KEY = "sk-ant-api03-TESTKEY-aaaaaaaaaaaaaaaaaaaaaaaa";
const OPENAI_KEY = "sk-proj-TESTKEY-bbbbbbbbbbbbbbbbbbbbbbbbbbbb";

interface Seen {
  path: string;
  headers: Record<string, string>;
  body: Record<string, unknown>;
}
const seen: Seen[] = [];
/** What the fake model says, by model name; "slow" never answers in time; "500" fails. */
const SAY: Record<string, string> = {
  allow: '{"decision":"allow","reason":"read-only request"}',
  deny: '{"decision": "deny", "reason": "deletes a repository"}',
  fenced: '```json\n{"decision":"allow","reason":"fenced but fine"}\n```',
  prose: "I think this should be allowed.",
  maybe: '{"decision":"maybe","reason":"unsure"}',
  noreason: '{"decision":"allow"}',
  array: '[{"decision":"allow","reason":"x"}]',
};

function problem(status: number, message: string): Response {
  return Response.json({ type: "error", error: { type: "invalid_request_error", message } }, { status });
}

const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(req) {
    const url = new URL(req.url);
    const headers: Record<string, string> = {};
    req.headers.forEach((v, k) => (headers[k] = v));
    let body: Record<string, unknown>;
    try {
      body = (await req.json()) as Record<string, unknown>;
    } catch {
      return problem(400, "body is not JSON");
    }
    seen.push({ path: url.pathname, headers, body });
    if (req.method !== "POST") return problem(405, "POST only");
    if (headers["content-type"] !== "application/json") return problem(415, "content-type");
    const model = String(body.model);
    if (model === "500") return problem(500, `internal error while handling key ${headers["x-api-key"] ?? headers.authorization}`);
    if (model === "slow") {
      await Bun.sleep(1000);
      return problem(504, "too late");
    }
    const text = SAY[model] ?? SAY.allow!;

    if (url.pathname === "/v1/messages") {
      // Anthropic Messages API shape.
      if (headers["x-api-key"] !== ANTHROPIC_KEY) return problem(401, "invalid x-api-key");
      if (headers["anthropic-version"] !== "2023-06-01") return problem(400, "anthropic-version");
      const messages = body.messages as { role: string; content: string }[] | undefined;
      if (typeof body.max_tokens !== "number" || typeof body.system !== "string" || !Array.isArray(messages) || messages[0]?.role !== "user") {
        return problem(400, "bad messages request");
      }
      if (model === "weird") return Response.json({ id: "msg_1", type: "message", content: [] });
      return Response.json({
        id: "msg_01",
        type: "message",
        role: "assistant",
        model,
        content: [{ type: "text", text }],
        stop_reason: "end_turn",
        usage: { input_tokens: 10, output_tokens: 10 },
      });
    }
    if (url.pathname === "/v1/responses") {
      // OpenAI Responses API shape.
      if (headers.authorization !== `Bearer ${OPENAI_KEY}`) return problem(401, "invalid bearer");
      if (typeof body.instructions !== "string" || typeof body.input !== "string") return problem(400, "bad responses request");
      return Response.json({
        id: "resp_01",
        object: "response",
        status: "completed",
        model,
        output: [
          { type: "reasoning", id: "rs_1", summary: [] },
          { type: "message", id: "msg_1", role: "assistant", status: "completed", content: [{ type: "output_text", text, annotations: [] }] },
        ],
      });
    }
    return problem(404, "no such route");
  },
});
afterAll(() => server.stop(true));
const BASE = `http://127.0.0.1:${server.port}`;

const credentials: Record<string, Credential> = {
  "anthropic_manual_key.judge": { type: "anthropic_manual_key", name: "judge", ref: "anthropic_manual_key.judge", settings: {}, source: { file: "t", line: 1 } },
  "openai_api_key.judge": { type: "openai_api_key", name: "oai", ref: "openai_api_key.oai", settings: {}, source: { file: "t", line: 1 } },
};
const env = { CLAWPATROL_SECRET_JUDGE: ANTHROPIC_KEY, CLAWPATROL_SECRET_OAI: OPENAI_KEY };

function approver(over: Partial<LlmApproverConfig> = {}, clock = new FakeClock(), secretEnv: Record<string, string> = env) {
  const config: LlmApproverConfig = {
    type: "llm_approver",
    ...DEFAULT_COMMON,
    model: "allow",
    credential: "anthropic_manual_key.judge",
    api: "anthropic",
    policy: "Allow reads. Deny anything destructive.",
    failMode: "deny",
    cacheTtlMs: 0,
    baseUrl: BASE,
    ...over,
  };
  const cred = credentials[config.api === "anthropic" ? "anthropic_manual_key.judge" : "openai_api_key.judge"];
  return new LlmApprover("llm_approver.judge", config, { now: clock.now, credential: cred, secrets: { env: secretEnv } });
}

const ctx = (): ApproverContext => ({ signal: new AbortController().signal, now: () => 0, message: "PUT api.github.com/x by laptop" });

let logs: string[] = [];
beforeEach(() => {
  seen.length = 0;
  logs = [];
  setLogWriter((line) => logs.push(line));
});
afterAll(() => setLogWriter(undefined));

describe("Anthropic Messages API (fake at the HTTP level)", () => {
  test("request shape: path, headers, model, system = policy + verdict instructions, user = the request", async () => {
    const v = await approver().ask(request(), ctx());
    expect(v).toEqual({ decision: "allow", reason: "read-only request", approver: "llm_approver.judge", operator: "allow" });
    const [s] = seen;
    expect(s!.path).toBe("/v1/messages");
    expect(s!.headers["x-api-key"]).toBe(ANTHROPIC_KEY);
    expect(s!.headers["anthropic-version"]).toBe(ANTHROPIC_VERSION);
    expect(s!.headers.authorization).toBeUndefined();
    expect(s!.body.model).toBe("allow");
    expect(s!.body.system).toBe(`Allow reads. Deny anything destructive.\n\n${VERDICT_INSTRUCTIONS}`);
    expect(VERDICT_INSTRUCTIONS).toContain('{"decision": "allow" or "deny", "reason": "one short sentence"}');
    const messages = s!.body.messages as { role: string; content: string }[];
    expect(messages).toHaveLength(1);
    expect(messages[0]!.content).toContain("PUT https://api.github.com/repos/o/r/pulls/1/merge");
    expect(messages[0]!.content).toContain('{"merge_method":"squash"}');
    expect(messages[0]!.content).toContain("Summary: PUT api.github.com/x by laptop");
    expect(messages[0]!.content).toContain('Rule "merge-needs-approval"');
  });

  test("deny, with the model's reason", async () => {
    expect(await approver({ model: "deny" }).ask(request(), ctx())).toMatchObject({ decision: "deny", reason: "deletes a repository", operator: "deny" });
  });

  test("a ```json fenced answer is accepted", async () => {
    expect(await approver({ model: "fenced" }).ask(request(), ctx())).toMatchObject({ decision: "allow", reason: "fenced but fine" });
  });

  for (const model of ["prose", "maybe", "noreason", "array", "weird"]) {
    test(`a malformed answer (${model}) is a deny`, async () => {
      const v = await approver({ model }).ask(request(), ctx());
      expect(v.decision).toBe("deny");
      expect(v.reason).toStartWith("llm_approver.judge failed (");
    });
  }

  test("HTTP 500 is a deny; the provider's body (which echoes the key) is not repeated", async () => {
    const v = await approver({ model: "500" }).ask(request(), ctx());
    expect(v).toMatchObject({ decision: "deny", reason: "llm_approver.judge failed (anthropic API answered HTTP 500)" });
  });

  test("a slow model is a failure at the HTTP deadline (fail_mode applies)", async () => {
    const started = Date.now();
    const v = await approver({ model: "slow", timeoutMs: 60 }).ask(request(), ctx());
    expect(v.decision).toBe("deny");
    expect(v.reason).toContain("no answer from the anthropic API within");
    expect(Date.now() - started).toBeLessThan(900);
  });

  test("an unreachable API is a failure", async () => {
    const v = await approver({ baseUrl: "http://127.0.0.1:1" }).ask(request(), ctx());
    expect(v.decision).toBe("deny");
    expect(v.reason).toContain("anthropic API request failed");
  });

  test("a missing secret is a failure that names the credential, not a value", async () => {
    const v = await approver({}, new FakeClock(), {}).ask(request(), ctx());
    expect(v.decision).toBe("deny");
    expect(v.reason).toContain("credential anthropic_manual_key.judge: no secret found");
    expect(seen).toHaveLength(0);
  });
});

describe("OpenAI Responses API (fake at the HTTP level)", () => {
  test("request shape: /v1/responses, Bearer key, instructions = policy, input = the request", async () => {
    const v = await approver({ api: "openai", credential: "openai_api_key.oai", model: "deny" }).ask(request(), ctx());
    expect(v).toMatchObject({ decision: "deny", reason: "deletes a repository", operator: "deny" });
    const [s] = seen;
    expect(s!.path).toBe("/v1/responses");
    expect(s!.headers.authorization).toBe(`Bearer ${OPENAI_KEY}`);
    expect(s!.headers["x-api-key"]).toBeUndefined();
    expect(s!.body.instructions).toStartWith("Allow reads. Deny anything destructive.");
    expect(s!.body.input).toContain("PUT https://api.github.com/repos/o/r/pulls/1/merge");
    expect(s!.body.model).toBe("deny");
  });

  test("output_text parts are read from the message item", async () => {
    expect(await approver({ api: "openai", model: "fenced" }).ask(request(), ctx())).toMatchObject({ decision: "allow", reason: "fenced but fine" });
  });

  test("HTTP 500 is a deny", async () => {
    expect((await approver({ api: "openai", model: "500" }).ask(request(), ctx())).decision).toBe("deny");
  });
});

describe("fail_mode", () => {
  const failures: [string, Partial<LlmApproverConfig>][] = [
    ["HTTP 500", { model: "500" }],
    ["a malformed answer", { model: "prose" }],
    ["an unreachable API", { baseUrl: "http://127.0.0.1:1" }],
  ];
  for (const [what, over] of failures) {
    test(`fail_mode = "allow" allows on ${what}, and says so`, async () => {
      const v = await approver({ ...over, failMode: "allow" }).ask(request(), ctx());
      expect(v.decision).toBe("allow");
      expect(v.reason).toEndWith('allowed because fail_mode = "allow"');
    });
    test(`fail_mode = "deny" denies on ${what}`, async () => {
      expect((await approver({ ...over, failMode: "deny" }).ask(request(), ctx())).decision).toBe("deny");
    });
  }

  test("a model's deny stays a deny under fail_mode = allow", async () => {
    expect((await approver({ model: "deny", failMode: "allow" }).ask(request(), ctx())).decision).toBe("deny");
  });
});

describe("verdict cache", () => {
  test("a verdict is reused for the same fingerprint within cache_ttl, not after", async () => {
    const clock = new FakeClock();
    const a = approver({ cacheTtlMs: 60_000 }, clock);
    await a.ask(request(), ctx());
    clock.advance(59_999);
    const cached = await a.ask(request(), ctx());
    expect(cached).toMatchObject({ decision: "allow", reason: "read-only request (cached verdict)" });
    expect(seen).toHaveLength(1);
    await a.ask(request({ fingerprint: "other" }), ctx());
    expect(seen).toHaveLength(2);
    clock.advance(1);
    await a.ask(request(), ctx());
    expect(seen).toHaveLength(3);
  });

  test("cache_ttl = 0 asks every time; failures are never cached", async () => {
    const a = approver();
    await a.ask(request(), ctx());
    await a.ask(request(), ctx());
    expect(seen).toHaveLength(2);
    const b = approver({ model: "500", cacheTtlMs: 60_000, failMode: "allow" });
    await b.ask(request(), ctx());
    await b.ask(request(), ctx());
    expect(seen).toHaveLength(4);
  });
});

describe("through the hub", () => {
  test("an llm verdict decides a chain and names the model as operator", async () => {
    const a = approver({ model: "deny" });
    const hub = new ApprovalHub({ now: Date.now, plugins: () => a, realTimers: false });
    const r = await hub.request(request(), ["llm_approver.judge"], { rule: "r" });
    expect(r).toMatchObject({ decision: "deny", reason: "denied by deny (llm_approver.judge): deletes a repository" });
  });
});

test("no API key appears in any verdict, error or log line", async () => {
  const outputs: string[] = [];
  const cases: Partial<LlmApproverConfig>[] = [
    { model: "allow" },
    { model: "500" },
    { model: "prose" },
    { model: "slow", timeoutMs: 60 },
    { baseUrl: "http://127.0.0.1:1" },
    { baseUrl: "http://127.0.0.1:1", failMode: "allow" },
    { api: "openai", model: "500" },
    { api: "openai", model: "prose" },
    { api: "openai", baseUrl: "http://127.0.0.1:1" },
  ];
  for (const over of cases) {
    const a = approver(over);
    outputs.push(JSON.stringify(await a.ask(request(), ctx())));
    const hub = new ApprovalHub({ now: Date.now, plugins: () => a, realTimers: false, publish: (e) => outputs.push(JSON.stringify(e)) });
    outputs.push(JSON.stringify(await hub.request(request(), ["llm_approver.judge"], { rule: "r" })));
  }
  expect(logs.length).toBeGreaterThan(0); // failures were logged ...
  for (const text of [...outputs, ...logs]) {
    // ... and nothing carries either key or a recognisable part of it.
    expect(text).not.toContain(ANTHROPIC_KEY);
    expect(text).not.toContain(OPENAI_KEY);
    expect(text).not.toContain("TESTKEY");
  }
});

describe("a held SQL statement (fake at the HTTP level)", () => {
  test("the prompt shows the statement, database, user and server, not an HTTP request line", async () => {
    const v = await approver({ model: "deny" }).ask(sqlRequest(), { ...ctx(), message: "SQL on app as agent by laptop" });
    expect(v).toMatchObject({ decision: "deny", reason: "deletes a repository" });
    const content = (seen[0]!.body.messages as { content: string }[])[0]!.content;
    expect(content).toContain('Rule "writes-need-approval" holds this SQL statement (a write to the app database).');
    expect(content).toContain("PostgreSQL server db.internal, database app, connected as agent");
    expect(content).toContain("Statement kind: delete (delete public.users)");
    expect(content).toContain("<<<SQL\nDELETE FROM public.users WHERE id = 7\nSQL>>>");
    expect(content).toContain("Summary: SQL on app as agent by laptop");
    expect(content).not.toContain("https://");
    expect(content).not.toContain("BODY");
    expect(seen[0]!.body.system).toContain("an SQL statement");
  });

  test("a cut statement is marked as truncated (OpenAI shape too)", async () => {
    await approver({ api: "openai", credential: "openai_api_key.oai" }).ask(sqlRequest({ bodyTruncated: true }), ctx());
    expect(String(seen[0]!.body.input)).toContain("Statement (truncated):\n<<<SQL");
  });
});

describe("parseModelVerdict", () => {
  const table: [string, ReturnType<typeof parseModelVerdict>][] = [
    ['{"decision":"allow","reason":"ok"}', { decision: "allow", reason: "ok" }],
    ['  {"decision":"deny","reason":" no "}\n', { decision: "deny", reason: "no" }],
    ['```json\n{"decision":"deny","reason":"x"}\n```', { decision: "deny", reason: "x" }],
    ['```\n{"decision":"allow","reason":"x"}\n```', { decision: "allow", reason: "x" }],
    ['Sure! {"decision":"allow","reason":"x"}', undefined],
    ['{"decision":"ALLOW","reason":"x"}', undefined],
    ['{"decision":"allow","reason":""}', undefined],
    ['{"decision":"allow","reason":5}', undefined],
    ["null", undefined],
    ["", undefined],
  ];
  for (const [text, want] of table) {
    test(JSON.stringify(text), () => expect(parseModelVerdict(text)).toEqual(want));
  }
});
