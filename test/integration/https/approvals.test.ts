// Held requests end to end: a real curl waits while an operator decides
// through the control socket (the dashboard approver's queue), an LLM judge
// (a fake of the Anthropic Messages API at the HTTP level: the real service
// cannot be reached from here) decides on its own, and `remember` lets an
// approval cover identical requests.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { makeTestPki } from "../support/pki.ts";
import { startUpstream, type TestUpstream } from "../support/upstream.ts";
import { curlVia, startTestGateway, tempDir, type TestGateway } from "../support/gateway.ts";
import { controlFetch } from "../../../app/control/client.ts";

const LLM_KEY = "sk-ant-llm-judge-key-0123456789";
let upstream: TestUpstream;
let t: TestGateway;
let judge: ReturnType<typeof Bun.serve>;
const judgeSeen: { path: string; apiKey: string | null; body: { model: string; system: string; messages: { content: string }[] } }[] = [];

beforeAll(async () => {
  const pki = makeTestPki(tempDir("pki"), ["api.test"]);
  upstream = startUpstream(pki);
  judge = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const body = (await req.json()) as (typeof judgeSeen)[number]["body"];
      judgeSeen.push({ path: new URL(req.url).pathname, apiKey: req.headers.get("x-api-key"), body });
      const asked = body.messages.map((m) => m.content).join("\n");
      const verdict = asked.includes("/echo?safe") ? { decision: "allow", reason: "read-only looking" } : { decision: "deny", reason: "looks destructive" };
      return Response.json({
        id: "msg_1",
        type: "message",
        role: "assistant",
        model: body.model,
        content: [{ type: "text", text: JSON.stringify(verdict) }],
        stop_reason: "end_turn",
        usage: { input_tokens: 10, output_tokens: 10 },
      });
    },
  });
  t = await startTestGateway(
    `
defaults {
  verdict = "allow"
  profile = profile.p
}
endpoint "https" "api" {
  hosts = ["api.test"]
  ports = [${upstream.port}]
  ca_cert = "${pki.caCertPath}"
}
credential "anthropic_manual_key" "llm" {}
profile "p" {}
approver "llm_approver" "judge" {
  model = "claude-judge"
  credential = anthropic_manual_key.llm
  base_url = "http://127.0.0.1:${judge.port}"
  timeout = "10s"
  policy = <<-EOT
    Allow reads. Deny anything destructive.
  EOT
}
rule "posts-need-a-human" {
  endpoint = https.api
  condition = "http.method == 'POST' && http.path.startsWith('/echo')"
  approve = [dashboard]
}
rule "puts-remembered" {
  endpoint = https.api
  condition = "http.method == 'PUT'"
  approve = [dashboard]
  remember = "10m"
}
rule "patches-judged" {
  endpoint = https.api
  condition = "http.method == 'PATCH'"
  approve = [llm_approver.judge]
}
`,
    { CLAWPATROL_SECRET_LLM: LLM_KEY },
  );
});

afterAll(async () => {
  await t?.stop();
  upstream?.stop();
  judge?.stop(true);
});

const socket = () => t.gw.policy().gateway.controlSocket;

async function waitForPending(path: string): Promise<{ id: string; request: string; rule: string }> {
  for (let i = 0; i < 200; i++) {
    const res = await controlFetch(socket(), "/api/approvals");
    const { approvals } = (await res.json()) as { approvals: { id: string; request: string; rule: string }[] };
    const hit = approvals.find((a) => a.request.includes(path));
    if (hit) return hit;
    await Bun.sleep(25);
  }
  throw new Error(`no pending approval for ${path}`);
}

