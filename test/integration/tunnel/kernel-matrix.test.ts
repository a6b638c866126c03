// The tunnel matrix (matrix.test.ts) against a kernel-mode gateway:
//
//   [dev] curl / device-probe.ts / python3, wireguard-go wg0
//     eth0 10.218.N.2 ==veth (underlay; nftables loss here)== e-dev 10.218.N.1
//   [gw]  wireguard-go as the "kernel" wg0 on :51820; the delaying UDP relay
//         on :51821 (the device's endpoint in the jitter case); the gateway
//         (`clawpatrol-gateway all`, mode = "kernel", run with nsenter in
//         wireguard-go's mount+net namespace): wg0 -> policy routing -> TUN
//         cp0 -> our stack -> interception or relay
//     eth0 10.221.M.2 ==veth== 10.221.M.1 [root ns] this test's TLS upstream
//         (api.test) and the edge servers (echo, half-close, reset)
//
// Cases and sizes as in matrix.test.ts (MATRIX_MB, MATRIX_IMPAIRED_MB; 100 MiB
// each way; the impaired cases last). Measured here (2 cores, whole file
// ~160 s): clean ~147 Mbit/s down, ~130 up; 5% loss ~13 down (our stack
// sending), ~130 up; 5-20 ms jitter ~50 down, ~17 up; 1,000 connections in
// ~1.2 s.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { canRunRootTests, Topology, sh, type Background, type WireguardGo } from "../support/netns.ts";
import { makeTestPki } from "../support/pki.ts";
import { startUpstream, type TestUpstream } from "../support/upstream.ts";
import { tempDir } from "../support/gateway.ts";
import {
  CLEAN_MB,
  IMPAIRED_MB,
  deviceShell,
  probe,
  quicProbe,
  startDelayRelay,
  startEdgeServers,
  transfer,
  withUnderlayLoss,
  type EdgeServers,
  type InDevice,
} from "../support/tunnel-matrix.ts";
import { controlFetch } from "../../../app/control/client.ts";
import { generateKeyPair } from "../../../app/net/wireguard/keys.ts";

const ROOT = path.resolve(import.meta.dir, "../../..");
const BUN = path.join(ROOT, "node_modules/.bin/bun");
const N = 10 + (process.pid % 200);
const M = 1 + (process.pid % 250);
const GW_UNDERLAY = `10.218.${N}.1`;
const DEV_UNDERLAY = `10.218.${N}.2`;
// the upstream side lives in the root namespace: its address must not collide with other runs'
const UP_IP = `10.221.${M}.1`;
const GW_UP = `10.221.${M}.2`;
const SUBNET = "10.88.0.0/24";
const WG_PORT = 51820;
const RELAY_PORT = 51821;
const DASH_PORT = 8080;

