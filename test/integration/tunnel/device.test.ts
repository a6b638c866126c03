// A device behind real WireGuard, end to end through the userspace packet
// plane:
//
//   [dev ns] curl, wireguard-go wg0 (address from onboarding)
//        ==veth (underlay, UDP to the gateway)==
//   [root ns] the gateway: userspace WireGuard -> our TCP/IP stack -> Flows
//             -> interception with credential injection; a TLS upstream on
//             a second address of the host side of the veth
//
// The device enrolls through the real onboarding API (start, operator
// approval over the control socket, poll), then its flows are intercepted,
// relayed (over IPv4 and IPv6), and cut when it is revoked.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import net from "node:net";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { canRunRootTests, Topology, waitFor, sh } from "../support/netns.ts";
import { makeTestPki } from "../support/pki.ts";
import { startUpstream, type TestUpstream } from "../support/upstream.ts";
import { startTestGateway, tempDir, type TestGateway } from "../support/gateway.ts";
import { startPostgres, type TestPostgres } from "../support/postgres.ts";
import { controlFetch } from "../../../app/control/client.ts";
import { generateKeyPair } from "../../../app/net/wireguard/shell.ts";

const SECRET = "ghp_real-device-secret-0123456789";
const PG_SECRET = "real-Pg-device-secret-5a6b";
const N = 100 + (process.pid % 100);
const HOST_IP = `10.216.${N}.1`;
const DEV_UNDERLAY = `10.216.${N}.2`;
const UPSTREAM_IP = `10.217.${N}.1`;
// IPv6: the gateway hands devices a /128 from subnet6_cidr; the upstream has a ULA on the host side.
const SUBNET6 = `fd88:${N}::/64`;
const UPSTREAM6 = `fd99:${N}::1`;
const WG_PORT = 40000 + (process.pid % 10000);

