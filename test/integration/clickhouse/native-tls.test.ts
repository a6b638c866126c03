// clickhouse_native with tls = true: clickhouse-client 18.16 --secure
// trusts only the gateway's CA and gets a leaf for the address it dialed;
// the gateway speaks TLS to clickhouse-server 18.16's secure native port,
// verified against that server's own CA (ca_cert).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { startClickHouse, type TestClickHouse } from "../support/clickhouse.ts";
import { startTestGateway, tempDir, type TestGateway } from "../support/gateway.ts";
import { socksForward, type SocksForward } from "../support/socks-forward.ts";

const SECRET = "real-Ch-tls-secret-2a4e";

async function run(cmd: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const timer = setTimeout(() => p.kill("SIGKILL"), 60_000);
  const [stdout, stderr, exitCode] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(timer);
  return { exitCode, stdout, stderr };
}

describe("clickhouse_native with tls = true", () => {
  let ch: TestClickHouse;
  let t: TestGateway;
  let fwd: SocksForward;
  let clientConfig = "";

  beforeAll(async () => {
    ch = await startClickHouse({ user: "analyst", password: SECRET, tls: true });
    t = await startTestGateway(
      `
defaults {
  verdict = "allow"
}
endpoint "clickhouse_native" "ch" {
  hosts      = ["127.0.0.1:${ch.tcpSecurePort}"]
  tls        = true
  ca_cert    = "${ch.caCertPath}"
  credential = clickhouse_password.ch
}
credential "clickhouse_password" "ch" {
  user = "analyst"
}
profile "agents" {
  credentials = [clickhouse_password.ch]
}
rule "no-drops" {
  endpoint  = clickhouse_native.ch
  condition = "sql.verb == 'drop'"
  verdict   = "deny"
  reason    = "no drops"
}
`,
      { CLAWPATROL_SECRET_CH: SECRET },
    );
    const added = await t.gw.devices.add("agent-box", "agents");
    fwd = await socksForward(t.gw.proxies[0]!.address, { host: "127.0.0.1", port: ch.tcpSecurePort! }, { user: "agent-box", password: added.token });
    // clickhouse-client reads Poco's openSSL client settings from its config file: trust only the gateway's CA.
    const dir = tempDir("ch-client");
    clientConfig = path.join(dir, "config.xml");
    writeFileSync(
      clientConfig,
      `<config><openSSL><client><loadDefaultCAFile>false</loadDefaultCAFile><caConfig>${t.caPath}</caConfig><verificationMode>strict</verificationMode><cacheSessions>false</cacheSessions><invalidCertificateHandler><name>RejectCertificateHandler</name></invalidCertificateHandler></client></openSSL></config>`,
    );
  }, 60_000);

  afterAll(async () => {
    fwd?.close();
    await t?.stop();
    await ch?.stop();
  }, 30_000);

  test("a read passes over TLS on both legs; a DROP is denied", async () => {
    const r = await run([
      "clickhouse-client", "--config-file", clientConfig, "--secure", "--host", "127.0.0.1", "--port", String(fwd.port),
      "--user", "agent", "--password", "placeholder", "--multiquery", "--ignore-error", "-q", "SELECT 40 + 2; DROP TABLE default.x; SELECT 7",
    ]);
    expect(r.stdout.split("\n").filter(Boolean)).toEqual(["42", "7"]);
    expect(r.stderr).toContain("Code: 497");
  });
});
