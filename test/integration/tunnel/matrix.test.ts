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
import dgram from "node:dgram";
import { writeFileSync } from "node:fs";
import path from "node:path";
import dnsPacket from "dns-packet";
import { canRunRootTests, Topology, sh } from "../support/netns.ts";
import { makeTestPki } from "../support/pki.ts";
import { startUpstream, type TestUpstream } from "../support/upstream.ts";
import { startTestGateway, tempDir, type TestGateway } from "../support/gateway.ts";
import {
  CLEAN_MB,
  IMPAIRED_MB,
  deviceShell,
  probe as probeIn,
  quicProbe,
  startDelayRelay,
  startEdgeServers,
  transfer as transferThrough,
  withUnderlayLoss,
  type EdgeServers,
} from "../support/tunnel-matrix.ts";
import { controlFetch } from "../../../app/control/client.ts";
import { generateKeyPair, startUserspaceWireGuard, type UserspaceWireGuard } from "../../../app/net/wireguard/shell.ts";
import { attachStack, gatewayAddressOf } from "../../../app/net/packet-plane.ts";
import type { NetStack } from "../../../app/net/stack/netstack.ts";

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

describe.skipIf(!canRunRootTests)("the tunnel matrix: bulk, impaired, many connections, edge cases", () => {
  const topo = new Topology("cpm");
  let dev = "";
  let t: TestGateway;
  let upstream: TestUpstream;
  let edge: EdgeServers;
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
    // 7000 echo; 7001 half-close: reply once the device's FIN arrives; 7002 reset on the first bytes.
    edge = await startEdgeServers(UPSTREAM_IP);

    t = await startTestGateway(
      `
defaults {
  verdict = "allow"
  # the upstreams are addresses of the gateway host here (the host side of the veth)
  allow_destinations = ["${UPSTREAM_IP}"]
  # the storm opens 1,000 relayed connections from one device at once
  quota_tcp_flows = 2048
  quota_new_flows_per_second = 1000
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
    edge?.close();
    topo.destroy();
  });

  const probe = (args: string[], timeoutMs = 30_000) => probeIn(topo, dev, args, timeoutMs);
  const transfer = (mb: number, label: string) =>
    transferThrough({ inDev: deviceShell(topo, dev), curl: `curl -sS --fail --cacert ${caPath} --resolve api.test:443:${UPSTREAM_IP}`, work, mb, label: `matrix ${label}` });

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
    const out = await quicProbe(topo, dev, UPSTREAM_IP);
    console.log(`matrix quic: ${out}`);
    expect(out).toMatch(/^refused \d+/);
    expect(Number(out.split(" ")[1])).toBeLessThan(1000);
  });

  // The impaired cases run last: after the delay relay the device's peer has
  // roamed through it, and (seen only in the full suite, where the matrix
  // starts minutes into the run) the cases after it stalled; see the note.
  test(`${IMPAIRED_MB} MiB down and up with 5% random loss each way on the underlay`, async () => {
    const dropped = await withUnderlayLoss(dev, `${topo.prefix}loss`, WG_PORT, () => transfer(IMPAIRED_MB, "5% loss"));
    console.log(`matrix 5% loss: dropped out/in ${dropped.join(", ")}`);
    expect(dropped.length).toBe(2);
    for (const c of dropped) expect(c).toBeGreaterThan(0);
  }, 720_000);

  test(`${IMPAIRED_MB} MiB down and up with 5-20 ms random delay (reordering) on the underlay`, async () => {
    const relay = await startDelayRelay({ host: HOST_IP, port: RELAY_PORT }, { host: HOST_IP, port: WG_PORT });
    let counters: Record<string, number> = {};
    try {
      wgDev.wg(`set wg0 peer ${gatewayKey} endpoint ${HOST_IP}:${RELAY_PORT}`);
      await transfer(IMPAIRED_MB, "5-20 ms delay");
    } finally {
      // The relay goes first: a datagram it still held, arriving after the
      // endpoint moved back, would make the device roam back to it (WireGuard
      // follows the source of authenticated packets), onto a dead socket.
      counters = await relay.stop();
      wgDev.wg(`set wg0 peer ${gatewayKey} endpoint ${HOST_IP}:${WG_PORT}`);
    }
    console.log(`matrix delay relay: ${JSON.stringify(counters)}`);
    expect(counters.toTarget).toBeGreaterThan(IMPAIRED_MB * 300);
    expect(counters.toClient).toBeGreaterThan(IMPAIRED_MB * 300);
    expect(counters.reordered).toBeGreaterThan(IMPAIRED_MB * 50);
  }, 720_000);

  test("after the impairments (and the endpoint moving back from the relay) the tunnel still carries new flows", async () => {
    const r = await probe(["storm", UPSTREAM_IP, "7000", "20", "20000"], 60_000);
    expect(r.failures).toEqual([]);
    expect(r.ok).toBe(20);
  }, 70_000);

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
