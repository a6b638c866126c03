// A config reloaded 20 times while agents keep sending: every request gets
// a verdict from one of the two configs (never none, never a mix of
// neither), and no agent's keep-alive connection is dropped by a reload.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { makeTestPki, type TestPki } from "../support/pki.ts";
import { startUpstream, type TestUpstream } from "../support/upstream.ts";
import { startTestGateway, tempDir, type TestGateway } from "../support/gateway.ts";
import { KeepAliveClient } from "../support/keepalive-client.ts";

const SECRET = "sk-live-reload-0123456789abcdef";
const PLACEHOLDER = "clawpatrol-placeholder-reload";
const CLIENTS = 8;
const RELOADS = 20;

let pki: TestPki;
let upstream: TestUpstream;
let t: TestGateway;

/** The two configs differ only in their rules' names (and so in the verdicts' names). */
const rules = (gen: "a" | "b") => `
defaults {
  verdict = "deny"
  unknown_host = "deny"
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
rule "deny-${gen}" {
  endpoint = https.api
  condition = "http.method == 'DELETE'"
  verdict = "deny"
  reason = "config ${gen}"
}
rule "allow-${gen}" {
  endpoint = https.api
  condition = "http.method == 'GET'"
  verdict = "allow"
}
`;

beforeAll(async () => {
  pki = makeTestPki(tempDir("pki"), ["api.test"]);
  upstream = startUpstream(pki);
  t = await startTestGateway(rules("a"), { CLAWPATROL_SECRET_API: SECRET });
});

afterAll(async () => {
  await t?.stop();
  upstream?.stop();
});

test(`${RELOADS} reloads during traffic: every request judged by one of the two configs, no connection dropped`, async () => {
  const proxy = t.gw.proxies[0]!.address;
  const caPem = readFileSync(t.caPath, "utf8");
  const clients = await Promise.all(
    Array.from({ length: CLIENTS }, () => KeepAliveClient.open({ proxy, host: "api.test", port: upstream.port, caPem })),
  );
  const header = { Authorization: `Bearer ${PLACEHOLDER}` };
  const answers: { method: string; status: number; body: string }[] = [];
  const metrics = async () => (await fetch("http://localhost/metrics", { unix: t.gw.policy().gateway.controlSocket } as RequestInit)).text();
  // Once each connection carried a request, its handshake is over and holds no slot.
  for (const c of clients) {
    const r = await c.request("GET", "/echo", header);
    answers.push({ method: "GET", status: r.status, body: r.body });
  }
  expect(await metrics()).toMatch(/^clawpatrol_tls_handshakes_active 0$/m);
  let running = true;
  const load = clients.map(async (c, i) => {
    for (let n = 0; running; n++) {
      const method = (n + i) % 2 === 0 ? "GET" : "DELETE";
      const r = await c.request(method, "/echo", header);
      answers.push({ method, status: r.status, body: r.body });
    }
  });
  // A load loop that throws (a dropped connection) ends the test at once.
  const failed = Promise.race(load).then(() => undefined);

  const header0 = readFileSync(t.configPath, "utf8").split("\ndefaults {")[0]!;
  const atLeast = async (n: number) => {
    while (answers.length < n) await Promise.race([Bun.sleep(5), failed]);
  };
  for (let i = 1; i <= RELOADS; i++) {
    // Traffic between reloads: each reload lands while requests are in flight.
    await atLeast(answers.length + CLIENTS);
    writeFileSync(t.configPath, header0 + rules(i % 2 === 1 ? "b" : "a"));
    expect(await t.gw.reload()).toEqual([]);
  }
  await atLeast(answers.length + CLIENTS);
  running = false;
  await Promise.all(load);
  for (const c of clients) c.close();

  // Every answer came from a rule of one of the two configs.
  for (const a of answers) {
    if (a.method === "GET") expect(a.status).toBe(200);
    else {
      expect(a.status).toBe(403);
      expect(JSON.parse(a.body).rule).toMatch(/^deny-[ab]$/);
    }
  }
  const byRule = new Map<string, number>();
  const waitEvents = async () => {
    while (t.events.filter((e) => e.kind === "http").length < answers.length) await Bun.sleep(5);
  };
  await waitEvents();
  const http = t.events.filter((e) => e.kind === "http");
  expect(http.length).toBe(answers.length);
  for (const e of http) {
    byRule.set(e.rule ?? "(none)", (byRule.get(e.rule ?? "(none)") ?? 0) + 1);
    expect(e.rule).toMatch(/^(allow|deny)-[ab]$/);
    expect(e.verdict).toBe(e.method === "GET" ? "allow" : "deny");
  }
  // Both configs judged traffic: the reloads happened while it flowed.
  for (const rule of ["allow-a", "allow-b", "deny-a", "deny-b"]) expect(byRule.get(rule) ?? 0).toBeGreaterThan(0);
  console.log(`reload under load: ${answers.length} requests over ${CLIENTS} keep-alive connections, ${RELOADS} reloads; by rule ${JSON.stringify(Object.fromEntries(byRule))}`);
  // The gateway held no slot or queue after the connections closed.
  const after = await metrics();
  expect(after).toContain("clawpatrol_heap_used_bytes");
  expect(after).toMatch(/^clawpatrol_tls_handshakes_waiting 0$/m);
}, 120_000);
