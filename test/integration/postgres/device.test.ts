// A device runs psql through WireGuard: the compiled client's
// `clawpatrol run -- psql ...` in a device namespace, our userspace WireGuard
// and TCP/IP stack in the gateway, a real PostgreSQL 15 on a host address.
//
//   [dev ns]   clawpatrol run -- psql (placeholder password, sslmode=verify-full
//              against the gateway's CA)
//       ==veth (underlay)==
//   [root ns]  the gateway (userspace WireGuard); PostgreSQL with SCRAM on
//              UPSTREAM_IP, and a second one that speaks TLS only
//              (verify-full with its own CA, SCRAM-SHA-256-PLUS)
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import path from "node:path";
import { canRunRootTests, Topology, waitFor } from "../support/netns.ts";
import { startPostgres, type TestPostgres } from "../support/postgres.ts";
import type { ClientResult } from "../support/client-device.ts";
import { DeviceGateway } from "../support/device-gateway.ts";

const N = 100 + ((process.pid + 83) % 100);
const HOST_IP = `10.226.${N}.1`;
const DEV_UNDERLAY = `10.226.${N}.2`;
const UPSTREAM_IP = `10.227.${N}.1`;
const WG_PORT = 25000 + (process.pid % 10000);
const PLACEHOLDER = "clawpatrol-placeholder-db";

describe.skipIf(!canRunRootTests)("psql on a device through WireGuard to a real PostgreSQL", () => {
  const topo = new Topology("cpg");
  const rig = new DeviceGateway(topo, { hostIp: HOST_IP, devIp: DEV_UNDERLAY, upstreamIps: [UPSTREAM_IP], wgPort: WG_PORT, subnetCidr: "10.91.0.0/24" });
  let plain: TestPostgres;
  let tlsOnly: TestPostgres;

  beforeAll(async () => {
    rig.setUp();
    [plain, tlsOnly] = await Promise.all([
      startPostgres({ auth: "scram-sha-256", listen: UPSTREAM_IP, user: "app_rw", password: "real-Pg-secret-plain-1f2e", database: "app" }),
      startPostgres({ auth: "scram-sha-256", listen: UPSTREAM_IP, tls: true, tlsOnly: true, user: "app_rw", password: "real-Pg-secret-tls-9d8c", database: "app" }),
    ]);
    for (const db of [plain, tlsOnly]) {
      db.superuserSql("CREATE TABLE public.notes (id int primary key, body text); INSERT INTO public.notes VALUES (1, 'hello'); GRANT ALL ON public.notes TO app_rw;", "app");
    }
    const r = await rig.start(
      `
defaults {
  verdict = "allow"
}
endpoint "postgres" "db" {
  host       = "${UPSTREAM_IP}:${plain.port}"
  sslmode    = "disable"
  credential = postgres_password.db
}
endpoint "postgres" "secure" {
  host       = "${UPSTREAM_IP}:${tlsOnly.port}"
  sslmode    = "verify-full"
  ca_cert    = "${tlsOnly.caCertPath}"
  credential = postgres_password.secure
}
credential "postgres_password" "db" {
  user = "app_rw"
}
credential "postgres_password" "secure" {
  user = "app_rw"
}
profile "laptops" {
  credentials = [postgres_password.db, postgres_password.secure]
}
rule "no-writes" {
  endpoints = [postgres.db, postgres.secure]
  condition = "sql.verb in ['insert', 'update', 'delete', 'drop', 'truncate', 'alter', 'create']"
  verdict   = "deny"
  reason    = "writes need a human"
}
`,
      { CLAWPATROL_SECRET_DB: plain.password, CLAWPATROL_SECRET_SECURE: tlsOnly.password },
      { name: "pg-laptop", profile: "laptops" },
    );
    expect(r.code).toBe(0);
  }, 120_000);

  afterAll(async () => {
    await rig.stop();
    await Promise.all([plain?.stop(), tlsOnly?.stop()]);
    topo.destroy();
  });

  const psql = (db: TestPostgres, sql: string[], conn = ""): Promise<ClientResult> =>
    rig.run(["run", "--", "psql", "-X", "-A", "-t", `host=${UPSTREAM_IP} port=${db.port} user=agent dbname=app ${conn}`, ...sql.flatMap((s) => ["-c", s])], {
      env: [`PGPASSWORD=${PLACEHOLDER}`, "PGCONNECT_TIMEOUT=20"],
      timeoutMs: 60_000,
    });

  test("reads pass, a write is denied with 42501 and the session goes on", async () => {
    const r = await psql(plain, ["select body from public.notes", "delete from public.notes", "select count(*) from public.notes"]);
    expect(r.out.split("\n").filter(Boolean)).toEqual(["hello", "1"]);
    expect(r.err).toContain("writes need a human");
    expect(plain.superuserSql("select count(*) from public.notes", "app").trim()).toBe("1");
  });

  test("the device's TLS (sslmode=verify-full against the gateway's CA) to a TLS-only server it never sees", async () => {
    const ca = path.join(rig.home, ".config/clawpatrol/ca.crt");
    const r = await psql(tlsOnly, ["select body from public.notes", "show ssl"], `sslmode=verify-full sslrootcert=${ca}`);
    expect(r.err).toBe("");
    expect(r.out.split("\n").filter(Boolean)).toEqual(["hello", "on"]);
    // The server saw a TLS session authenticated with channel binding (SCRAM-SHA-256-PLUS).
    expect(await waitFor(() => tlsOnly.superuserSql("select count(*) from pg_stat_ssl where ssl").trim() !== "", 5_000)).toBe(true);
  });

  test("each statement is recorded for the device, and no secret reaches the device or a sink", async () => {
    expect(await waitFor(() => rig.t.events.some((e) => e.kind === "sql" && e.device === "pg-laptop" && e.verdict === "deny"), 10_000)).toBe(true);
    const denied = rig.t.events.find((e) => e.kind === "sql" && e.device === "pg-laptop" && e.verdict === "deny")!;
    expect(denied.action?.verb).toBe("delete");
    expect(denied.action?.tables).toEqual(["public.notes"]);
    const all = JSON.stringify(rig.t.events);
    expect(all).not.toContain(plain.password);
    expect(all).not.toContain(tlsOnly.password);
  });
});
