// A device behind real WireGuard, end to end through the kernel-mode packet
// plane (the appliance's path):
//
//   [dev] curl, wireguard-go wg0 (address from onboarding)
//     eth0 10.218.N.2 ==veth (underlay, UDP 51820)== e-dev 10.218.N.1
//   [gw]  wireguard-go as the "kernel" wg0 (its own mount namespace for
//         /run/wireguard); the gateway process runs in that mount+net
//         namespace (`clawpatrol-gateway all`, mode = "kernel"): it keys wg0,
//         sets the device's peer, opens the TUN cp0 and installs
//         `ip rule iif wg0 lookup 100` + `default dev cp0 table 100`
//     e-up 10.219.N.1 ==veth (routed)== eth0 10.219.N.2
//   [up]  a Bun TLS upstream (its own CA) on :443 and a TCP echo on :7000
//
// The device enrolls through the public onboarding API over the underlay (as
// the client does), the operator approves over the control socket; then its
// HTTPS is intercepted with the real credential injected, a plain TCP port is
// relayed, a revocation removes its peer, and after SIGTERM the policy
// routing, the TUN and the peers are gone while wg0 stays.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync, rmSync } from "node:fs";
import path from "node:path";
import { canRunRootTests, Topology, sh, waitFor, type Background, type WireguardGo } from "../support/netns.ts";
import { makeTestPki } from "../support/pki.ts";
import { expectedDownloadSha } from "../support/tunnel-matrix.ts";
import { tempDir } from "../support/gateway.ts";
import { controlFetch } from "../../../app/control/client.ts";
import { generateKeyPair } from "../../../app/net/wireguard/keys.ts";

const ROOT = path.resolve(import.meta.dir, "../../..");
const BUN = path.join(ROOT, "node_modules/.bin/bun");
const SECRET = "ghp_kernel-mode-real-secret-0123456789";
const N = 10 + (process.pid % 200);
const GW_UNDERLAY = `10.218.${N}.1`;
const DEV_UNDERLAY = `10.218.${N}.2`;
const GW_UP = `10.219.${N}.1`;
const UP_IP = `10.219.${N}.2`;
const SUBNET = "10.89.0.0/24";
// IPv6: devices get a /128 from SUBNET6; the upstream also answers on a ULA.
const SUBNET6 = `fd89:${N}::/64`;
const GW_UP6 = `fd91:${N}::1`;
const UP6 = `fd91:${N}::2`;
const GW_TUNNEL = "10.89.0.1";
const WG_PORT = 51820;
const DASH_PORT = 8080;
const DOWNLOAD_MB = 20;

// scripts written to a temporary directory resolve packages by absolute path
const DNS_PACKET = JSON.stringify(path.join(ROOT, "node_modules/dns-packet/index.js"));

// The upstream, run with `ip netns exec up`: prints every request it saw as a SEEN line.
const UPSTREAM_SCRIPT = `
import net from "node:net";
import dgram from "node:dgram";
import dnsPacket from ${DNS_PACKET};
import { readFileSync } from "node:fs";
import { startUpstream } from ${JSON.stringify(path.join(ROOT, "test/integration/support/upstream.ts"))};
const [dir, host] = process.argv.slice(2);
const pki = { dir, caCertPath: dir + "/ca.crt", caCertPem: "", certPem: readFileSync(dir + "/leaf.crt", "utf8"), keyPem: readFileSync(dir + "/leaf.key", "utf8") };
const up = startUpstream(pki, { hostname: host, port: 443 });
const echo = net.createServer((s) => s.pipe(s));
// :7001 streams MB MiB of zeros and closes (relay throughput, no TLS)
const MB = Number(process.argv[4] ?? 20);
const bulk = net.createServer((s) => {
  const chunk = Buffer.alloc(1 << 20);
  let left = MB;
  const pump = () => {
    while (left > 0) {
      left -= 1;
      if (!s.write(chunk)) return void s.once("drain", pump);
    }
    s.end();
  };
  pump();
});
bulk.listen(7001, host);
echo.listen(7000, host, () => console.log("UPSTREAM READY"));
// the resolver the gateway forwards device DNS to: api.test is here
const dns = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
dns.on("message", (msg, rinfo) => {
  const q = dnsPacket.decode(msg);
  const name = q.questions?.[0]?.name ?? "";
  const answers = name === "api.test" ? [{ type: "A", name, ttl: 60, data: host }] : [];
  dns.send(dnsPacket.encode({ type: "response", id: q.id, flags: dnsPacket.RECURSION_DESIRED, questions: q.questions, answers }), rinfo.port, rinfo.address);
});
dns.bind(53, host);
let shown = 0;
setInterval(() => {
  while (shown < up.seen.length) console.log("SEEN " + JSON.stringify(up.seen[shown++]));
}, 20);
`;