async function decide(id: string, what: "approve" | "deny", reason: string) {
  const res = await controlFetch(socket(), `/api/approvals/${id}/${what}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ operator: "cli:tester", reason }),
  });
  expect(res.status).toBe(200);
}

describe("dashboard approver", () => {
  test("the request waits; an approval lets it through to the upstream", async () => {
    const before = upstream.seen.length;
    const pending = curlVia(t, "api.test", upstream.port, "/echo?approve-me", ["-X", "POST", "--data", "hello"]);
    const held = await waitForPending("/echo?approve-me");
    expect(held.rule).toBe("posts-need-a-human");
    expect(upstream.seen.length).toBe(before);
    await decide(held.id, "approve", "looks fine");
    const r = await pending;
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).body).toBe("hello");
    const e = t.events.filter((x) => x.kind === "http").at(-1)!;
    expect(e.verdict).toBe("allow");
    expect(e.approvers).toBe("dashboard");
    expect(e.operator).toBe("cli:tester");
    expect(e.approvalMs).toBeGreaterThan(0);
    // The state database keeps who approved it.
    // The sqlite sink batches its writes: ask until the event is stored.
    let stored: { path?: string; approvers?: string; operator?: string } | undefined;
    for (let i = 0; i < 40 && !stored; i++) {
      await Bun.sleep(100);
      const res = await controlFetch(socket(), "/api/events?limit=20");
      const { events } = (await res.json()) as { events: { path?: string; approvers?: string; operator?: string }[] };
      stored = events.find((x) => x.path === "/echo?approve-me");
    }
    expect(stored).toMatchObject({ approvers: "dashboard", operator: "cli:tester" });
  });

  test("a denial answers 403 with the operator's reason", async () => {
    const before = upstream.seen.length;
    const pending = curlVia(t, "api.test", upstream.port, "/echo?deny-me", ["-X", "POST", "--data", "x"]);
    const held = await waitForPending("/echo?deny-me");
    await decide(held.id, "deny", "not today");
    const r = await pending;
    expect(r.status).toBe(403);
    const body = JSON.parse(r.body);
    expect(body).toMatchObject({ error: "denied by clawpatrol", rule: "posts-need-a-human" });
    // Who denied and why reach the agent.
    expect(body.reason).toContain("cli:tester");
    expect(body.reason).toContain("not today");
    expect(upstream.seen.length).toBe(before);
  });

  test("remember: one approval covers identical requests from the same device", async () => {
    const first = curlVia(t, "api.test", upstream.port, "/echo?remember", ["-X", "PUT", "--data", "same"]);
    const held = await waitForPending("/echo?remember");
    await decide(held.id, "approve", "ok for a while");
    expect((await first).status).toBe(200);
    const again = await curlVia(t, "api.test", upstream.port, "/echo?remember", ["-X", "PUT", "--data", "same"]);
    expect(again.status).toBe(200);
    expect(t.events.filter((x) => x.kind === "http").at(-1)!.remembered).toBe(true);
    // A different body is a different request: held again.
    const other = curlVia(t, "api.test", upstream.port, "/echo?remember", ["-X", "PUT", "--data", "different"]);
    const held2 = await waitForPending("/echo?remember");
    await decide(held2.id, "deny", "no");
    expect((await other).status).toBe(403);
  });

  test("deciding an unknown approval is refused in the API's error shape", async () => {
    const res = await controlFetch(socket(), "/api/approvals/nope/approve", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ operator: "cli:tester" }),
    });
    expect(res.status).toBe(409);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("not_decidable");
  });
});

describe("over HTTP/2", () => {
  test("a held stream waits on its own while another stream flows; the approval lets it through", async () => {
    const common = ["--http2", "-sS", "--max-time", "60", "--cacert", t.caPath, "-x", t.proxyUrl, "--connect-to", `api.test:${upstream.port}:127.0.0.1:${upstream.port}`, "-o", "/dev/null", "-w", "%{http_version} %{http_code} %{url_effective}\\n"];
    const base = `https://api.test:${upstream.port}`;
    const proc = Bun.spawn(
      ["curl", "-Z", ...common, "-X", "POST", "--data", "held", `${base}/echo?h2-held`, "--next", ...common, `${base}/echo?h2-free`],
      { stdout: "pipe", stderr: "pipe" },
    );
    try {
      const held = await waitForPending("/echo?h2-held");
      // The other stream went through while this one is held.
      for (let i = 0; i < 400 && !upstream.seen.some((s) => s.path === "/echo?h2-free"); i++) await Bun.sleep(25);
      expect(upstream.seen.some((s) => s.path === "/echo?h2-free")).toBe(true);
      expect(upstream.seen.some((s) => s.path === "/echo?h2-held")).toBe(false);
      await decide(held.id, "approve", "ok over h2");
      const [out, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
      expect(code).toBe(0);
      expect(out.trim().split("\n").sort()).toEqual([`2 200 ${base}/echo?h2-free`, `2 200 ${base}/echo?h2-held`]);
      expect(upstream.seen.some((s) => s.path === "/echo?h2-held")).toBe(true);
    } finally {
      proc.kill();
    }
  }, 60_000);
});

describe("approval CLI", () => {
  const cli = async (...args: string[]) => {
    const p = Bun.spawn(["./node_modules/.bin/bun", "app/main.ts", ...args, "--config", t.configPath], { stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    return { out, err, code };
  };

  test("list shows the held request; approve and deny decide it", async () => {
    const pending = curlVia(t, "api.test", upstream.port, "/echo?via-cli", ["-X", "POST", "--data", "cli"]);
    const held = await waitForPending("/echo?via-cli");
    const list = await cli("approvals", "list");
    expect(list.code).toBe(0);
    expect(list.out).toMatch(/^ID +DEVICE +RULE +REQUEST/);
    expect(list.out).toContain(held.id);
    expect(list.out).toContain(`POST api.test/echo?via-cli`);
    const ok = await cli("approvals", "approve", held.id, "--reason", "fine by me");
    expect(ok.code).toBe(0);
    expect((await pending).status).toBe(200);
    expect(t.events.filter((x) => x.kind === "http").at(-1)!.operator).toMatch(/^cli:/);

    const again = await cli("approvals", "approve", held.id);
    expect(again.code).toBe(1);
    expect(again.err).toContain("no pending approval");

    const second = curlVia(t, "api.test", upstream.port, "/echo?via-cli-2", ["-X", "POST", "--data", "cli"]);
    const held2 = await waitForPending("/echo?via-cli-2");
    expect((await cli("approvals", "deny", held2.id, "--reason", "nope")).code).toBe(0);
    const r = await second;
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body).reason).toContain("nope");
  });
});

