// Rate limits and shadow rules end to end: the real gateway, a real TLS
// upstream that counts what reaches it, and curl (one process, 100 parallel
// transfers) as the agent.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import path from "node:path";
import { rmSync } from "node:fs";
import { startGateway, type RunningGateway } from "../../../app/gateway.ts";
import { controlFetch } from "../../../app/control/client.ts";
import { shadowSummary } from "../../../app/store/actions.ts";
import { makeTestPki } from "../support/pki.ts";
import { startUpstream, type TestUpstream } from "../support/upstream.ts";
import { curlVia, startTestGateway, tempDir, type TestGateway } from "../support/gateway.ts";

let upstream: TestUpstream;
let t: TestGateway;

beforeAll(async () => {
  const pki = makeTestPki(tempDir("pki"), ["api.test"]);
  upstream = startUpstream(pki);
  t = await startTestGateway(`
defaults {
  verdict = "allow"
  profile = profile.p
}
endpoint "https" "api" {
  hosts = ["api.test"]
  ports = [${upstream.port}]
  ca_cert = "${pki.caCertPath}"
}
profile "p" {}
rule "watch-deletes" {
  endpoint  = https.api
  priority  = 10
  mode      = "shadow"
  condition = "http.method == 'DELETE'"
  verdict   = "deny"
}
rule "burst" {
  endpoint  = https.api
  condition = "'burst' in http.query"
  verdict   = "allow"
  rate      = "10/s"
}
rule "hourly" {
  endpoint  = https.api
  condition = "'hourly' in http.query"
  verdict   = "allow"
  rate      = "3/h"
}
`);
});

afterAll(async () => {
  await t?.stop();
  upstream?.stop();
});

/** One curl, `n` transfers at once through the proxy; the status of each. */
async function parallelCurl(n: number, query: string): Promise<{ statuses: number[]; headers: string }> {
  const urls = Array.from({ length: n }, (_, i) => `https://api.test:${upstream.port}/echo?${query}=${i}`);
  const headerFile = path.join(t.dir, "parallel-headers");
  const proc = Bun.spawn(
    [
      "curl", "-sS", "--parallel", "--parallel-immediate", "--parallel-max", String(n), "--max-time", "60",
      "--cacert", t.caPath, "-x", t.proxyUrl,
      "--connect-to", `api.test:${upstream.port}:127.0.0.1:${upstream.port}`,
      "-D", headerFile, "-w", "%{http_code}\\n",
      ...urls.flatMap((u) => ["-o", "/dev/null", u]),
    ],
    { stdout: "pipe", stderr: "pipe" },
  );
  const [out] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  const headers = await Bun.file(headerFile).text().catch(() => "");
  rmSync(headerFile, { force: true });
  return { statuses: out.trim().split("\n").map(Number), headers };
}

describe("rate limits", () => {
  test("10/s holds under a burst of 100 concurrent requests: what reached the upstream is what was allowed", async () => {
    const seenBefore = upstream.seen.filter((s) => s.path.includes("burst=")).length;
    const started = performance.now();
    const { statuses, headers } = await parallelCurl(100, "burst");
    const elapsedS = (performance.now() - started) / 1000;
    expect(statuses).toHaveLength(100);
    const allowed = statuses.filter((s) => s === 200).length;
    const limited = statuses.filter((s) => s === 429).length;
    expect(allowed + limited).toBe(100);
    const reached = upstream.seen.filter((s) => s.path.includes("burst=")).length - seenBefore;
    expect(reached).toBe(allowed);
    // The bucket: 10 at once, then 10 more per second at most (however slow the machine made the burst).
    expect(allowed).toBeGreaterThanOrEqual(10);
    expect(allowed).toBeLessThanOrEqual(10 + Math.ceil(elapsedS * 10));
    if (limited > 0) expect(headers).toMatch(/retry-after: \d+/i);
    const events = t.events.filter((e) => e.path?.includes("burst="));
    expect(events.filter((e) => e.status === 429 && e.verdict === "deny" && e.rule === "burst")).toHaveLength(limited);
  });

  test("a 429 carries Retry-After and names the rule; the count survives a restart within the window", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await curlVia(t, "api.test", upstream.port, `/echo?hourly=${i}`)).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
    const over = await curlVia(t, "api.test", upstream.port, "/echo?hourly=again");
    expect(over.status).toBe(429);
    expect(over.headers).toMatch(/retry-after: \d+/i);
    expect(JSON.parse(over.body)).toMatchObject({ error: "denied by clawpatrol", rule: "hourly" });

    // Restart on the same state directory: the bucket is still empty.
    await t.gw.close();
    const gw: RunningGateway = await startGateway({ configPath: t.configPath, env: {}, stderrEvents: false });
    t.gw = gw; // t.stop() closes this one
    const proxy = gw.proxies[0]!;
    t.proxyUrl = `http://${proxy.address.host}:${proxy.address.port}`;
    const after = await curlVia(t, "api.test", upstream.port, "/echo?hourly=after-restart");
    expect(after.status).toBe(429);
    // Another rule's bucket is its own.
    expect((await curlVia(t, "api.test", upstream.port, "/echo?other")).status).toBe(200);
  });
});

describe("shadow rules", () => {
  test("a shadow deny lets the request through and records what it would have done", async () => {
    const seenBefore = upstream.seen.length;
    const r = await curlVia(t, "api.test", upstream.port, "/echo?shadow", ["-X", "DELETE"]);
    expect(r.status).toBe(200);
    expect(upstream.seen.length).toBe(seenBefore + 1);
    // Stored beside the real verdict (the sqlite sink batches: ask until it is there).
    type Stored = { path?: string; verdict?: string; shadow?: { rule: string; would: string }[] };
    let stored: Stored | undefined;
    for (let i = 0; i < 100 && stored === undefined; i++) {
      const res = await controlFetch(t.gw.policy().gateway.controlSocket, "/api/events?limit=50");
      const { events } = (await res.json()) as { events: Stored[] };
      stored = events.find((x) => x.path === "/echo?shadow");
      if (stored === undefined) await Bun.sleep(50);
    }
    expect(stored).toMatchObject({ verdict: "allow", shadow: [{ rule: "watch-deletes", would: "deny" }] });

    // The day's summary per shadow rule (GET /api/rules/shadow, the dashboard's Analytics panel), with the example.
    const summary = shadowSummary(t.gw.db, Date.now() - 3_600_000);
    expect(summary).toHaveLength(1);
    expect(summary[0]!).toMatchObject({ rule: "watch-deletes", would: { deny: 1 } });
    expect(summary[0]!.examples[0]).toMatchObject({ would: "deny", verdict: "allow" });
    expect(summary[0]!.examples[0]!.what).toContain("/echo?shadow");
  });
});
