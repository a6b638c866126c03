// In-tunnel discovery end to end: a device enrolled over the real onboarding
// API, behind wireguard-go, resolves clawpatrol.internal through the tunnel's
// DNS (the gateway's tunnel address is its nameserver) and fetches
// https://clawpatrol.internal/manifest and /ca.crt from the gateway itself.
//
//   [dev ns] curl (resolv.conf: nameserver <gateway tunnel address>), wg0
//        ==veth (underlay, UDP to the gateway)==
//   [root ns] the gateway: userspace WireGuard -> our stack (DNS answered
//             locally) -> Flow -> dispatch "internal" -> the responder
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { canRunRootTests, Topology, sh } from "../support/netns.ts";
import { startTestGateway, tempDir, type TestGateway } from "../support/gateway.ts";
import { controlFetch } from "../../../app/control/client.ts";
import { generateKeyPair } from "../../../app/net/wireguard/shell.ts";

const SECRET = "ghp_internal-discovery-secret-5551234";
const N = 100 + (process.pid % 100);
const HOST_IP = `10.220.${N}.1`;
const DEV_UNDERLAY = `10.220.${N}.2`;
const WG_PORT = 20000 + (process.pid % 10000);
const SUBNET = "10.89.0.0/24";
const GATEWAY_TUNNEL_IP = "10.89.0.1";

