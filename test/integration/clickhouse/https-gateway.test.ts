// ClickHouse's HTTPS interface through the gateway, with real parts:
//
//   @clickhouse/client (placeholder password; the gateway's CA trusted)
//     -> a local port forwarded through the gateway's SOCKS5 listener as a device
//     -> the gateway: TLS interception, the clickhouse_https endpoint (the
//        http family plus sql facets read from the query and the body)
//     -> clickhouse-server 18.16's HTTPS port (its own CA, given as ca_cert)
//
// Reads pass; DROP and INSERT are refused with 403 in ClickHouse's error text
// (Code: 497), which the client reports as a server error; the credential
// goes in whichever slot the client used; the secret reaches no event or reply.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { createClient, type ClickHouseClient } from "@clickhouse/client";
import { startClickHouse, type TestClickHouse } from "../support/clickhouse.ts";
import { startTestGateway, type TestGateway } from "../support/gateway.ts";
import { socksForward, type SocksForward } from "../support/socks-forward.ts";
import { waitFor } from "../support/netns.ts";

const PLACEHOLDER = "clawpatrol-placeholder-ch";
const SECRET = "real-Ch-https-secret-8b1f";

describe("@clickhouse/client over HTTPS through the gateway", () => {
  let ch: TestClickHouse;
  let t: TestGateway;
  let fwd: SocksForward;
  let client: ClickHouseClient;
  let ca: Buffer;

  beforeAll(async () => {
    ch = await startClickHouse({ user: "analyst", password: SECRET, tls: true });
    ch.sql(`
      CREATE DATABASE analytics;
      CREATE TABLE analytics.events (id UInt32, name String) ENGINE = MergeTree() ORDER BY id;
      INSERT INTO analytics.events VALUES (1, 'ada'), (2, 'grace');
    `);
    t = await startTestGateway(
      `
defaults {
  verdict = "allow"
}
endpoint "clickhouse_https" "ch" {
  hosts      = ["127.0.0.1"]
  ports      = [${ch.httpsPort}]
  ca_cert    = "${ch.caCertPath}"
  credential = clickhouse_password.ch
}
credential "clickhouse_password" "ch" {
  user = "analyst"
}
profile "agents" {
  credentials = [clickhouse_password.ch]
}
rule "read-only" {
  endpoint  = clickhouse_https.ch
  condition = "sql.verb in ['insert', 'drop', 'truncate', 'alter', 'create', 'rename']"
  verdict   = "deny"
  reason    = "this agent reads only"
}
rule "no-admin-paths" {
  endpoint  = clickhouse_https.ch
  priority  = 20
  condition = "http.path.startsWith('/replicas_status')"
  verdict   = "deny"
  reason    = "not for agents"
}
`,
      { CLAWPATROL_SECRET_CH: SECRET },
    );
    const added = await t.gw.devices.add("agent-box", "agents");
    fwd = await socksForward(t.gw.proxies[0]!.address, { host: "127.0.0.1", port: ch.httpsPort! }, { user: "agent-box", password: added.token });
    ca = readFileSync(t.caPath);
    client = createClient({ url: `https://127.0.0.1:${fwd.port}`, username: "agent", password: PLACEHOLDER, tls: { ca_cert: ca } });
  }, 60_000);

  afterAll(async () => {
    await client?.close();
    fwd?.close();
    await t?.stop();
    await ch?.stop();
  }, 30_000);

  test("a SELECT passes with the placeholder password (the real one reaches the server)", async () => {
    const rs = await client.query({ query: "SELECT name FROM analytics.events ORDER BY id", format: "JSONEachRow" });
    expect(await rs.json()).toEqual([{ name: "ada" }, { name: "grace" }]);
  });

  test("DROP and INSERT are refused with Code 497 in ClickHouse's error form; later queries pass", async () => {
    const drop = await client.command({ query: "DROP TABLE analytics.events" }).then(() => undefined, (e: Error) => e);
    expect(drop?.message).toContain("this agent reads only");
    expect((drop as { code?: string } | undefined)?.code).toBe("497");
    const insert = await client.insert({ table: "analytics.events", values: [{ id: 3, name: "x" }], format: "JSONEachRow" }).then(() => undefined, (e: Error) => e);
    expect(insert?.message).toContain("this agent reads only");
    expect(ch.sql("SELECT count() FROM analytics.events").trim()).toBe("2");
    const rs = await client.query({ query: "SELECT count() AS n FROM analytics.events", format: "JSONEachRow" });
    expect(await rs.json()).toEqual([{ n: "2" }]);
  });

  test("the SQL in a POST body is judged; http.* rules apply too", async () => {
    const url = `https://127.0.0.1:${fwd.port}`;
    const auth = { Authorization: `Basic ${Buffer.from(`agent:${PLACEHOLDER}`).toString("base64")}` };
    const post = await fetch(`${url}/`, { method: "POST", body: "DROP TABLE analytics.events", headers: { ...auth, Connection: "close" }, tls: { ca: ca.toString() } });
    expect(post.status).toBe(403);
    expect(await post.text()).toStartWith("Code: 497. DB::Exception: clawpatrol: access denied by rule \"read-only\"");
    const param = await fetch(`${url}/?query=${encodeURIComponent("SELECT 41 + 1")}&user=agent&password=${PLACEHOLDER}`, { headers: { Connection: "close" }, tls: { ca: ca.toString() } });
    expect((await param.text()).trim()).toBe("42");
    const admin = await fetch(`${url}/replicas_status`, { headers: { ...auth, Connection: "close" }, tls: { ca: ca.toString() } });
    expect(admin.status).toBe(403);
    expect(await admin.text()).toContain("not for agents");
  });

  test("events carry the SQL facts; the secret reaches no event", async () => {
    expect(await waitFor(() => t.events.some((e) => e.verdict === "deny" && e.action?.verb === "drop"), 10_000)).toBe(true);
    const drop = t.events.find((e) => e.verdict === "deny" && e.action?.verb === "drop")!;
    expect(drop.endpoint).toBe("clickhouse_https.ch");
    expect(drop.action?.tables).toEqual(["analytics.events"]);
    expect(JSON.stringify(t.events)).not.toContain(SECRET);
  });
});