describe.skipIf(!canRunRootTests)("the tunnel matrix through a kernel-mode gateway", () => {
  const topo = new Topology("ckm");
  let dev = "";
  let gw = "";
  let dir = "";
  let gwWg: WireguardGo;
  let devWg: WireguardGo;
  let gateway: Background | undefined;
  let upstream: TestUpstream | undefined;
  let edge: EdgeServers | undefined;
  let gatewayKey = "";
  let curl = "";
  let inDev: InDevice;

  beforeAll(async () => {
    for (const tool of ["wireguard-go", "wg", "ip", "nsenter", "curl", "nft", "python3"]) {
      if (Bun.spawnSync(["sh", "-c", `command -v ${tool}`]).exitCode !== 0) throw new Error(`${tool} is needed`);
    }
    dev = topo.namespace("dev");
    gw = topo.namespace("gw");
    topo.link(dev, "eth0", `${DEV_UNDERLAY}/30`, gw, "e-dev", `${GW_UNDERLAY}/30`);
    topo.veth(gw, "u", `${UP_IP}/30`, `${GW_UP}/30`);
    inDev = deviceShell(topo, dev);

    dir = tempDir("kmatrix");
    mkdirSync(path.join(dir, "work"));
    const pki = makeTestPki(path.join(dir, "pki"), ["api.test"]);
    upstream = startUpstream(pki, { hostname: UP_IP, port: 443 });
    edge = await startEdgeServers(UP_IP);

    gwWg = await topo.wireguardGo(gw);
    const config = path.join(dir, "gateway.hcl");
    writeFileSync(
      config,
      `schema_version = 1
gateway {
  state_dir = "state"
  dashboard_listen = "${GW_UP}:${DASH_PORT}"
  events { jsonl = "events.jsonl" }
  wireguard {
    mode = "kernel"
    listen = "0.0.0.0:${WG_PORT}"
    subnet_cidr = "${SUBNET}"
    endpoint = "${GW_UNDERLAY}:${WG_PORT}"
    interface = "wg0"
    tun = "cp0"
  }
}
defaults {
  verdict = "allow"
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
    );
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("CLAWPATROL_")) env[k] = v;
    // The gateway shares wireguard-go's mount namespace (its control socket) and network namespace.
    gateway = topo.background(["nsenter", "-t", String(gwWg.pid), "-m", "-n", BUN, path.join(ROOT, "app/main.ts"), "all", "--config", config], { cwd: ROOT, env });
    await gateway.waitForOutput(/clawpatrol gateway running/, 30_000);

    // Onboarding over the public API (reached over the upstream link), approval over the control socket.
    const keys = generateKeyPair();
    const post = async (p: string, body: unknown) =>
      (await fetch(`http://${GW_UP}:${DASH_PORT}${p}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })).json();
    const started = (await post("/api/onboard/start", { name: "km-laptop", public_key: keys.publicKey })) as { code: string; device_code: string };
    const approve = await controlFetch(path.join(dir, "state", "control.sock"), `/api/onboard/${started.code}/approve`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ profile: "laptops", operator: "cli:test" }),
    });
    expect(approve.status).toBe(200);
    const polled = (await post("/api/onboard/poll", { device_code: started.device_code })) as {
      status: string;
      device: { address: string };
      gateway: { public_key: string; endpoint: string };
    };
    expect(polled.status).toBe("approved");
    gatewayKey = polled.gateway.public_key;

    writeFileSync(path.join(dir, "dev.key"), keys.privateKey + "\n", { mode: 0o600 });
    devWg = await topo.wireguardGo(dev);
    devWg.wg(`set wg0 private-key ${dir}/dev.key peer ${gatewayKey} allowed-ips 0.0.0.0/0 endpoint ${polled.gateway.endpoint} persistent-keepalive 5`);
    sh(`ip -n ${dev} addr add ${polled.device.address}/32 dev wg0 && ip -n ${dev} link set wg0 mtu 1420 up && ip -n ${dev} route add default dev wg0`);
    curl = `curl -sS --fail --cacert ${path.join(dir, "state", "ca.crt")} --resolve api.test:443:${UP_IP}`;
  }, 60_000);

  afterAll(async () => {
    try {
      const how = await gateway?.stop("SIGTERM", 10_000);
      if (how !== 0 || process.env.CLAWPATROL_TEST_VERBOSE) console.error(`kernel matrix gateway ended ${how}:\n${gateway?.output().slice(-4000)}`);
      upstream?.stop();
      edge?.close();
    } finally {
      topo.destroy();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  });

  const work = () => path.join(dir, "work");

  test(`${CLEAN_MB} MiB down and up through interception, sha256-exact`, async () => {
    await transfer({ inDev, curl, work: work(), mb: CLEAN_MB, label: "kernel matrix clean" });
  }, 240_000);

  test("1,000 concurrent relayed connections all echo their own bytes", async () => {
    const before = edge!.accepted.echo;
    const r = await probe(topo, dev, ["storm", UP_IP, "7000", "1000"], 90_000);
    console.log(`kernel matrix storm: ${JSON.stringify(r)}`);
    expect(r.failures).toEqual([]);
    expect(r.ok).toBe(1000);
    // each one was a flow of its own through the gateway's relay
    expect(edge!.accepted.echo - before).toBe(1000);
  }, 120_000);

  test("half-close: the device shuts its write side and still reads the upstream's reply", async () => {
    const r = await probe(topo, dev, ["halfclose", UP_IP, "7001"]);
    expect(r).toEqual({ reply: 'upstream saw EOF after "first part, and the rest"' });
  });

  test("the upstream's RST reaches the device as ECONNRESET", async () => {
    const r = await probe(topo, dev, ["rst", UP_IP, "7002"]);
    console.log(`kernel matrix rst: ${JSON.stringify(r)}`);
    expect(r.error).toBe("ECONNRESET");
    expect(r.ms as number).toBeLessThan(2000);
  });

  test("an unreachable upstream (nobody listens) fails the device's connection in under a second", async () => {
    const r = await probe(topo, dev, ["connect", UP_IP, "7999"]);
    console.log(`kernel matrix unreachable: ${JSON.stringify(r)}`);
    expect(["ECONNRESET", "ECONNREFUSED"]).toContain(r.error as string);
    expect(r.ms as number).toBeLessThan(1000);
  });

  test("QUIC (UDP :443) is refused at once: the device's socket gets ECONNREFUSED", async () => {
    const out = await quicProbe(topo, dev, UP_IP);
    console.log(`kernel matrix quic: ${out}`);
    expect(out).toMatch(/^refused \d+/);
    expect(Number(out.split(" ")[1])).toBeLessThan(1000);
  });

  test(`${IMPAIRED_MB} MiB down and up with 5% random loss each way on the underlay`, async () => {
    const dropped = await withUnderlayLoss(dev, `${topo.prefix}loss`, WG_PORT, () =>
      transfer({ inDev, curl, work: work(), mb: IMPAIRED_MB, label: "kernel matrix 5% loss" }),
    );
    console.log(`kernel matrix 5% loss: dropped out/in ${dropped.join(", ")}`);
    expect(dropped.length).toBe(2);
    for (const c of dropped) expect(c).toBeGreaterThan(0);
  }, 720_000);

  test(`${IMPAIRED_MB} MiB down and up with 5-20 ms random delay (reordering) on the underlay`, async () => {
    // The relay sits in front of wg0 in the gateway's namespace; the device's endpoint becomes the relay.
    const relay = await startDelayRelay({ host: GW_UNDERLAY, port: RELAY_PORT }, { host: GW_UNDERLAY, port: WG_PORT }, ["ip", "netns", "exec", gw]);
    let counters: Record<string, number> = {};
    try {
      devWg.wg(`set wg0 peer ${gatewayKey} endpoint ${GW_UNDERLAY}:${RELAY_PORT}`);
      await transfer({ inDev, curl, work: work(), mb: IMPAIRED_MB, label: "kernel matrix 5-20 ms delay" });
    } finally {
      // The relay goes first: a datagram it still held, arriving after the
      // endpoint moved back, would make the device roam back to it (WireGuard
      // follows the source of authenticated packets), onto a dead socket.
      counters = await relay.stop();
      devWg.wg(`set wg0 peer ${gatewayKey} endpoint ${GW_UNDERLAY}:${WG_PORT}`);
    }
    console.log(`kernel matrix delay relay: ${JSON.stringify(counters)}`);
    expect(counters.toTarget).toBeGreaterThan(IMPAIRED_MB * 300);
    expect(counters.toClient).toBeGreaterThan(IMPAIRED_MB * 300);
    expect(counters.reordered).toBeGreaterThan(IMPAIRED_MB * 50);
  }, 720_000);

  test("after the impairments (and the endpoint moving back from the relay) the tunnel still carries new flows", async () => {
    const r = await probe(topo, dev, ["storm", UP_IP, "7000", "20", "20000"], 60_000);
    expect(r.failures).toEqual([]);
    expect(r.ok).toBe(20);
  }, 70_000);

});
