// The packet plane under stress, end to end through real WireGuard:
//
//   [dev ns] curl / device-probe.ts / python3, wireguard-go wg0
//        ==veth (underlay; nftables loss or the delaying UDP relay on it)==
//   [root ns] the gateway (userspace WireGuard -> our stack -> Flows ->
//             interception or relay); a TLS upstream and plain TCP services
//             on a second address of the host side of the veth
//
// 1. bulk transfers sha256-exact both ways through interception: clean,
//    with 5% random loss each way (nftables `numgen random`, this kernel has
//    no netem), with 5-20 ms random delay (reordering) via udp-relay.ts
// 2. 1,000 concurrent relayed connections; half-close; the upstream's RST
//    reaching the device; an unreachable upstream failing promptly
// 3. QUIC (UDP :443) refused with ICMP; a DNS lookup forwarded to a
//    resolver (through a second plane built with attachStack, because the
//    gateway config has no DNS resolver setting yet: it always uses the
//    host's /etc/resolv.conf, which we must not take over on a shared box)
//
// Sizes (env MATRIX_MB, MATRIX_IMPAIRED_MB): 100 MiB each way in every
// case, as the issue asks. Measured here: clean ~200 Mbit/s down, ~170 up;
// 5% loss ~12 down (our stack sending: SACK recovery), ~120 up; 5-20 ms
// jitter ~40 down, ~14 up (Linux sending into reordering).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import net from "node:net";
import dgram from "node:dgram";
import { createHash, randomBytes } from "node:crypto";
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import dnsPacket from "dns-packet";
import { canRunRootTests, Topology, sh } from "../support/netns.ts";
import { makeTestPki } from "../support/pki.ts";
import { downloadBlock, startUpstream, type TestUpstream } from "../support/upstream.ts";
import { startTestGateway, tempDir, type TestGateway } from "../support/gateway.ts";
import { controlFetch } from "../../../app/control/client.ts";
import { generateKeyPair, startUserspaceWireGuard, type UserspaceWireGuard } from "../../../app/net/wireguard/shell.ts";
import { attachStack, gatewayAddressOf } from "../../../app/net/packet-plane.ts";
import type { NetStack } from "../../../app/net/stack/netstack.ts";

const CLEAN_MB = Number(process.env.MATRIX_MB ?? 100);
const IMPAIRED_MB = Number(process.env.MATRIX_IMPAIRED_MB ?? 100);

const N = 100 + (process.pid % 100);
const HOST_IP = `10.218.${N}.1`;
const DEV_UNDERLAY = `10.218.${N}.2`;
const DNS_HOST_IP = `10.218.${N}.5`;
const DNS_DEV_UNDERLAY = `10.218.${N}.6`;
const UPSTREAM_IP = `10.219.${N}.1`;
const WG_PORT = 30000 + (process.pid % 10000);
const RELAY_PORT = WG_PORT + 1;
const DNS_WG_PORT = WG_PORT + 2;
const ROOT = path.resolve(import.meta.dir, "../../..");
const BUN = path.join(ROOT, "node_modules/.bin/bun");
const PROBE = path.join(ROOT, "test/integration/support/device-probe.ts");
const RELAY = path.join(ROOT, "test/integration/support/udp-relay.ts");

function expectedDownloadSha(mb: number): string {
  const h = createHash("sha256");
  for (let i = 0; i < mb; i++) h.update(downloadBlock(i));
  return h.digest("hex");
}