describe("operator API on the public listener", () => {
  test("an approver logs in and approves a held request; a viewer cannot; CSRF is required", async () => {
    const cli = async (...args: string[]) => {
      const p = Bun.spawn(["./node_modules/.bin/bun", "app/main.ts", ...args, "--config", t.configPath], { stdout: "pipe", stderr: "pipe" });
      const [out, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
      expect(code).toBe(0);
      return out.trim();
    };
    const alicePw = await cli("operator", "add", "alice", "--role", "approver");
    const bobPw = await cli("operator", "add", "bob", "--role", "viewer");
    const base = `http://127.0.0.1:${t.gw.publicServer.address.port}`;
    const login = async (name: string, password: string) => {
      const res = await fetch(`${base}/api/auth/login`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ name, password }),
      });
      expect(res.status).toBe(200);
      const cookie = res.headers.get("set-cookie")!.split(";")[0]!;
      const { csrf } = (await res.json()) as { csrf: string };
      // A one-time password's session may only replace it.
      const changed = await fetch(`${base}/api/auth/password`, {
        method: "POST",
        headers: { cookie, "x-csrf-token": csrf, "content-type": "application/json" },
        body: JSON.stringify({ current: password, new: `${password}-own` }),
      });
      expect(changed.status).toBe(200);
      return { cookie, csrf };
    };
    const alice = await login("alice", alicePw);
    const bob = await login("bob", bobPw);

    const pending = curlVia(t, "api.test", upstream.port, "/echo?via-api", ["-X", "POST", "--data", "api"]);
    const held = await waitForPending("/echo?via-api");
    const list = await fetch(`${base}/api/approvals`, { headers: { cookie: bob.cookie } });
    expect(list.status).toBe(200);
    const approve = (who: { cookie: string; csrf: string }, csrf: string | undefined) =>
      fetch(`${base}/api/approvals/${held.id}/approve`, {
        method: "POST",
        headers: { cookie: who.cookie, "content-type": "application/json", ...(csrf ? { "x-csrf-token": csrf } : {}) },
        body: JSON.stringify({ reason: "ok" }),
      });
    expect((await fetch(`${base}/api/approvals`)).status).toBe(401);
    expect((await approve(bob, bob.csrf)).status).toBe(403);
    expect((await approve(alice, undefined)).status).toBe(403);
    expect((await approve(alice, alice.csrf)).status).toBe(200);
    expect((await pending).status).toBe(200);
    expect(t.events.filter((x) => x.kind === "http").at(-1)!.operator).toBe("alice");

    // Metrics: for operators (a scraper uses an API token), not for anyone.
    expect((await fetch(`${base}/metrics`)).status).toBe(401);
    const metrics = await fetch(`${base}/metrics`, { headers: { cookie: bob.cookie } });
    expect(metrics.status).toBe(200);
    const text = await metrics.text();
    expect(text).toMatch(/clawpatrol_requests_total\{kind="http",verdict="allow"\} [1-9]/);
    expect(text).toMatch(/clawpatrol_approval_duration_seconds_count [1-9]/);
    expect(text).toContain("clawpatrol_approvals_pending 0");
  });
});

describe("LLM approver", () => {
  test("the judge allows and denies; it gets the policy and the request, never a secret of ours", async () => {
    const ok = await curlVia(t, "api.test", upstream.port, "/echo?safe", ["-X", "PATCH", "--data", "{}"]);
    expect(ok.status).toBe(200);
    const no = await curlVia(t, "api.test", upstream.port, "/echo?drop-everything", ["-X", "PATCH", "--data", "{}"]);
    expect(no.status).toBe(403);
    expect(JSON.parse(no.body).reason).toContain("looks destructive");
    const asked = judgeSeen.at(-1)!;
    expect(asked.path).toBe("/v1/messages");
    expect(asked.apiKey).toBe(LLM_KEY);
    expect(asked.body.model).toBe("claude-judge");
    expect(asked.body.system).toContain("Allow reads.");
    expect(asked.body.messages[0]!.content).toContain("PATCH api.test");
    const e = t.events.filter((x) => x.kind === "http").at(-1)!;
    expect(e.approvers).toBe("llm_approver.judge");
    expect(e.operator).toBe("claude-judge");
    expect(JSON.stringify(t.events)).not.toContain(LLM_KEY);
  });
});
