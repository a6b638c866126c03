// The audit export against a real ClickHouse 18.16 (Debian's clickhouse-server):
// events of requests through the gateway arrive as rows; secrets in them are
// redacted; while the server is down (killed) the gateway keeps serving, the
// rows wait in the spool, and once it is back every one of them arrives.
// Every wait is for a condition, never a fixed time.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { startGateway } from "../../../app/gateway.ts";
import { controlFetch } from "../../../app/control/client.ts";
import { CA_CERT_FILE } from "../../../app/tls/ca.ts";
import type { GatewayEvent } from "../../../app/events/types.ts";
import { makeTestPki } from "../support/pki.ts";
import { startUpstream, type TestUpstream } from "../support/upstream.ts";
import { curlVia, tempDir, type TestGateway } from "../support/gateway.ts";
import { startClickHouse, type TestClickHouse } from "../support/clickhouse.ts";
import { ClickHouseTarget } from "../../../app/events/export/clickhouse.ts";

const available = existsSync("/usr/sbin/clickhouse-server");
if (!available && process.env.CI === "true") throw new Error("clickhouse-server is not installed (test/deps.sh installs it)");

const API_SECRET = "sk-live-export-5b1e9d7c3a2f4e60";
const CH_PASSWORD = "ch-audit-pw-8c2e4a6f0d1b3957";
const GATEWAY_NAME = "gw-export-test";

/** The README's query: one device's denials across all gateways (deduplicated by FINAL). */
const DENIALS_OF_ONE_DEVICE = (device: string) => `
SELECT ts, gateway, endpoint, summary, rule, reason
FROM clawpatrol.events FINAL
WHERE device = '${device}' AND verdict = 'deny'
ORDER BY ts DESC, ts_ms DESC
LIMIT 100
FORMAT TSV`;

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let ok = false;
    try {
      ok = await cond();
    } catch {
      ok = false;
    }
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(100);
  }
}