describe.skipIf(!canRunRootTests)("the tunnel matrix: bulk, impaired, many connections, edge cases", () => {
  const topo = new Topology("cpm");
  let dev = "";
  let t: TestGateway;
  let upstream: TestUpstream;
  const servers: net.Server[] = [];
  let gatewayKey = "";
  let caPath = "";
  let work = "";
  let wgDev: { wg(args: string): string };

  beforeAll(async () => {
    dev = topo.namespace("dev");
    topo.veth(dev, "h", `${HOST_IP}/30`, `${DEV_UNDERLAY}/30`);
    sh(`ip addr add ${UPSTREAM_IP}/32 dev ${topo.hostLink("h")}`);
    work = tempDir("matrix");

    const pki = makeTestPki(tempDir("pki"), ["api.test"]);
    upstream = startUpstream(pki, { hostname: UPSTREAM_IP, port: 443 });
    const listen = (s: net.Server, port: number) => new Promise<void>((r) => s.listen(port, UPSTREAM_IP, () => r()));
    // 7000 echo; 7001 half-close: reply once the device's FIN arrives; 7002 reset on the first bytes.
    servers.push(net.createServer((s) => s.pipe(s)));
    servers.push(
      net.createServer({ allowHalfOpen: true }, (s) => {
        let got = "";
        s.on("data", (d) => (got += d.toString()));
        s.on("end", () => s.end(`upstream saw EOF after ${JSON.stringify(got)}`));
      }),
    );
    servers.push(net.createServer((s) => s.once("data", () => s.resetAndDestroy())));
    await listen(servers[0]!, 7000);
    await listen(servers[1]!, 7001);
    await listen(servers[2]!, 7002);
    for (const s of servers) s.maxConnections = 4096;

    t = await startTestGateway(
      `
defaults {
  verdict = "allow"
}
endpoint "https" "api" {
  hosts = ["api.test"]
  ca_cert = "${pki.caCertPath}"
}
profile "laptops" {}
`,
      {},
      {
        gateway: `
  wireguard {
    mode = "userspace"
    listen = "${HOST_IP}:${WG_PORT}"
    subnet_cidr = "10.87.0.0/24"
    endpoint = "${HOST_IP}:${WG_PORT}"
  }`,
      },
    );
    caPath = t.caPath;

    const keys = generateKeyPair();
    const api = `http://127.0.0.1:${t.gw.publicServer.address.port}`;
    const post = (p: string, body: unknown) =>
      fetch(`${api}${p}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const started = (await (await post("/api/onboard/start", { name: "matrix-dev", public_key: keys.publicKey })).json()) as {
      code: string;
      device_code: string;
    };
    const approve = await controlFetch(t.gw.policy().gateway.controlSocket, `/api/onboard/${started.code}/approve`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ profile: "laptops", operator: "cli:test" }),
    });
    expect(approve.status).toBe(200);
    const polled = (await (await post("/api/onboard/poll", { device_code: started.device_code })).json()) as {
      status: string;
      device: { address: string };
      gateway: { public_key: string; endpoint: string };
    };
    expect(polled.status).toBe("approved");
    gatewayKey = polled.gateway.public_key;

    writeFileSync(path.join(work, "key"), keys.privateKey + "\n", { mode: 0o600 });
    wgDev = await topo.wireguardGo(dev);
    wgDev.wg(`set wg0 private-key ${work}/key peer ${gatewayKey} allowed-ips 0.0.0.0/0 endpoint ${HOST_IP}:${WG_PORT} persistent-keepalive 5`);
    sh(`ip -n ${dev} addr add ${polled.device.address}/32 dev wg0 && ip -n ${dev} link set wg0 mtu 1420 up`);
    sh(`ip -n ${dev} route add 10.219.0.0/16 dev wg0`);
  }, 60_000);

  afterAll(async () => {
    await t?.stop();
    upstream?.stop();
    for (const s of servers) s.close();
    topo.destroy();
  });

  const inDev = (script: string, timeoutMs: number) => topo.exec(dev, ["bash", "-c", `set -o pipefail; ${script}`], timeoutMs);
  const probe = async (args: string[], timeoutMs = 30_000) => {
    const r = await topo.exec(dev, [BUN, PROBE, ...args], timeoutMs);
    if (r.code !== 0) throw new Error(`probe ${args.join(" ")} exited ${r.code}: ${r.err}`);
    return JSON.parse(r.out.trim().split("\n").at(-1)!) as Record<string, unknown>;
  };
  const curl = () => `curl -sS --fail --cacert ${caPath} --resolve api.test:443:${UPSTREAM_IP}`;

  /** Download then upload `mb` MiB through interception; returns the rates in Mbit/s. */
  async function transfer(mb: number, label: string): Promise<void> {
    // 100 MiB at the slowest rate measured (~12 Mbit/s) is ~70 s; leave room.
    const maxSeconds = Math.max(110, mb * 3);
    const timeout = (maxSeconds + 10) * 1000;
    let started = performance.now();
    const down = await inDev(`${curl()} --max-time ${maxSeconds} "https://api.test/download?mb=${mb}" | sha256sum`, timeout);
    const downMs = performance.now() - started;
    expect(down.err).toBe("");
    expect(down.out.split(" ")[0]).toBe(expectedDownloadSha(mb));

    const file = path.join(work, `up-${mb}`);
    const data = randomBytes(mb << 20);
    writeFileSync(file, data);
    const want = createHash("sha256").update(data).digest("hex");
    started = performance.now();
    const up = await inDev(`${curl()} --max-time ${maxSeconds} -H 'content-type: application/octet-stream' --data-binary @${file} https://api.test/upload`, timeout);
    const upMs = performance.now() - started;
    expect(up.err).toBe("");
    expect(JSON.parse(up.out)).toEqual({ sha256: want, size: mb << 20 });
    const rate = (ms: number) => ((mb * 8 * 1.048576) / (ms / 1000)).toFixed(0);
    console.log(`matrix ${label}: ${mb} MiB down ${(downMs / 1000).toFixed(1)} s (${rate(downMs)} Mbit/s), up ${(upMs / 1000).toFixed(1)} s (${rate(upMs)} Mbit/s)`);
  }

  test(`${CLEAN_MB} MiB down and up through interception, sha256-exact`, async () => {
    await transfer(CLEAN_MB, "clean");
  }, 240_000);

  test("1,000 concurrent relayed connections all echo their own bytes", async () => {
    const before = t.gw.tunnel!.plane.stack.stats().tcp.flowsOpened;
    const r = await probe(["storm", UPSTREAM_IP, "7000", "1000"], 90_000);
    console.log(`matrix storm: ${JSON.stringify(r)}`);
    expect(r.failures).toEqual([]);
    expect(r.ok).toBe(1000);
    expect(t.gw.tunnel!.plane.stack.stats().tcp.flowsOpened - before).toBeGreaterThanOrEqual(1000);
  }, 120_000);

  test("half-close: the device shuts its write side and still reads the upstream's reply", async () => {
    const r = await probe(["halfclose", UPSTREAM_IP, "7001"]);
    expect(r).toEqual({ reply: 'upstream saw EOF after "first part, and the rest"' });
  });

  test("the upstream's RST reaches the device as ECONNRESET", async () => {
    const r = await probe(["rst", UPSTREAM_IP, "7002"]);
    console.log(`matrix rst: ${JSON.stringify(r)}`);
    expect(r.error).toBe("ECONNRESET");
    expect(r.ms as number).toBeLessThan(2000);
  });

  test("an unreachable upstream (nobody listens) fails the device's connection in under a second", async () => {
    const r = await probe(["connect", UPSTREAM_IP, "7999"]);
    console.log(`matrix unreachable: ${JSON.stringify(r)}`);
    expect(["ECONNRESET", "ECONNREFUSED"]).toContain(r.error as string);
    expect(r.ms as number).toBeLessThan(1000);
  });

  test("QUIC (UDP :443) is refused at once: the device's socket gets ECONNREFUSED", async () => {
    const py = [
      "import socket, time",
      "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
      `s.connect(("${UPSTREAM_IP}", 443))`,
      "t = time.time()",
      "s.send(b'\\xc0' + b'q' * 1199)",
      "s.settimeout(3)",
      "try:",
      "    s.recv(2048); print('data')",
      "except ConnectionRefusedError:",
      "    print('refused %d' % ((time.time() - t) * 1000))",
      "except socket.timeout:",
      "    print('timeout')",
    ].join("\n");
    const r = await topo.exec(dev, ["python3", "-c", py], 10_000);
    console.log(`matrix quic: ${r.out.trim()}`);
    expect(r.out).toMatch(/^refused \d+/);
    expect(Number(r.out.split(" ")[1])).toBeLessThan(1000);
  });

  // The impaired cases run last: after the delay relay the device's peer has
  // roamed through it, and (seen only in the full suite, where the matrix
  // starts minutes into the run) the cases after it stalled; see the note.
  test(`${IMPAIRED_MB} MiB down and up with 5% random loss each way on the underlay`, async () => {
    const table = `${topo.prefix}loss`;
    sh(`ip netns exec ${dev} nft add table inet ${table}`);
    try {
      sh(`ip netns exec ${dev} nft 'add chain inet ${table} out { type filter hook output priority 0; }'`);
      sh(`ip netns exec ${dev} nft 'add chain inet ${table} in { type filter hook input priority 0; }'`);
      sh(`ip netns exec ${dev} nft add rule inet ${table} out udp dport ${WG_PORT} numgen random mod 100 '<' 5 counter drop`);
      sh(`ip netns exec ${dev} nft add rule inet ${table} in udp sport ${WG_PORT} numgen random mod 100 '<' 5 counter drop`);
      await transfer(IMPAIRED_MB, "5% loss");
      const counters = sh(`ip netns exec ${dev} nft list table inet ${table}`).match(/packets \d+/g) ?? [];
      console.log(`matrix 5% loss: dropped out/in ${counters.join(", ")}`);
      expect(counters.length).toBe(2);
      for (const c of counters) expect(Number(c.split(" ")[1])).toBeGreaterThan(0);
    } finally {
      sh(`ip netns exec ${dev} nft delete table inet ${table}`);
    }
  }, 720_000);

  test(`${IMPAIRED_MB} MiB down and up with 5-20 ms random delay (reordering) on the underlay`, async () => {
    const relay: ChildProcess = spawn(BUN, [RELAY, HOST_IP, String(RELAY_PORT), HOST_IP, String(WG_PORT), "5", "20"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let relayOut = "";
    relay.stdout!.on("data", (d) => (relayOut += d));
    try {
      const deadline = Date.now() + 5000;
      while (!relayOut.includes("ready") && Date.now() < deadline) await Bun.sleep(20);
      expect(relayOut).toContain("ready");
      wgDev.wg(`set wg0 peer ${gatewayKey} endpoint ${HOST_IP}:${RELAY_PORT}`);
      await transfer(IMPAIRED_MB, "5-20 ms delay");
    } finally {
      wgDev.wg(`set wg0 peer ${gatewayKey} endpoint ${HOST_IP}:${WG_PORT}`);
      const exited = new Promise((r) => relay.once("exit", r));
      relay.kill("SIGTERM");
      await exited;
    }
    const counters = JSON.parse(relayOut.split("\n").filter((l) => l.startsWith("{")).at(-1) ?? "{}") as Record<string, number>;
    console.log(`matrix delay relay: ${JSON.stringify(counters)}`);
    expect(counters.toTarget).toBeGreaterThan(IMPAIRED_MB * 300);
    expect(counters.toClient).toBeGreaterThan(IMPAIRED_MB * 300);
    expect(counters.reordered).toBeGreaterThan(IMPAIRED_MB * 50);
  }, 720_000);

});

describe.skipIf(!canRunRootTests)("a DNS lookup from a device through the tunnel", () => {
  // The gateway's config has no resolver setting (the tunnel forwards :53 to
  // the host's resolv.conf nameserver), so this builds the same plane the
  // gateway does, with attachStack, and points it at a stub resolver.
  const topo = new Topology("cpq");
  let ns = "";
  let wg: UserspaceWireGuard;
  let stack: NetStack;
  let resolver: dgram.Socket;
  let queries = 0;
  const GW_ADDR = gatewayAddressOf("10.86.0.0/24");

  beforeAll(async () => {
    ns = topo.namespace("dns");
    topo.veth(ns, "d", `${DNS_HOST_IP}/30`, `${DNS_DEV_UNDERLAY}/30`);
    resolver = dgram.createSocket("udp4");
    resolver.on("message", (m, rinfo) => {
      queries++;
      const q = dnsPacket.decode(m);
      const answer = dnsPacket.encode({
        type: "response",
        id: q.id,
        flags: dnsPacket.RECURSION_AVAILABLE,
        questions: q.questions,
        answers: [{ type: "A", name: q.questions![0]!.name, ttl: 60, data: "192.0.2.77" }],
      });
      resolver.send(answer, rinfo.port, rinfo.address);
    });
    await new Promise<void>((r) => resolver.bind(0, "127.0.0.1", () => r()));

    const gwKeys = generateKeyPair();
    const devKeys = generateKeyPair();
    wg = await startUserspaceWireGuard({
      listen: { host: DNS_HOST_IP, port: DNS_WG_PORT },
      privateKey: gwKeys.privateKey,
      peers: [{ publicKey: devKeys.publicKey, allowedIPs: ["10.86.0.2/32"] }],
    });
    stack = attachStack(wg.link, GW_ADDR, {
      stateDir: tempDir("dnsplane"),
      onFlow: (f) => f.conn.destroy(),
      identify: () => ({ name: "dns-dev", profile: "p" }),
      udpPolicy: () => "drop",
      dnsResolver: `127.0.0.1:${resolver.address().port}`,
    });
    const dir = tempDir("dnsdev");
    writeFileSync(path.join(dir, "key"), devKeys.privateKey + "\n", { mode: 0o600 });
    const dwg = await topo.wireguardGo(ns);
    dwg.wg(`set wg0 private-key ${dir}/key peer ${gwKeys.publicKey} allowed-ips 0.0.0.0/0 endpoint ${DNS_HOST_IP}:${DNS_WG_PORT}`);
    sh(`ip -n ${ns} addr add 10.86.0.2/32 dev wg0 && ip -n ${ns} link set wg0 mtu 1420 up`);
    sh(`ip -n ${ns} route add ${GW_ADDR}/32 dev wg0`);
  }, 30_000);

  afterAll(() => {
    stack?.close();
    wg?.close();
    resolver?.close();
    topo.destroy();
  });

  test("an A query to the gateway's tunnel address is answered by the configured resolver", async () => {
    const r = await topo.exec(ns, [BUN, PROBE, "dns", GW_ADDR, "53", "api.example.test"], 15_000);
    const res = JSON.parse(r.out.trim()) as { id: number; answers: { name: string; type: string; data: string }[]; ms: number };
    console.log(`matrix dns: ${r.out.trim()}`);
    expect(res.id).toBe(4242);
    expect(res.answers).toEqual([{ name: "api.example.test", type: "A", data: "192.0.2.77" }]);
    expect(queries).toBe(1);
    expect(stack.stats().udp.dnsAnswered).toBe(1);
  });
});