describe.skipIf(!canRunRootTests)("a device behind WireGuard through the userspace packet plane", () => {
  const topo = new Topology("cpd");
  let dev = "";
  let t: TestGateway;
  let upstream: TestUpstream;
  let upstream6: TestUpstream;
  let echo: net.Server;
  let echo6: net.Server;
  let device: { name: string; address: string; publicKey: string };
  let caPath = "";
  let db: TestPostgres;

  beforeAll(async () => {
    dev = topo.namespace("dev");
    topo.veth(dev, "h", `${HOST_IP}/30`, `${DEV_UNDERLAY}/30`);
    sh(`ip addr add ${UPSTREAM_IP}/32 dev ${topo.hostLink("h")}`);
    sh(`ip -6 addr add ${UPSTREAM6}/128 dev ${topo.hostLink("h")} nodad`);

    const pki = makeTestPki(tempDir("pki"), ["api.test"]);
    upstream = startUpstream(pki, { hostname: UPSTREAM_IP, port: 443 });
    db = await startPostgres({ auth: "scram-sha-256", listen: UPSTREAM_IP, user: "app_rw", password: PG_SECRET, database: "app" });
    echo = net.createServer((s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(7000, UPSTREAM_IP, () => r()));
    upstream6 = startUpstream(pki, { hostname: UPSTREAM6, port: 443 });
    echo6 = net.createServer((s) => s.pipe(s));
    await new Promise<void>((r) => echo6.listen(7000, UPSTREAM6, () => r()));

    t = await startTestGateway(
      `
defaults {
  verdict = "allow"
  # the upstreams are addresses of the gateway host here (the host side of the veth)
  allow_destinations = ["${UPSTREAM_IP}", "${UPSTREAM6}"]
}
endpoint "https" "api" {
  hosts = ["api.test"]
  ca_cert = "${pki.caCertPath}"
  credential = github_token.gh
}
credential "github_token" "gh" {}
endpoint "postgres" "db" {
  host       = "${UPSTREAM_IP}:${db.port}"
  sslmode    = "disable"
  credential = postgres_password.db
}
credential "postgres_password" "db" {
  user = "app_rw"
}
profile "laptops" {
  credentials = [github_token.gh, postgres_password.db]
}
rule "db-read-only" {
  endpoint  = postgres.db
  condition = "sql.verb != 'select'"
  verdict   = "deny"
  reason    = "read-only"
}
rule "no-deletes" {
  endpoint = https.api
  condition = "http.method == 'DELETE'"
  verdict = "deny"
}
`,
      { CLAWPATROL_SECRET_GH: SECRET, CLAWPATROL_SECRET_DB: PG_SECRET },
      {
        gateway: `
  wireguard {
    mode = "userspace"
    listen = "${HOST_IP}:${WG_PORT}"
    subnet_cidr = "10.88.0.0/24"
    subnet6_cidr = "${SUBNET6}"
    endpoint = "${HOST_IP}:${WG_PORT}"
  }`,
      },
    );
    caPath = t.caPath;

    // Onboarding over the real API: the device makes its own keys.
    const keys = generateKeyPair();
    const pub = t.gw.publicServer.address;
    const api = `http://127.0.0.1:${pub.port}`;
    const started = (await (
      await fetch(`${api}/api/onboard/start`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ name: "dev-laptop", public_key: keys.publicKey }),
      })
    ).json()) as { code: string; device_code: string };
    expect(started.code).toMatch(/^[A-Z2-9]{4}-[A-Z2-9]{4}$/);
    const approve = await controlFetch(t.gw.policy().gateway.controlSocket, `/api/onboard/${started.code}/approve`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ profile: "laptops", operator: "cli:test" }),
    });
    expect(approve.status).toBe(200);
    const polled = (await (
      await fetch(`${api}/api/onboard/poll`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ device_code: started.device_code }),
      })
    ).json()) as { status: string; device: { address: string; address6?: string }; gateway: { public_key: string; endpoint: string }; ca_cert: string };
    expect(polled.status).toBe("approved");
    device = { name: "dev-laptop", address: polled.device.address, publicKey: keys.publicKey };
    expect(polled.device.address6).toBe(`fd88:${N}::2`);
    expect(polled.gateway.endpoint).toBe(`${HOST_IP}:${WG_PORT}`);
    expect(polled.ca_cert).toBe(await Bun.file(caPath).text());

    // The device's tunnel, as the client will set it up: wireguard-go with what onboarding returned.
    const dir = tempDir("dev");
    writeFileSync(path.join(dir, "key"), keys.privateKey + "\n", { mode: 0o600 });
    const wg = await topo.wireguardGo(dev);
    wg.wg(`set wg0 private-key ${dir}/key peer ${polled.gateway.public_key} allowed-ips 0.0.0.0/0,::/0 endpoint ${polled.gateway.endpoint} persistent-keepalive 5`);
    sh(`ip -n ${dev} addr add ${device.address}/32 dev wg0 && ip -n ${dev} link set wg0 mtu 1420 up`);
    sh(`ip -n ${dev} -6 addr add ${polled.device.address6}/128 dev wg0 nodad`);
    sh(`ip -n ${dev} route add 10.217.0.0/16 dev wg0`);
    sh(`ip -n ${dev} -6 route add fd99::/16 dev wg0`);
  }, 60_000);

  afterAll(async () => {
    await t?.stop();
    await db?.stop();
    upstream?.stop();
    upstream6?.stop();
    echo?.close();
    echo6?.close();
    topo.destroy();
  });

  const curl = (args: string[]) =>
    topo.exec(dev, ["curl", "-sS", "--max-time", "15", "--cacert", caPath, "--resolve", `api.test:443:${UPSTREAM_IP}`, "-w", "\n%{http_code}", ...args]);

  test("HTTPS from the device is intercepted and gets the real credential; the device only ever has the placeholder", async () => {
    const r = await curl(["-H", "Authorization: Bearer ghp_clawpatrol_placeholder_gh", "https://api.test/echo"]);
    expect(r.err).toBe("");
    const [body, status] = [r.out.slice(0, r.out.lastIndexOf("\n")), r.out.slice(r.out.lastIndexOf("\n") + 1)];
    expect(status).toBe("200");
    expect(upstream.seen.at(-1)!.headers["authorization"]).toBe(`Bearer ${SECRET}`);
    expect(body).not.toContain(SECRET);
    const e = t.events.filter((x) => x.kind === "http").at(-1)!;
    expect(e.device).toBe("dev-laptop");
    expect(e.profile).toBe("laptops");
    expect(e.credential).toBe("github_token.gh");
  });

  test("psql from the wireguard-go device: a placeholder password, reads pass, a write is 42501", async () => {
    const r = await topo.exec(
      dev,
      ["env", "PGPASSWORD=placeholder", "PGCONNECT_TIMEOUT=15", "psql", "-X", "-A", "-t", "-h", UPSTREAM_IP, "-p", String(db.port), "-U", "agent", "-d", "app", "-c", "select 40 + 2", "-c", "create table t (x int)", "-c", "select 'still here'"],
      30_000,
    );
    expect(r.out.split("\n").filter(Boolean)).toEqual(["42", "still here"]);
    expect(r.err).toContain("read-only");
    expect(t.events.some((e) => e.kind === "sql" && e.device === "dev-laptop" && e.verdict === "deny")).toBe(true);
  });

  test("a rule denies with 403 over the tunnel", async () => {
    const r = await curl(["-X", "DELETE", "https://api.test/echo"]);
    expect(r.out.endsWith("\n403")).toBe(true);
  });

  test("a plain TCP service on another port is relayed", async () => {
    const r = await topo.exec(dev, ["bash", "-c", `exec 3<>/dev/tcp/${UPSTREAM_IP}/7000; echo through-the-tunnel >&3; read -t 5 line <&3; echo "$line"`], 15_000);
    expect(r.out.trim()).toBe("through-the-tunnel");
    await waitFor(() => t.events.some((e) => e.kind === "connection" && e.port === 7000 && e.device === "dev-laptop"), 3000);
    expect(t.events.some((e) => e.kind === "connection" && e.port === 7000 && e.verdict === "relay")).toBe(true);
  });

  test("IPv6: HTTPS to an IPv6 upstream is intercepted from the device's /128 and gets the real credential", async () => {
    const before = upstream6.seen.length;
    const r = await topo.exec(dev, [
      "curl", "-sS", "-6", "--max-time", "15", "--cacert", caPath, "--resolve", `api.test:443:[${UPSTREAM6}]`, "-w", "\n%{http_code}",
      "-H", "Authorization: Bearer ghp_clawpatrol_placeholder_gh", "https://api.test/echo",
    ]);
    expect(r.err).toBe("");
    expect(r.out.endsWith("\n200")).toBe(true);
    expect(upstream6.seen.length).toBe(before + 1);
    expect(upstream6.seen.at(-1)!.headers["authorization"]).toBe(`Bearer ${SECRET}`);
    const e = t.events.filter((x) => x.kind === "http").at(-1)!;
    expect(e.device).toBe("dev-laptop");
  });

  test("IPv6: a plain TCP service is relayed to its IPv6 address", async () => {
    const r = await topo.exec(dev, ["bash", "-c", `exec 3<>/dev/tcp/${UPSTREAM6}/7000; echo over-ipv6 >&3; read -t 5 line <&3; echo "$line"`], 15_000);
    expect(r.out.trim()).toBe("over-ipv6");
    await waitFor(() => t.events.some((e) => e.kind === "connection" && e.port === 7000 && e.host === UPSTREAM6), 3000);
    expect(t.events.some((e) => e.kind === "connection" && e.host === UPSTREAM6 && e.verdict === "relay" && e.device === "dev-laptop")).toBe(true);
  });

  test("IPv6: a source the device does not own is dropped by WireGuard's allowed IPs", async () => {
    // Another address in the gateway's /64: the gateway must not accept it from this peer.
    sh(`ip -n ${dev} -6 addr add fd88:${N}::99/128 dev wg0 nodad`);
    try {
      const relayed = t.events.filter((e) => e.kind === "connection" && e.host === UPSTREAM6).length;
      const forced = await topo.exec(dev, ["curl", "-sS", "-6", "--max-time", "3", "--interface", `fd88:${N}::99`, `http://[${UPSTREAM6}]:7000/`], 10_000);
      expect(forced.err).toContain("timed out"); // dropped in the tunnel: no reset, no answer
      await Bun.sleep(200);
      expect(t.events.filter((e) => e.kind === "connection" && e.host === UPSTREAM6).length).toBe(relayed);
    } finally {
      sh(`ip -n ${dev} -6 addr del fd88:${N}::99/128 dev wg0`);
    }
  });

  test("revoking the device cuts its traffic within 5 seconds", async () => {
    const res = await controlFetch(t.gw.policy().gateway.controlSocket, `/api/devices/${device.name}/revoke`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ operator: "cli:test" }),
    });
    expect(res.status).toBe(200);
    // The first request after the revocation already gets nowhere: curl's own 5 s limit
    // ends it (no answer, no reset), so the traffic stopped within 5 s.
    const r = await curl(["--max-time", "5", "https://api.test/echo"]);
    expect(r.out.endsWith("\n200")).toBe(false);
    expect(r.err).toContain("timed out");
  }, 15_000); // curl's own 5 s limit plus the revocation: the default 5 s test timeout ended it first
});
