// `make bench-netstack`: iperf3 through the packet plane, beside the kernel,
// on one path. This process's root namespace plays the gateway:
//
//   [dev]  iperf3 -c ==veth h== [root: the gateway] ==veth s== [srv] iperf3 -s
//
//   1. kernel: the root namespace forwards dev -> srv (plain routing)
//   2. TUN + our stack: packets from dev are policy-routed into a TUN
//      (`ip rule iif h lookup T; default dev tun table T`, kernel mode's
//      routing without WireGuard); our TCP/IP stack terminates them and
//      this process relays each Flow to srv from its own sockets
//   3. wireguard-go + kernel: dev's wireguard-go to a wireguard-go in the
//      root namespace, whose decrypted packets the kernel forwards to srv
//   4. ours: dev's wireguard-go to our userspace WireGuard + our stack in
//      this process, Flows relayed to srv as in 2
//
//   5. (last) gateway sends at LOSS_PCT% loss (default 5; nftables `numgen random`
//      in dev, each way): download through 2 (our stack sends to dev)
//      against download through 1 (Linux's sender on the same impaired path)
//
// Each case runs upload (dev -> srv) and download (-R), one TCP stream.
// Printed: Mbit/s, the ratios the issue sets goals for ((2)/(1) >= 0.3,
// (4)/(3) >= 1.0), and this process's CPU per MiB in cases 2 and 4
// (wireguard-go and iperf3 are other processes).
//
// Root only; not part of `make test`. It sets net.ipv4.ip_forward in the
// root namespace for the run and puts the old value back. SECONDS=N sets
// each iperf3 run's length (default 5). BENCH_ONLY=loss runs case 5 alone,
// BENCH_ONLY=wg case 4 alone (for profiling: bun --cpu-prof), BENCH_ONLY=rss
// case 6 alone.
//
//   6. RSS of this process (the gateway's stack and relay) with 1,000 and
//      10,000 concurrent TCP flows through TUN + our stack, each relayed
//      to a server in srv after one line each way, then held idle.
import net from "node:net";
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Topology, sh, isRoot, waitFor } from "../integration/support/netns.ts";
import { tempDir } from "../integration/support/gateway.ts";
import { generateKeyPair, startUserspaceWireGuard } from "../../app/net/wireguard/shell.ts";
import { attachStack, gatewayAddressOf, type PacketPlaneDeps } from "../../app/net/packet-plane.ts";
import { openTun } from "../../app/net/tun/tun.ts";

if (!isRoot) {
  console.error("bench-netstack: needs root (network namespaces)");
  process.exit(1);
}
const SECONDS = Number(process.env.SECONDS_PER_RUN ?? process.env.SECONDS ?? 5);
const ONLY_LOSS = process.env.BENCH_ONLY === "loss";
const ONLY_WG = process.env.BENCH_ONLY === "wg";
const ONLY_RSS = process.env.BENCH_ONLY === "rss";
/** FLOWS=200 (the smoke test) for a quick case 6. */
const FLOW_COUNTS = (process.env.FLOWS ?? "1000,10000").split(",").map(Number);
const FLOW_PORT = 5202;
const LOSS_PCT = Number(process.env.LOSS_PCT ?? 5);
const N = 100 + (process.pid % 100);
const DEV_GW = `10.220.${N}.1`; // root side of the dev link
const DEV_IP = `10.220.${N}.2`;
const SRV_GW = `10.221.${N}.1`; // root side of the srv link
const SERVER_IP = `10.221.${N}.2`;
const WG_PORT_GO = 45000 + (process.pid % 5000);
const WG_PORT_OURS = WG_PORT_GO + 1;
const IPERF_PORT = 5201;
const TABLE = 200 + (process.pid % 50);
const topo = new Topology("cpb");
const TUN = `${topo.prefix}t`.slice(0, 15);
const WG_GO_IF = `${topo.prefix}w`.slice(0, 15);

interface Run {
  mbps: number;
  bytes: number;
  cpuMs?: number;
}

