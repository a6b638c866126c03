// LLM spend budgets end to end: the real gateway and curl, against a fake
// Anthropic and OpenAI API (neither can be reached here), faked at the HTTP
// level with the real response shapes, JSON and SSE (test/unit/spend/shapes.ts).
// The fake counts what reaches it, and checks it got the real key.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startGateway, type RunningGateway } from "../../../app/gateway.ts";
import { controlFetch } from "../../../app/control/client.ts";
import { spendByDevice } from "../../../app/store/spend.ts";
import { queryActions } from "../../../app/store/actions.ts";
import { utcDay } from "../../../app/spend/ledger.ts";
import { makeTestPki } from "../support/pki.ts";
import { curlVia, startTestGateway, tempDir, type TestGateway } from "../support/gateway.ts";
import { ANTHROPIC_JSON, anthropicSse, OPENAI_CHAT_JSON, openaiChatSse } from "../../unit/spend/shapes.ts";

const ANTHROPIC_KEY = "sk-ant-api03-real-key-for-spend-test-0123456789";
const OPENAI_KEY = "sk-proj-real-openai-key-for-spend-test-abcdef";

let t: TestGateway;
let server: ReturnType<typeof Bun.serve>;
let pki: ReturnType<typeof makeTestPki>;
const reached: { host: string; path: string; keyOk: boolean }[] = [];

beforeAll(async () => {
  pki = makeTestPki(tempDir("pki"), ["anthropic.test", "openai.test"]);
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: pki.certPem, key: pki.keyPem },
    async fetch(req) {
      const url = new URL(req.url);
      const host = (req.headers.get("host") ?? "").split(":")[0]!;
      const body = (await req.json().catch(() => ({}))) as { stream?: boolean };
      if (host === "anthropic.test") {
        reached.push({ host, path: url.pathname, keyOk: req.headers.get("x-api-key") === ANTHROPIC_KEY });
        if (body.stream) {
          // Sent in small pieces, as a real stream arrives.
          const text = anthropicSse(1000);
          const stream = new ReadableStream({
            async start(c) {
              for (let i = 0; i < text.length; i += 97) {
                c.enqueue(new TextEncoder().encode(text.slice(i, i + 97)));
                await Bun.sleep(0);
              }
              c.close();
            },
          });
          return new Response(stream, { headers: { "content-type": "text/event-stream; charset=utf-8" } });
        }
        return new Response(ANTHROPIC_JSON, { headers: { "content-type": "application/json" } });
      }
      reached.push({ host, path: url.pathname, keyOk: req.headers.get("authorization") === `Bearer ${OPENAI_KEY}` });
      if (body.stream) return new Response(openaiChatSse(), { headers: { "content-type": "text/event-stream" } });
      return new Response(OPENAI_CHAT_JSON, { headers: { "content-type": "application/json" } });
    },
  });
  t = await startTestGateway(
    `
defaults {
  verdict = "allow"
  profile = profile.agents
}
endpoint "https" "anthropic" {
  hosts      = ["anthropic.test"]
  ports      = [${server.port}]
  ca_cert    = "${pki.caCertPath}"
  credential = anthropic_manual_key.claude
}
endpoint "https" "openai" {
  hosts      = ["openai.test"]
  ports      = [${server.port}]
  ca_cert    = "${pki.caCertPath}"
  credential = openai_api_key.oa
}
credential "anthropic_manual_key" "claude" {}
credential "openai_api_key" "oa" {}
price "claude-sonnet-4*" {
  input_per_mtok       = 3
  output_per_mtok      = 15
  cache_read_per_mtok  = 0.3
  cache_write_per_mtok = 3.75
}
price "gpt-4o*" {
  input_per_mtok      = 2.5
  output_per_mtok     = 10
  cache_read_per_mtok = 1.25
}
profile "agents" {
  credentials = [anthropic_manual_key.claude, openai_api_key.oa]
  budget { daily_usd = 0.03 }
}
`,
    { CLAWPATROL_SECRET_CLAUDE: ANTHROPIC_KEY, CLAWPATROL_SECRET_OA: OPENAI_KEY },
  );
});

afterAll(async () => {
  await t?.stop();
  server?.stop(true);
});

const post = (host: string, path: string, stream: boolean) =>
  curlVia(t, host, server.port!, path, ["-X", "POST", "-H", "content-type: application/json", "--data", JSON.stringify({ model: "x", stream })]);

// Costs by the prices above:
//   anthropic JSON: (1200×3 + 300×15 + 2000×0.3 + 100×3.75)/1e6 = $0.009075
//   anthropic SSE:  (472×3 + 1000×15)/1e6                       = $0.016416
//   openai JSON:    (93×2.5 + 46×10 + 1024×1.25)/1e6            = $0.0019725
//   openai SSE (gpt-4o-mini, matched by gpt-4o*): (9×2.5 + 12×10)/1e6 = $0.0001425
const COSTS = [0.009075, 0.016416, 0.0019725, 0.0001425];