// A DNS query from the device (run with \`ip netns exec dev\`): prints the first A record.
const DNS_CLIENT_SCRIPT = `
import dgram from "node:dgram";
import dnsPacket from ${DNS_PACKET};
const [server, name] = process.argv.slice(2);
const s = dgram.createSocket("udp4");
s.on("message", (m) => {
  const a = dnsPacket.decode(m).answers?.find((x) => x.type === "A");
  console.log(a ? a.data : "NXDOMAIN");
  process.exit(0);
});
s.send(dnsPacket.encode({ type: "query", id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: "A", name }] }), 53, server);
setTimeout(() => { console.log("TIMEOUT"); process.exit(1); }, 4000);
`;

describe.skipIf(!canRunRootTests)("a device behind WireGuard through the kernel-mode packet plane", () => {
  const topo = new Topology("cpk");
  let dev = "";
  let gw = "";
  let up = "";
  let dir = "";
  let netnsEtc = "";
  let caPath = "";
  let controlSocket = "";
  let gwWg: WireguardGo;
  let gateway: Background | undefined;
  let upstream: Background | undefined;
  let upstream6: Background | undefined;
  let device: { name: string; address: string; publicKey: string };

  const STALE_PEER = generateKeyPair().publicKey;
  const inGw = (cmd: string) => sh(`nsenter -t ${gwWg.pid} -m -n sh -c '${cmd}'`);

  beforeAll(async () => {
    for (const tool of ["wireguard-go", "wg", "ip", "nsenter", "curl"]) {
      if (Bun.spawnSync(["sh", "-c", `command -v ${tool}`]).exitCode !== 0) throw new Error(`${tool} is needed`);
    }
    dev = topo.namespace("dev");
    gw = topo.namespace("gw");
    up = topo.namespace("up");
    topo.link(dev, "eth0", `${DEV_UNDERLAY}/30`, gw, "e-dev", `${GW_UNDERLAY}/30`);
    topo.link(gw, "e-up", `${GW_UP}/30`, up, "eth0", `${UP_IP}/30`);

    dir = tempDir("kgw");
    const pki = makeTestPki(path.join(dir, "pki"), ["api.test"]);
    upstream = topo.background(["ip", "netns", "exec", up, BUN, "run", writeScript(dir, "upstream.ts", UPSTREAM_SCRIPT), pki.dir, UP_IP, String(DOWNLOAD_MB)]);
    await upstream.waitForOutput(/UPSTREAM READY/, 15_000);
    sh(`ip -n ${gw} -6 addr add ${GW_UP6}/64 dev e-up nodad && ip -n ${up} -6 addr add ${UP6}/64 dev eth0 nodad`);
    upstream6 = topo.background(["ip", "netns", "exec", up, BUN, "run", path.join(dir, "upstream.ts"), pki.dir, UP6, "1"]);
    await upstream6.waitForOutput(/UPSTREAM READY/, 15_000);

    // The "kernel" WireGuard interface of the gateway. `ip netns exec` binds
    // /etc/netns/<gw>/resolv.conf over /etc/resolv.conf in the mount namespace
    // the gateway will share: its DNS forwarder asks the upstream's resolver.
    netnsEtc = `/etc/netns/${gw}`;
    mkdirSync(netnsEtc, { recursive: true });
    writeFileSync(`${netnsEtc}/resolv.conf`, `nameserver ${UP_IP}\n`);
    gwWg = await topo.wireguardGo(gw);
    // a peer no device owns (left by an earlier run, or revoked while the gateway was down)
    gwWg.wg(`set wg0 peer ${STALE_PEER} allowed-ips 10.89.0.77/32`);

    const config = path.join(dir, "gateway.hcl");
    writeFileSync(
      config,
      `schema_version = 1
gateway {
  state_dir = "state"
  dashboard_listen = "${GW_UNDERLAY}:${DASH_PORT}"
  events { jsonl = "events.jsonl" }
  wireguard {
    mode = "kernel"
    listen = "0.0.0.0:${WG_PORT}"
    subnet_cidr = "${SUBNET}"
    subnet6_cidr = "${SUBNET6}"
    endpoint = "${GW_UNDERLAY}:${WG_PORT}"
    interface = "wg0"
    tun = "cp0"
    tun_offload = true
  }
}
defaults {
  verdict = "allow"
}
endpoint "https" "api" {
  hosts = ["api.test"]
  ca_cert = "${pki.caCertPath}"
  credential = github_token.gh
}
credential "github_token" "gh" {}
profile "laptops" {
  credentials = [github_token.gh]
}
`,
    );
    controlSocket = path.join(dir, "state", "control.sock");
    caPath = path.join(dir, "state", "ca.crt");
    // The gateway shares wireguard-go's mount namespace (its control socket) and network namespace.
    gateway = topo.background(["nsenter", "-t", String(gwWg.pid), "-m", "-n", BUN, path.join(ROOT, "app/main.ts"), "all", "--config", config], {
      cwd: ROOT,
      env: gatewayEnv(),
    });
    await gateway.waitForOutput(/clawpatrol gateway running/, 30_000);

    // Onboarding over the public API, from the device across the underlay.
    const keys = generateKeyPair();
    const api = `http://${GW_UNDERLAY}:${DASH_PORT}`;
    const started = JSON.parse(
      (await devCurl(["-X", "POST", "-H", "content-type: application/json", "-d", JSON.stringify({ name: "k-laptop", public_key: keys.publicKey }), `${api}/api/onboard/start`])).out,
    ) as { code: string; device_code: string };
    expect(started.code).toMatch(/^[A-Z2-9]{4}-[A-Z2-9]{4}$/);
    const approve = await controlFetch(controlSocket, `/api/onboard/${started.code}/approve`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ profile: "laptops", operator: "cli:test" }),
    });
    expect(approve.status).toBe(200);
    const polled = JSON.parse(
      (await devCurl(["-X", "POST", "-H", "content-type: application/json", "-d", JSON.stringify({ device_code: started.device_code }), `${api}/api/onboard/poll`])).out,
    ) as { status: string; device: { address: string; address6?: string }; gateway: { public_key: string; endpoint: string } };
    expect(polled.status).toBe("approved");
    expect(polled.device.address6).toBe(`fd89:${N}::2`);
    expect(polled.gateway.endpoint).toBe(`${GW_UNDERLAY}:${WG_PORT}`);
    // the gateway keyed the kernel interface with its state-directory key
    expect(gwWg.wg("show wg0 public-key")).toBe(polled.gateway.public_key);
    device = { name: "k-laptop", address: polled.device.address, publicKey: keys.publicKey };

    // The device's tunnel, as the client sets it up.
    writeFileSync(path.join(dir, "dev.key"), keys.privateKey + "\n", { mode: 0o600 });
    const devWg = await topo.wireguardGo(dev);
    devWg.wg(`set wg0 private-key ${dir}/dev.key peer ${polled.gateway.public_key} allowed-ips 0.0.0.0/0,::/0 endpoint ${polled.gateway.endpoint} persistent-keepalive 5`);
    sh(`ip -n ${dev} addr add ${device.address}/32 dev wg0 && ip -n ${dev} link set wg0 mtu 1420 up && ip -n ${dev} route add default dev wg0`);
    sh(`ip -n ${dev} -6 addr add ${polled.device.address6}/128 dev wg0 nodad && ip -n ${dev} -6 route add default dev wg0`);
  }, 60_000);

  afterAll(async () => {
    try {
      await gateway?.stop("SIGTERM", 5000);
      if (process.env.CLAWPATROL_TEST_VERBOSE) console.error(gateway?.output());
      await upstream?.stop("SIGTERM", 2000);
      await upstream6?.stop("SIGTERM", 2000);
    } finally {
      topo.destroy();
      if (dir) rmSync(dir, { recursive: true, force: true });
      if (netnsEtc) rmSync(netnsEtc, { recursive: true, force: true });
    }
  });

  function devCurl(args: string[], timeoutMs = 20_000) {
    return topo.exec(dev, ["curl", "-sS", "--max-time", "15", ...args], timeoutMs);
  }
  const seenOf = (b: Background | undefined) =>
    (b?.output() ?? "")
      .split("\n")
      .filter((l) => l.startsWith("SEEN "))
      .map((l) => JSON.parse(l.slice(5)) as { method: string; path: string; headers: Record<string, string> });
  const seen = () => seenOf(upstream);
  const https = (args: string[]) =>
    devCurl(["--cacert", caPath, "--resolve", `api.test:443:${UP_IP}`, "-w", "\n%{http_code}", ...args]);

  test("IPv6: HTTPS from the device's /128 to an IPv6 upstream goes wg0 -> TUN -> interception, credential injected", async () => {
    const r = await devCurl(["-6", "--cacert", caPath, "--resolve", `api.test:443:[${UP6}]`, "-w", "\n%{http_code}", "-H", "Authorization: Bearer ghp_clawpatrol_placeholder_gh", "https://api.test/echo"]);
    expect(r.err).toBe("");
    expect(r.out.endsWith("\n200")).toBe(true);
    await waitFor(() => seenOf(upstream6).length > 0, 2000);
    expect(seenOf(upstream6).at(-1)!.headers["authorization"]).toBe(`Bearer ${SECRET}`);
    expect(inGw("ip -6 rule show")).toMatch(/\biif wg0 lookup 100\b/);
    expect(inGw("ip -6 route show")).toContain(`fd89:${N}::/64 dev wg0`);
  });

  test("the gateway keyed wg0, set the device's peer and routes everything from wg0 into its TUN", () => {
    expect(inGw("ip -4 rule show")).toMatch(/\biif wg0 lookup 100\b/);
    expect(inGw("ip -4 route show table 100")).toMatch(/^default dev cp0\b/m);
    expect(inGw("ip -6 route show table 100")).toMatch(/^default dev cp0\b/m);
    expect(gwWg.wg("show wg0 listen-port")).toBe(String(WG_PORT));
    // exactly the enrolled device: the stale peer was removed at start
    expect(gwWg.wg("show wg0 allowed-ips")).toBe(`${device.publicKey}\t${device.address}/32 fd89:${N}::2/128`);
    expect(gateway!.output()).toContain(STALE_PEER);
    // wg0 has no address: the gateway's tunnel address must reach the TUN, not the local table
    expect(inGw("ip -4 -o addr show dev wg0")).toBe("");
    expect(inGw("ip -o link show cp0")).toMatch(/\bUP\b/);
  });

  test("HTTPS from the device is intercepted and the upstream gets the real credential", async () => {
    const r = await https(["-H", "Authorization: Bearer ghp_clawpatrol_placeholder_gh", "https://api.test/echo"]);
    expect(r.err).toBe("");
    const status = r.out.slice(r.out.lastIndexOf("\n") + 1);
    expect(status).toBe("200");
    await waitFor(() => seen().some((s) => s.path === "/echo"), 2000);
    const last = seen().filter((s) => s.path === "/echo").at(-1)!;
    expect(last.headers["authorization"]).toBe(`Bearer ${SECRET}`);
    expect(r.out).not.toContain(SECRET);
  });

  test("a plain TCP service on another port is relayed", async () => {
    const r = await topo.exec(dev, ["bash", "-c", `exec 3<>/dev/tcp/${UP_IP}/7000; echo through-the-kernel-path >&3; read -t 5 line <&3; echo "$line"`], 15_000);
    expect(r.out.trim()).toBe("through-the-kernel-path");
  });

  test("device DNS to the gateway's tunnel address reaches the stack behind the TUN (and its resolver)", async () => {
    const r = await topo.exec(dev, [BUN, "run", writeScript(dir, "dns-client.ts", DNS_CLIENT_SCRIPT), GW_TUNNEL, "api.test"], 15_000);
    expect(r.out.trim()).toBe(UP_IP);
  });

  test(`a ${DOWNLOAD_MB} MB HTTPS download through the kernel path arrives intact`, async () => {
    const expected = expectedDownloadSha(DOWNLOAD_MB);
    const started = performance.now();
    const r = await topo.exec(dev, [
      "sh", "-c",
      `curl -sS --max-time 40 --cacert ${caPath} --resolve api.test:443:${UP_IP} https://api.test/download?mb=${DOWNLOAD_MB} | sha256sum`,
    ], 45_000);
    const seconds = (performance.now() - started) / 1000;
    expect(r.err).toBe("");
    expect(r.out.split(" ")[0]).toBe(expected);
    const mbit = (DOWNLOAD_MB * 8 * 1.048576) / seconds;
    console.log(`kernel path: ${DOWNLOAD_MB} MiB HTTPS (intercepted) download in ${seconds.toFixed(2)} s = ${mbit.toFixed(0)} Mbit/s`);
  }, 50_000);

  test(`a ${DOWNLOAD_MB} MB plain TCP stream is relayed whole through the kernel path`, async () => {
    const started = performance.now();
    const r = await topo.exec(dev, ["bash", "-c", `timeout 20 cat </dev/tcp/${UP_IP}/7001 | wc -c`], 45_000);
    const seconds = (performance.now() - started) / 1000;
    if (Number(r.out.trim()) !== DOWNLOAD_MB << 20) {
      // a stall: show both ends' TCP state and the links' counters
      const diag = await Promise.all([
        topo.exec(dev, ["ss", "-tino"]),
        topo.exec(gw, ["ss", "-tino"]),
        topo.exec(gw, ["ip", "-s", "link", "show", "cp0"]),
      ]);
      console.error(`relayed ${r.out.trim()} of ${DOWNLOAD_MB << 20} bytes\n${diag.map((d) => d.out).join("\n")}`);
    }
    expect(Number(r.out.trim())).toBe(DOWNLOAD_MB << 20);
    const mbit = (DOWNLOAD_MB * 8 * 1.048576) / seconds;
    console.log(`kernel path: ${DOWNLOAD_MB} MiB relayed TCP in ${seconds.toFixed(2)} s = ${mbit.toFixed(0)} Mbit/s`);
  }, 50_000);

  test("revoking the device removes its peer from wg0 and cuts its traffic", async () => {
    const res = await controlFetch(controlSocket, `/api/devices/${device.name}/revoke`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ operator: "cli:test" }),
    });
    expect(res.status).toBe(200);
    expect(await waitFor(() => gwWg.wg("show wg0 peers") === "", 5000)).toBe(true);
    const r = await https(["--max-time", "3", "https://api.test/echo"]);
    expect(r.out.endsWith("\n200")).toBe(false);
  });

  test("after SIGTERM the policy routing and the TUN are gone; wg0 stays, with no peers", async () => {
    const how = await gateway!.stop("SIGTERM", 10_000);
    expect(how).toBe(0);
    expect(inGw("ip -4 rule show")).not.toMatch(/\biif wg0\b/);
    expect(inGw("ip -6 rule show")).not.toMatch(/\biif wg0\b/);
    expect(inGw("ip -4 route show table 100 2>/dev/null || true")).toBe("");
    expect(inGw("ip link show cp0 2>/dev/null || echo absent")).toBe("absent");
    expect(inGw("ip link show wg0 >/dev/null && echo present")).toBe("present");
    expect(gwWg.wg("show wg0 peers")).toBe("");
  });
});

function gatewayEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("CLAWPATROL_")) env[k] = v;
  return { ...env, CLAWPATROL_SECRET_GH: SECRET };
}

function writeScript(dir: string, name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}