async function iperf(ns: string, reverse: boolean, measureCpu: boolean): Promise<Run> {
  const cpu0 = process.cpuUsage();
  const args = ["ip", "netns", "exec", ns, "iperf3", "-c", SERVER_IP, "-p", String(IPERF_PORT), "-t", String(SECONDS), "-J", ...(reverse ? ["-R"] : [])];
  // Async, so this process keeps running the stack while iperf3 runs.
  const p = Bun.spawn(args, { stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  const cpu = process.cpuUsage(cpu0);
  let j: { end?: { sum_received?: { bits_per_second: number; bytes: number } }; error?: string };
  try {
    j = JSON.parse(out);
  } catch {
    throw new Error(`iperf3 failed: ${err || out}`);
  }
  if (!j.end?.sum_received) throw new Error(`iperf3: ${j.error ?? err}`);
  const run: Run = { mbps: j.end.sum_received.bits_per_second / 1e6, bytes: j.end.sum_received.bytes };
  if (measureCpu) run.cpuMs = (cpu.user + cpu.system) / 1000;
  return run;
}

async function both(ns: string, measureCpu: boolean): Promise<[Run, Run]> {
  const up = await iperf(ns, false, measureCpu);
  const down = await iperf(ns, true, measureCpu);
  return [up, down];
}

function line(label: string, r: Run): string {
  const mb = r.bytes / (1 << 20);
  const cpu = r.cpuMs !== undefined ? `  gateway CPU ${(r.cpuMs / 1000).toFixed(2)} s = ${(r.cpuMs / mb).toFixed(2)} ms/MiB (${((r.cpuMs / (SECONDS * 1000)) * 100).toFixed(0)}% of a core)` : "";
  return `${label.padEnd(36)} ${r.mbps.toFixed(0).padStart(6)} Mbit/s  ${mb.toFixed(0).padStart(6)} MiB${cpu}`;
}

/** The relay's sockets to srv, ended with their stack so iperf3's server is free for the next run. */
const upstreams = new Set<net.Socket>();

/** Our stack's Flows become plain pipes to the real destination (the gateway's relay, minus dispatch). */
function relayDeps(stateDir: string): PacketPlaneDeps {
  return {
    stateDir,
    identify: () => ({ name: "bench", profile: "bench" }),
    udpPolicy: () => "drop",
    onFlow: (f) => {
      const up = net.connect({ host: f.dst.host, port: f.dst.port, allowHalfOpen: true });
      upstreams.add(up);
      up.once("close", () => upstreams.delete(up));
      up.setNoDelay(true);
      f.conn.pipe(up);
      up.pipe(f.conn);
      const kill = () => {
        f.conn.destroy();
        up.destroy();
      };
      up.on("error", kill);
      f.conn.on("error", kill);
    },
  };
}

/** wireguard-go as `ifname` in the root namespace, with its own /run/wireguard. */
async function rootWireguardGo(ifname: string) {
  mkdirSync("/run/wireguard", { recursive: true });
  const child = spawn("unshare", ["-m", "--propagation", "private", "sh", "-c", `mount -t tmpfs x /run/wireguard && exec wireguard-go -f ${ifname}`], {
    stdio: "ignore",
    env: { ...process.env, WG_PROCESS_FOREGROUND: "1" },
  });
  if (!(await waitFor(() => spawnSync("ip", ["link", "show", ifname]).status === 0, 5000))) throw new Error("wireguard-go did not create its interface");
  const pid = child.pid!;
  await waitFor(() => spawnSync("nsenter", ["-t", String(pid), "-m", "wg", "show", ifname]).status === 0, 5000);
  return { child, wg: (args: string) => sh(`nsenter -t ${pid} -m wg ${args}`) };
}

/** Download (dev <- srv) with LOSS_PCT% of dev's packets dropped each way: kernel forwarding, then TUN + our stack. */
async function gatewaySendsUnderLoss(dev: string, devLink: string): Promise<[Run, Run]> {
  const nft = (rule: string) => sh(`ip netns exec ${dev} nft ${rule}`);
  const table = `${topo.prefix}loss`;
  nft(`add table inet ${table}`);
  try {
    nft(`'add chain inet ${table} out { type filter hook output priority 0; }'`);
    nft(`'add chain inet ${table} in { type filter hook input priority 0; }'`);
    nft(`add rule inet ${table} out ip daddr ${SERVER_IP} numgen random mod 100 '<' ${LOSS_PCT} drop`);
    nft(`add rule inet ${table} in ip saddr ${SERVER_IP} numgen random mod 100 '<' ${LOSS_PCT} drop`);
    sh(`ip -n ${dev} route replace ${SERVER_IP}/32 via ${DEV_GW}`); // after case 4 it went via wg0
    try {
      const kernel = await iperf(dev, true, false);
      const tun = openTun({ name: TUN });
      sh(`ip link set dev ${TUN} addrgenmode none && ip link set dev ${TUN} mtu 1500 up`);
      for (const scope of ["all", TUN]) writeFileSync(`/proc/sys/net/ipv4/conf/${scope}/rp_filter`, "0");
      const tunStack = attachStack(tun, "10.84.0.1", relayDeps(tempDir("bench-loss")));
      sh(`ip rule add iif ${devLink} lookup ${TABLE} pref ${TABLE} && ip route add default dev ${TUN} table ${TABLE}`);
      try {
        const ours = await iperf(dev, true, true);
        console.log(`stack tcp (case 5): ${JSON.stringify({ ...tunStack.stats().tcp, connections: undefined })}`);
        console.log(`link (case 5): ${JSON.stringify(tun.stats)}  stack drops: ${JSON.stringify(tunStack.stats().drops)}`);
        return [kernel, ours];
      } finally {
        sh(`ip rule del iif ${devLink} lookup ${TABLE} pref ${TABLE}; ip route flush table ${TABLE}`);
        tunStack.close();
        tun.close();
        for (const up of upstreams) up.destroy();
      }
    } finally {
      sh(`ip -n ${dev} route del ${SERVER_IP}/32 via ${DEV_GW}`);
    }
  } finally {
    nft(`delete table inet ${table}`);
  }
}

function rssMb(): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Case 6: this process's RSS idle, then with each of FLOW_COUNTS flows open through TUN + our stack. */
async function flowsRss(dev: string, srv: string, devLink: string): Promise<string[]> {
  const lines: string[] = [];
  const server = topo.background(["ip", "netns", "exec", srv, process.execPath, path.join(import.meta.dir, "flows-server.ts"), SERVER_IP, String(FLOW_PORT)]);
  await server.waitForOutput(/listening/, 10_000);
  sh(`ip -n ${dev} route replace ${SERVER_IP}/32 via ${DEV_GW}`);
  const tun = openTun({ name: TUN });
  sh(`ip link set dev ${TUN} addrgenmode none && ip link set dev ${TUN} mtu 1500 up`);
  for (const scope of ["all", TUN]) writeFileSync(`/proc/sys/net/ipv4/conf/${scope}/rp_filter`, "0");
  const stack = attachStack(tun, "10.84.0.1", relayDeps(tempDir("bench-rss")));
  sh(`ip rule add iif ${devLink} lookup ${TABLE} pref ${TABLE} && ip route add default dev ${TUN} table ${TABLE}`);
  try {
    Bun.gc(true);
    lines.push(`6 RSS idle (stack attached, no flows)     ${rssMb().toFixed(0).padStart(6)} MB`);
    for (const n of FLOW_COUNTS) {
      const client = topo.background(["ip", "netns", "exec", dev, process.execPath, path.join(import.meta.dir, "flows-client.ts"), SERVER_IP, String(FLOW_PORT), String(n)]);
      try {
        await client.waitForOutput(/ready \d+/, 180_000);
        Bun.gc(true);
        const flows = stack.stats().tcp.flows;
        lines.push(`6 RSS with ${String(n).padStart(6)} flows open (${flows} in the stack) ${rssMb().toFixed(0).padStart(6)} MB   (goal 10k <= 300 MB)`);
      } finally {
        await client.stop();
      }
      if (!(await waitFor(() => stack.stats().tcp.flows === 0, 60_000))) lines.push(`6 (${stack.stats().tcp.flows} flows still closing 60 s after the client ended)`);
    }
  } finally {
    sh(`ip rule del iif ${devLink} lookup ${TABLE} pref ${TABLE}; ip route flush table ${TABLE}`);
    stack.close();
    tun.close();
    for (const up of upstreams) up.destroy();
    sh(`ip -n ${dev} route del ${SERVER_IP}/32 via ${DEV_GW}`);
    await server.stop();
  }
  return lines;
}

const forwardFile = "/proc/sys/net/ipv4/ip_forward";
const forwardBefore = readFileSync(forwardFile, "utf8").trim();
let wgGo: Awaited<ReturnType<typeof rootWireguardGo>> | undefined;
try {
  writeFileSync(forwardFile, "1");
  const dev = topo.namespace("dev");
  const srv = topo.namespace("srv");
  topo.veth(dev, "h", `${DEV_GW}/30`, `${DEV_IP}/30`);
  topo.veth(srv, "s", `${SRV_GW}/30`, `${SERVER_IP}/30`);
  const devLink = topo.hostLink("h");
  sh(`ip -n ${srv} route add default via ${SRV_GW}`);
  const iperfServer = topo.background(["ip", "netns", "exec", srv, "iperf3", "-s", "-B", SERVER_IP, "-p", String(IPERF_PORT)]);
  await Bun.sleep(300);
  void iperfServer;

  if (!ONLY_LOSS && !ONLY_RSS) {
    const none: Run = { mbps: NaN, bytes: 0 };
    let kUp = none, kDown = none, tUp = none, tDown = none, gUp = none, gDown = none;
    if (!ONLY_WG) {
    // 1. kernel forwarding
    sh(`ip -n ${dev} route add ${SERVER_IP}/32 via ${DEV_GW}`);
    [kUp, kDown] = await both(dev, false);

    // 2. the same packets, policy-routed into a TUN read by our stack
    const tun = openTun({ name: TUN });
    sh(`ip link set dev ${TUN} addrgenmode none && ip link set dev ${TUN} mtu 1500 up`);
    for (const scope of ["all", TUN]) writeFileSync(`/proc/sys/net/ipv4/conf/${scope}/rp_filter`, "0");
    const tunStack = attachStack(tun, "10.84.0.1", relayDeps(tempDir("bench-tun")));
    sh(`ip rule add iif ${devLink} lookup ${TABLE} pref ${TABLE} && ip route add default dev ${TUN} table ${TABLE}`);
    try {
      [tUp, tDown] = await both(dev, true);
    } finally {
      sh(`ip rule del iif ${devLink} lookup ${TABLE} pref ${TABLE}; ip route flush table ${TABLE}`);
      tunStack.close();
      tun.close();
      for (const up of upstreams) up.destroy();
    }
    sh(`ip -n ${dev} route del ${SERVER_IP}/32 via ${DEV_GW}`);
    }

    // The device's WireGuard, re-pointed between cases 3 and 4.
    const devKeys = generateKeyPair();
    const dir = tempDir("bench-dev");
    writeFileSync(path.join(dir, "key"), devKeys.privateKey + "\n", { mode: 0o600 });
    const dwg = await topo.wireguardGo(dev);
    dwg.wg(`set wg0 private-key ${dir}/key`);
    sh(`ip -n ${dev} link set wg0 mtu 1420 up && ip -n ${dev} route add ${SERVER_IP}/32 dev wg0`);

    // 3. wireguard-go in the root namespace, kernel forwarding behind it
    const goKeys = generateKeyPair();
    writeFileSync(path.join(dir, "gw.key"), goKeys.privateKey + "\n", { mode: 0o600 });
    wgGo = await rootWireguardGo(WG_GO_IF);
    wgGo.wg(`set ${WG_GO_IF} listen-port ${WG_PORT_GO} private-key ${dir}/gw.key peer ${devKeys.publicKey} allowed-ips 10.86.0.2/32`);
    sh(`ip addr add 10.86.0.1/24 dev ${WG_GO_IF} && ip link set ${WG_GO_IF} mtu 1420 up`);
    sh(`ip -n ${dev} addr add 10.86.0.2/32 dev wg0`);
    dwg.wg(`set wg0 peer ${goKeys.publicKey} allowed-ips 0.0.0.0/0 endpoint ${DEV_GW}:${WG_PORT_GO}`);
    if (!ONLY_WG) [gUp, gDown] = await both(dev, false);
    dwg.wg(`set wg0 peer ${goKeys.publicKey} remove`);
    // the new address first: removing an interface's last IPv4 address flushes its routes
    sh(`ip -n ${dev} addr add 10.85.0.2/32 dev wg0 && ip -n ${dev} addr del 10.86.0.2/32 dev wg0`);
    wgGo.child.kill("SIGTERM");
    wgGo = undefined;

    // 4. our userspace WireGuard + our stack
    const gwKeys = generateKeyPair();
    const wg = await startUserspaceWireGuard({
      listen: { host: DEV_GW, port: WG_PORT_OURS },
      privateKey: gwKeys.privateKey,
      peers: [{ publicKey: devKeys.publicKey, allowedIPs: ["10.85.0.2/32"] }],
    });
    const stack = attachStack(wg.link, gatewayAddressOf("10.85.0.0/24"), relayDeps(tempDir("bench-plane")));
    dwg.wg(`set wg0 peer ${gwKeys.publicKey} allowed-ips 0.0.0.0/0 endpoint ${DEV_GW}:${WG_PORT_OURS}`);
    const [oUp, oDown] = await both(dev, true);
    const st = stack.stats();
    const wst = wg.stats();
    stack.close();
    wg.close();
    for (const up of upstreams) up.destroy();

    const ratio = (a: Run, b: Run) => (a.mbps / b.mbps).toFixed(3);
    console.log(`\nbench-netstack: iperf3, ${SECONDS} s per run, one TCP stream, ${spawnSync("nproc").stdout.toString().trim()} cores\n`);
    console.log(line("1 kernel forwarding, upload", kUp));
    console.log(line("1 kernel forwarding, download", kDown));
    console.log(line("2 TUN + our stack, upload", tUp));
    console.log(line("2 TUN + our stack, download", tDown));
    console.log(line("3 wireguard-go + kernel, upload", gUp));
    console.log(line("3 wireguard-go + kernel, download", gDown));
    console.log(line("4 our WireGuard + stack, upload", oUp));
    console.log(line("4 our WireGuard + stack, download", oDown));
    console.log(`\nratio (2)/(1) TUN+stack/kernel:        upload ${ratio(tUp, kUp)}, download ${ratio(tDown, kDown)}   (goal >= 0.3)`);
    console.log(`ratio (4)/(3) ours/wireguard-go+kernel: upload ${ratio(oUp, gUp)}, download ${ratio(oDown, gDown)}   (goal >= 1.0)`);
    console.log(`stack tcp (case 4): ${JSON.stringify({ ...st.tcp, connections: undefined })}`);
    console.log(`drops: ${JSON.stringify(st.drops)}  wireguard drops: ${JSON.stringify(wst.drops)} udpTxDropped ${wst.udpTxDropped}`);
  }

  // 6. RSS with 1k and 10k flows
  if (ONLY_RSS || (!ONLY_LOSS && !ONLY_WG)) {
    console.log(`\nRSS of this process (stack + relay), flows through TUN + our stack, idle after one line each way:`);
    for (const l of await flowsRss(dev, srv, topo.hostLink("h"))) console.log(l);
  }

  // 5. gateway sends under loss, through the kernel and through our stack (TUN)
  if (!ONLY_WG && !ONLY_RSS) {
    const [lossKernel, lossOurs] = await gatewaySendsUnderLoss(dev, topo.hostLink("h"));
    console.log(`\ngateway sends at ${LOSS_PCT}% loss each way (iperf3 -R, ${SECONDS} s, one stream):`);
    console.log(line("5 Linux sender (kernel forwarding)", lossKernel));
    console.log(line("5 our stack sending (TUN)", lossOurs));
    console.log(`gateway-sends ratio ours/Linux at ${LOSS_PCT}% loss: ${(lossOurs.mbps / lossKernel.mbps).toFixed(3)}   (goal >= 0.5)`);
  }
} finally {
  wgGo?.child.kill("SIGTERM");
  spawnSync("ip", ["link", "del", WG_GO_IF]);
  spawnSync("sh", ["-c", `ip rule del iif ${topo.hostLink("h")} lookup ${TABLE} pref ${TABLE} 2>/dev/null; ip route flush table ${TABLE} 2>/dev/null; ip link del ${TUN} 2>/dev/null`]);
  topo.destroy();
  writeFileSync(forwardFile, forwardBefore);
}
// iperf3's control connection may still hold a relayed socket open.
process.exit(0);