/** A gateway exporting to `url`, with one HTTPS endpoint (api.test) on `upstream`. */
async function startExportGateway(url: string, upstream: TestUpstream, upstreamCaPath: string, gatewayExtra = ""): Promise<TestGateway> {
  const dir = tempDir("gw");
  const configPath = path.join(dir, "gateway.hcl");
  writeFileSync(
    configPath,
    `schema_version = 1
gateway {
  state_dir = "state"
  dashboard_listen = "127.0.0.1:0"
  proxy { listen = "127.0.0.1:0" }
${gatewayExtra}
  events {
    clickhouse {
      url = "${url}"
      credential = clickhouse_password.audit
      gateway_name = "${GATEWAY_NAME}"
      flush_interval = "200ms"
    }
  }
}
defaults {
  verdict = "allow"
  profile = profile.agents
}
endpoint "https" "api" {
  hosts = ["api.test"]
  ports = [${upstream.port}]
  ca_cert = "${upstreamCaPath}"
  credential = bearer_token.api
}
credential "bearer_token" "api" {}
credential "clickhouse_password" "audit" {
  user = "auditor"
}
profile "agents" {
  credentials = [bearer_token.api]
}
rule "no-admin" {
  endpoint = https.api
  condition = "http.path.startsWith('/admin')"
  verdict = "deny"
  reason = "admin is off limits"
}
`,
  );
  const gw = await startGateway({
    configPath,
    env: { CLAWPATROL_SECRET_API: API_SECRET, CLAWPATROL_SECRET_AUDIT: CH_PASSWORD },
    stderrEvents: false,
  });
  const events: GatewayEvent[] = [];
  gw.bus.subscribe((e) => events.push(e));
  const proxy = gw.proxies[0]!;
  return {
    gw,
    dir,
    configPath,
    caPath: path.join(gw.policy().gateway.stateDir, CA_CERT_FILE),
    proxyUrl: `http://${proxy.address.host}:${proxy.address.port}`,
    events,
    async stop() {
      await gw.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A query over HTTP as `default` (passwordless from 127.0.0.1), not ch.sql(): that spawns
 * clickhouse-client synchronously and would stall this process, which is also the gateway under test.
 */
async function chQuery(ch: TestClickHouse, query: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${ch.httpPort}/?user=default`, { method: "POST", body: query });
  const text = await res.text();
  if (!res.ok) throw new Error(`ClickHouse ${res.status}: ${text}`);
  return text;
}

describe.skipIf(!available)("audit export to ClickHouse 18.16", () => {
  let ch: TestClickHouse;
  let upstream: TestUpstream;
  let t: TestGateway;
  let pkiDir = "";

  beforeAll(async () => {
    ch = await startClickHouse({ user: "auditor", password: CH_PASSWORD });
    pkiDir = tempDir("pki");
    const pki = makeTestPki(pkiDir, ["api.test"]);
    upstream = startUpstream(pki);
    t = await startExportGateway(`http://127.0.0.1:${ch.httpPort}`, upstream, pki.caCertPath);
  }, 120_000);

  afterAll(async () => {
    await t?.stop();
    upstream?.stop();
    await ch?.stop();
    if (pkiDir) rmSync(pkiDir, { recursive: true, force: true });
  }, 60_000);

  const sql = (query: string) => chQuery(ch, query);
  // Distinct events, not rows: delivery is at least once (an insert that timed out client-side may have landed, and is sent again).
  const rowCount = async () => Number((await sql(`SELECT uniqExact(event_id) FROM clawpatrol.events WHERE gateway = '${GATEWAY_NAME}'`)).trim());
  const uniqueIds = async () => Number((await sql(`SELECT uniqExact(event_id) FROM clawpatrol.events WHERE gateway = '${GATEWAY_NAME}'`)).trim());
  const metric = async (name: string): Promise<number> => {
    const text = await (await controlFetch(t.gw.policy().gateway.controlSocket, "/metrics")).text();
    const line = text.split("\n").find((l) => l.startsWith(`${name} `));
    return line === undefined ? NaN : Number(line.slice(name.length + 1));
  };
  const get = (p: string) => curlVia(t, "api.test", upstream.port, p, ["-H", "Authorization: Bearer placeholder"]);

  test("events arrive as rows (the database and table are created on first use); the README's query finds a device's denials", async () => {
    expect((await get("/echo?n=1")).status).toBe(200);
    expect((await get("/admin/users")).status).toBe(403);
    expect((await get("/echo?n=2")).status).toBe(200);
    await until("three http events", () => t.events.filter((e) => e.kind === "http").length >= 3);
    await until("every event as a row", async () => (await rowCount()) === t.events.length);

    const rows = (
      await sql(`SELECT device, family, verdict, rule, method, path, status, endpoint, credential FROM clawpatrol.events WHERE gateway = '${GATEWAY_NAME}' AND kind = 'http' ORDER BY ts_ms FORMAT TSV`)
    )
      .trim()
      .split("\n")
      .map((l) => l.split("\t"));
    expect(rows).toContainEqual(["anonymous", "http", "allow", "", "GET", "/echo?n=1", "200", "https.api", "bearer_token.api"]);
    expect(rows).toContainEqual(["anonymous", "http", "deny", "no-admin", "GET", "/admin/users", "403", "https.api", ""]);

    const denials = (await sql(DENIALS_OF_ONE_DEVICE("anonymous"))).trim().split("\n");
    expect(denials.length).toBe(1);
    const [, gateway, endpoint, summary, rule, reason] = denials[0]!.split("\t");
    expect({ gateway, endpoint, summary, rule, reason }).toEqual({ gateway: GATEWAY_NAME, endpoint: "https.api", summary: "GET api.test/admin/users", rule: "no-admin", reason: "admin is off limits" });
    expect(await metric("clawpatrol_export_up")).toBe(1);
  }, 90_000);

  test("secrets in events (the injected token, the export's own ClickHouse password) are redacted in the exported rows", async () => {
    expect((await get(`/echo?leak=${API_SECRET}`)).status).toBe(200);
    expect((await get(`/echo?chpw=${CH_PASSWORD}`)).status).toBe(200);
    await until("every event as a row", async () => (await rowCount()) === t.events.length);
    const dump = await sql(`SELECT * FROM clawpatrol.events WHERE gateway = '${GATEWAY_NAME}' FORMAT TSV`);
    expect(dump).toContain("/echo?leak=[REDACTED]");
    expect(dump).toContain("/echo?chpw=[REDACTED]");
    for (const secret of [API_SECRET, CH_PASSWORD, Buffer.from(`auditor:${CH_PASSWORD}`).toString("base64")]) expect(dump).not.toContain(secret);
  }, 90_000);

  test("ClickHouse down: the gateway keeps serving, rows wait in the spool; back up, none is lost", async () => {
    await until("every event as a row", async () => (await rowCount()) === t.events.length);
    const before = t.events.length;
    const failuresBefore = await metric("clawpatrol_export_failures_total");
    await ch.pause();

    // Requests through the gateway are answered while the export's target is gone.
    for (let i = 0; i < 8; i++) expect((await get(`/echo?outage=${i}`)).status).toBe(200);
    expect((await get("/admin/during-outage")).status).toBe(403);
    await until("the outage events", () => t.events.filter((e) => e.path?.includes("outage")).length === 9);
    await until("a failed insert", async () => (await metric("clawpatrol_export_failures_total")) > failuresBefore);
    await until("the spool holding the rows", async () => (await metric("clawpatrol_export_spool_bytes")) > 0);
    expect(await metric("clawpatrol_export_up")).toBe(0);
    expect(t.events.length).toBeGreaterThan(before);

    await ch.resume();
    await until("every event as a row after the outage", async () => (await uniqueIds()) === t.events.length, 90_000);
    await until("an empty spool", async () => (await metric("clawpatrol_export_spool_bytes")) === 0);
    expect(await metric("clawpatrol_export_up")).toBe(1);
    expect(await metric("clawpatrol_export_dropped_total")).toBe(0);
    // At least once: a retried batch may be stored twice, FINAL (or LIMIT 1 BY event_id) counts it once.
    expect(Number((await sql(`SELECT count() FROM clawpatrol.events FINAL WHERE gateway = '${GATEWAY_NAME}'`)).trim())).toBe(t.events.length);
    const outage = (await sql(`SELECT path FROM clawpatrol.events FINAL WHERE gateway = '${GATEWAY_NAME}' AND path LIKE '%outage%' ORDER BY ts_ms FORMAT TSV`)).trim().split("\n");
    expect(outage.sort()).toEqual([...Array.from({ length: 8 }, (_, i) => `/echo?outage=${i}`), "/admin/during-outage"].sort());
  }, 180_000);
});