describe("LLM spend", () => {
  test("usage read from JSON and SSE answers is priced, recorded on the event, in the day's spend and in /metrics; the agent gets the answer whole", async () => {
    const answers = [
      await post("anthropic.test", "/v1/messages", false),
      await post("anthropic.test", "/v1/messages", true),
      await post("openai.test", "/v1/chat/completions", false),
      await post("openai.test", "/v1/chat/completions", true),
    ];
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200]);
    expect(answers[0]!.body).toBe(ANTHROPIC_JSON);
    expect(answers[1]!.body).toBe(anthropicSse(1000));
    expect(reached.every((r) => r.keyOk)).toBe(true);

    const usages = t.events.filter((e) => e.usage).map((e) => e.usage!);
    expect(usages.map((u) => u.model)).toEqual(["claude-sonnet-4-20250514", "claude-sonnet-4-20250514", "gpt-4o-2024-08-06", "gpt-4o-mini"]);
    usages.forEach((u, i) => expect(u.usd!).toBeCloseTo(COSTS[i]!, 10));
    expect(usages.every((u) => u.complete && !u.unpriced)).toBe(true);

    const total = COSTS.reduce((a, b) => a + b, 0);
    const metrics = await (await controlFetch(t.gw.policy().gateway.controlSocket, "/metrics")).text();
    const line = metrics.split("\n").find((l) => l.startsWith('clawpatrol_llm_spend_usd{device="anonymous"}'));
    expect(Number(line?.split(" ")[1] ?? "NaN")).toBeCloseTo(total, 10);

    // The day's spend and the events' usage are in the state database (what the dashboard reads).
    const [row] = spendByDevice(t.gw.db, utcDay(Date.now()));
    expect(row).toMatchObject({ device: "anonymous", requests: 4 });
    expect(row!.usd).toBeCloseTo(total, 10);
  });

  test("the budget trips at the request after the spend reached it: 429 with Retry-After, nothing reaches the API; it holds after a restart", async () => {
    // $0.0276 spent of $0.03: one more call is allowed (and crosses the line), the next is stopped.
    const before = reached.length;
    const crossing = await post("anthropic.test", "/v1/messages", false);
    expect(crossing.status).toBe(200);
    const stopped = await post("openai.test", "/v1/chat/completions", false);
    expect(stopped.status).toBe(429);
    expect(stopped.headers).toMatch(/retry-after: \d+/i);
    expect(JSON.parse(stopped.body)).toMatchObject({ error: "denied by clawpatrol" });
    expect(stopped.body).toContain("daily budget of $0.03");
    expect(reached.length - before).toBe(1);
    const event = t.events.at(-1)!;
    expect(event).toMatchObject({ status: 429, verdict: "deny" });

    await t.gw.close();
    const gw: RunningGateway = await startGateway({ configPath: t.configPath, env: { CLAWPATROL_SECRET_CLAUDE: ANTHROPIC_KEY, CLAWPATROL_SECRET_OA: OPENAI_KEY }, stderrEvents: false });
    t.gw = gw;
    const proxy = gw.proxies[0]!;
    t.proxyUrl = `http://${proxy.address.host}:${proxy.address.port}`;
    const after = await post("anthropic.test", "/v1/messages", true);
    expect(after.status).toBe(429);
    expect(reached.length - before).toBe(1);
  });

  test("recorded events keep the usage; the secret is in none of them", async () => {
    // The first gateway flushed its events when it closed.
    const stored = queryActions(t.gw.db, { limit: 100 });
    const withUsage = stored.filter((e) => e.usage);
    expect(withUsage.length).toBeGreaterThanOrEqual(5);
    expect(withUsage.every((e) => typeof e.usage!.usd === "number")).toBe(true);
    const text = JSON.stringify(stored);
    expect(text).not.toContain(ANTHROPIC_KEY);
    expect(text).not.toContain(OPENAI_KEY);
  });
});

describe("over_budget = [dashboard]", () => {
  test("a request past the budget is held for a person (the hold names the budget); approved, it reaches the API with the real key", async () => {
    const g = await startTestGateway(
      `
defaults {
  verdict = "allow"
  profile = profile.agents
}
endpoint "https" "anthropic" {
  hosts      = ["anthropic.test"]
  ports      = [${server.port}]
  ca_cert    = "${pki.caCertPath}"
  credential = anthropic_manual_key.claude
}
credential "anthropic_manual_key" "claude" {
  budget {
    daily_usd   = 0.001
    over_budget = [dashboard]
  }
}
price "*" {
  input_per_mtok  = 3
  output_per_mtok = 15
}
profile "agents" { credentials = [anthropic_manual_key.claude] }
`,
      { CLAWPATROL_SECRET_CLAUDE: ANTHROPIC_KEY },
    );
    try {
      const via = (path: string) =>
        curlVia(g, "anthropic.test", server.port!, path, ["-X", "POST", "-H", "content-type: application/json", "--data", "{}"]);
      expect((await via("/v1/messages?first")).status).toBe(200);
      const before = reached.length;
      const pending = via("/v1/messages?second");
      const socket = g.gw.policy().gateway.controlSocket;
      let held: { id: string; rule: string; request: string } | undefined;
      while (!held) {
        const { approvals } = (await (await controlFetch(socket, "/api/approvals")).json()) as { approvals: { id: string; rule: string; request: string }[] };
        held = approvals.find((a) => a.request.includes("second"));
        if (!held) await Bun.sleep(25);
      }
      expect(held.rule).toBe("budget of anthropic_manual_key.claude");
      expect(reached.length).toBe(before);
      const res = await controlFetch(socket, `/api/approvals/${held.id}/approve`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ operator: "cli:tester", reason: "one more" }),
      });
      expect(res.status).toBe(200);
      expect((await pending).status).toBe(200);
      expect(reached.at(-1)).toMatchObject({ host: "anthropic.test", keyOk: true });
    } finally {
      await g.stop();
    }
  });
});
