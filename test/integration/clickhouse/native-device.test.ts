// A device runs clickhouse-client through WireGuard: the compiled client's
// `clawpatrol run -- clickhouse-client ...` in a device namespace, our
// userspace WireGuard and TCP/IP stack in the gateway, a real
// clickhouse-server 18.16 on a host address (protocol revision 54412).
//
//   [dev ns]   clawpatrol run -- clickhouse-client (placeholder user and password)
//       ==veth (underlay)==
//   [root ns]  the gateway (userspace WireGuard); clickhouse-server on UPSTREAM_IP
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { canRunRootTests, Topology, waitFor } from "../support/netns.ts";
import { startClickHouse, type TestClickHouse } from "../support/clickhouse.ts";
import type { ClientResult } from "../support/client-device.ts";
import { DeviceGateway } from "../support/device-gateway.ts";

const N = 100 + ((process.pid + 41) % 100);
const HOST_IP = `10.228.${N}.1`;
const DEV_UNDERLAY = `10.228.${N}.2`;
const UPSTREAM_IP = `10.229.${N}.1`;
const WG_PORT = 26000 + (process.pid % 10000);
const PLACEHOLDER = "clawpatrol-placeholder-ch";
const SECRET = "real-Ch-secret-device-3c9a";

describe.skipIf(!canRunRootTests)("clickhouse-client on a device through WireGuard to a real ClickHouse", () => {
  const topo = new Topology("cch");
  const rig = new DeviceGateway(topo, { hostIp: HOST_IP, devIp: DEV_UNDERLAY, upstreamIps: [UPSTREAM_IP], wgPort: WG_PORT, subnetCidr: "10.92.0.0/24" });
  let ch: TestClickHouse;
  const logs: string[] = [];

  beforeAll(async () => {
    rig.setUp();
    ch = await startClickHouse({ listen: UPSTREAM_IP, user: "analyst", password: SECRET });
    ch.sql(`
      CREATE DATABASE analytics;
      CREATE TABLE analytics.events (id UInt32, name String) ENGINE = MergeTree() ORDER BY id;
      INSERT INTO analytics.events VALUES (1, 'ada'), (2, 'grace');
    `);
    const r = await rig.start(
      `
defaults {
  verdict = "allow"
}
endpoint "clickhouse_native" "ch" {
  hosts      = ["${UPSTREAM_IP}:${ch.tcpPort}"]
  tls        = false
  credential = clickhouse_password.ch
}
credential "clickhouse_password" "ch" {
  user = "analyst"
}
profile "laptops" {
  credentials = [clickhouse_password.ch]
}
rule "read-only" {
  endpoint  = clickhouse_native.ch
  condition = "sql.verb in ['insert', 'drop', 'truncate', 'alter', 'create', 'rename']"
  verdict   = "deny"
  reason    = "this agent reads only"
}
`,
      { CLAWPATROL_SECRET_CH: SECRET },
      { name: "ch-laptop", profile: "laptops", stderrWrite: (l) => logs.push(l) },
    );
    expect(r.code).toBe(0);
  }, 120_000);

  afterAll(async () => {
    await rig.stop();
    await ch?.stop();
    topo.destroy();
  });

  const client = (args: string[]): Promise<ClientResult> =>
    rig.run(["run", "--", "clickhouse-client", "--host", UPSTREAM_IP, "--port", String(ch.tcpPort), "--user", "agent", "--password", PLACEHOLDER, ...args], { timeoutMs: 60_000 });

  test("a read passes; DROP and INSERT are denied with 497 and the session goes on", async () => {
    const r = await client([
      "--multiquery",
      "--ignore-error",
      "-q",
      "SELECT name FROM analytics.events ORDER BY id; DROP TABLE analytics.events; INSERT INTO analytics.events SELECT 3, 'x'; SELECT count() FROM analytics.events",
    ]);
    expect(r.out.split("\n").filter(Boolean)).toEqual(["ada", "grace", "2"]);
    expect(r.err).toContain("Code: 497");
    expect(r.err).toContain("this agent reads only");
    expect(ch.sql("SELECT count() FROM analytics.events").trim()).toBe("2");
  });

  test("each query is recorded for the device; the secret reaches neither the device nor a sink", async () => {
    expect(await waitFor(() => rig.t.events.some((e) => e.kind === "sql" && e.device === "ch-laptop" && e.verdict === "deny"), 10_000)).toBe(true);
    const denied = rig.t.events.filter((e) => e.kind === "sql" && e.device === "ch-laptop" && e.verdict === "deny").map((e) => e.action?.verb);
    expect(denied).toEqual(["drop", "insert"]);
    expect(JSON.stringify(rig.t.events)).not.toContain(SECRET);
    expect(logs.join("\n")).not.toContain(SECRET);
    // What the device was given: its manifest holds the placeholder, never the secret.
    const manifest = await client(["-q", "SELECT 1"]);
    expect(manifest.out + manifest.err).not.toContain(SECRET);
    const files = Bun.spawnSync(["grep", "-r", "-l", SECRET, rig.home]);
    expect(files.stdout.toString()).toBe("");
  });
});