describe.skipIf(!available)("audit export to ClickHouse 18.16 over https", () => {
  let ch: TestClickHouse;
  let upstream: TestUpstream;
  let t: TestGateway;
  let pkiDir = "";

  beforeAll(async () => {
    ch = await startClickHouse({ user: "auditor", password: CH_PASSWORD, tls: true });
    pkiDir = tempDir("pki");
    const pki = makeTestPki(pkiDir, ["api.test"]);
    upstream = startUpstream(pki);
    // The server's CA is trusted through the gateway's upstream_ca_file, as for any upstream.
    t = await startExportGateway(`https://127.0.0.1:${ch.httpsPort}`, upstream, pki.caCertPath, `  upstream_ca_file = "${ch.caCertPath}"`);
  }, 120_000);

  afterAll(async () => {
    await t?.stop();
    upstream?.stop();
    await ch?.stop();
    if (pkiDir) rmSync(pkiDir, { recursive: true, force: true });
  }, 60_000);

  test("rows arrive over https, the server's certificate verified against the gateway's trusted roots", async () => {
    const res = await curlVia(t, "api.test", upstream.port, "/echo?over=https", ["-H", "Authorization: Bearer placeholder"]);
    expect(res.status).toBe(200);
    await until("the row", async () => (await chQuery(ch, "SELECT path FROM clawpatrol.events FORMAT TSV")).includes("/echo?over=https"), 60_000);
  }, 90_000);

  test("the target refuses a server whose certificate no trusted root signed", async () => {
    const settings = { ...t.gw.policy().gateway.eventsClickhouse! };
    const auth = () => ({ ok: true as const, username: "auditor", password: CH_PASSWORD });
    const untrusted = new ClickHouseTarget(settings, { auth, caRoots: () => [] });
    const trusted = new ClickHouseTarget(settings, { auth, caRoots: () => [ch.caCertPem!] });
    try {
      await expect(untrusted.prepare(new AbortController().signal)).rejects.toThrow(/certificate|self.signed|issuer/i);
      await trusted.prepare(new AbortController().signal);
    } finally {
      await untrusted.close();
      await trusted.close();
    }
  }, 60_000);
});