describe.skipIf(!canRunRootTests)("https://clawpatrol.internal/ from a device in the tunnel", () => {
  const topo = new Topology("cpi");
  let dev = "";
  let netnsEtc = "";
  let t: TestGateway;
  let caPath = "";

  beforeAll(async () => {
    dev = topo.namespace("dev");
    topo.veth(dev, "h", `${HOST_IP}/30`, `${DEV_UNDERLAY}/30`);
    // `ip netns exec` bind-mounts /etc/netns/<ns>/resolv.conf over /etc/resolv.conf.
    netnsEtc = `/etc/netns/${dev}`;
    mkdirSync(netnsEtc, { recursive: true });
    writeFileSync(path.join(netnsEtc, "resolv.conf"), `nameserver ${GATEWAY_TUNNEL_IP}\n`);

    t = await startTestGateway(
      `
endpoint "https" "api" {
  hosts = ["api.test", "*.api.test"]
  credential = github_token.gh
}
endpoint "https" "other" {
  hosts = ["other.test"]
}
credential "github_token" "gh" {}
credential "header_token" "corp" {
  header = "X-Corp-Token"
}
profile "laptops" {
  credentials = [github_token.gh, header_token.corp]
  endpoints   = [https.api]
}
`,
      { CLAWPATROL_SECRET_GH: SECRET, CLAWPATROL_SECRET_CORP: SECRET + "-corp" },
      {
        gateway: `
  wireguard {
    mode = "userspace"
    listen = "${HOST_IP}:${WG_PORT}"
    subnet_cidr = "${SUBNET}"
    endpoint = "${HOST_IP}:${WG_PORT}"
  }`,
      },
    );
    caPath = t.caPath;

    const keys = generateKeyPair();
    const api = `http://127.0.0.1:${t.gw.publicServer.address.port}`;
    const post = async (p: string, body: unknown) =>
      (await fetch(`${api}${p}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })).json();
    const started = (await post("/api/onboard/start", { name: "disco-laptop", public_key: keys.publicKey })) as { code: string; device_code: string };
    const approve = await controlFetch(t.gw.policy().gateway.controlSocket, `/api/onboard/${started.code}/approve`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ profile: "laptops", operator: "cli:test" }),
    });
    expect(approve.status).toBe(200);
    const polled = (await post("/api/onboard/poll", { device_code: started.device_code })) as {
      status: string; device: { address: string }; gateway: { public_key: string; endpoint: string };
    };
    expect(polled.status).toBe("approved");

    const dir = tempDir("disco");
    writeFileSync(path.join(dir, "key"), keys.privateKey + "\n", { mode: 0o600 });
    const wg = await topo.wireguardGo(dev);
    wg.wg(`set wg0 private-key ${dir}/key peer ${polled.gateway.public_key} allowed-ips 0.0.0.0/0 endpoint ${polled.gateway.endpoint} persistent-keepalive 5`);
    sh(`ip -n ${dev} addr add ${polled.device.address}/32 dev wg0 && ip -n ${dev} link set wg0 mtu 1420 up`);
    sh(`ip -n ${dev} route add ${SUBNET} dev wg0`);
  }, 60_000);

  afterAll(async () => {
    await t?.stop();
    topo.destroy();
    if (netnsEtc) rmSync(netnsEtc, { recursive: true, force: true });
  });

  const bodies: string[] = [];
  const curl = async (args: string[]) => {
    const r = await topo.exec(dev, ["curl", "-sS", "--max-time", "15", ...args]);
    bodies.push(r.out, r.err);
    return r;
  };

  test("the name resolves through the tunnel's DNS to the gateway's tunnel address", async () => {
    const r = await topo.exec(dev, ["getent", "ahostsv4", "clawpatrol.internal"]);
    expect(r.out).toContain(GATEWAY_TUNNEL_IP);
  });

  test("GET /manifest as JSON: the device, its profile, its endpoints and placeholders", async () => {
    const r = await curl(["--cacert", caPath, "-H", "Accept: application/json", "https://clawpatrol.internal/manifest"]);
    expect(r.err).toBe("");
    const m = JSON.parse(r.out);
    expect(m.device).toBe("disco-laptop");
    expect(m.profile).toBe("laptops");
    expect(m.endpoints).toEqual([{ name: "api", ref: "https.api", type: "https", hosts: ["api.test", "*.api.test"], ports: [443] }]);
    expect(m.credentials).toEqual([
      { ref: "github_token.gh", type: "github_token", placeholder: "ghp_clawpatrol_placeholder_gh", slot: expect.stringContaining("ghp_clawpatrol_placeholder_gh"), endpoints: ["https.api"] },
      { ref: "header_token.corp", type: "header_token", placeholder: "clawpatrol-placeholder-corp", slot: "X-Corp-Token: clawpatrol-placeholder-corp", endpoints: [] },
    ]);
  });

  test("GET /manifest as text is a readable table; ?format=json is JSON", async () => {
    const text = await curl(["--cacert", caPath, "https://clawpatrol.internal/manifest"]);
    expect(text.err).toBe("");
    expect(text.out).toContain("device:   disco-laptop");
    expect(text.out).toContain("profile:  laptops");
    expect(text.out).toMatch(/https\.api\s+api\.test, \*\.api\.test\s+443/);
    expect(text.out).toMatch(/github_token\.gh\s+github_token\s+ghp_clawpatrol_placeholder_gh/);
    expect(text.out).not.toContain("other.test");
    const json = await curl(["--cacert", caPath, "https://clawpatrol.internal/manifest?format=json"]);
    expect(JSON.parse(json.out).profile).toBe("laptops");
    const index = await curl(["--cacert", caPath, "https://clawpatrol.internal/"]);
    expect(index.out).toContain("/ca.crt");
  });

  test("GET /ca.crt (without trusting anything yet) is the gateway CA", async () => {
    const r = await curl(["-k", "-D", "-", "-o", "-", "https://clawpatrol.internal/ca.crt"]);
    expect(r.err).toBe("");
    expect(r.out).toMatch(/content-type: application\/x-pem-file/i);
    const pem = r.out.slice(r.out.indexOf("\r\n\r\n") + 4);
    expect(pem).toBe(await Bun.file(caPath).text());
    expect(pem).toBe(t.gw.ca.certPem);
  });

  test("no response carried a secret", () => {
    expect(bodies.length).toBeGreaterThan(6);
    for (const b of bodies) {
      expect(b).not.toContain(SECRET);
      expect(b).not.toContain(Buffer.from(SECRET).toString("base64"));
    }
  });
});
