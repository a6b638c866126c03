// `make bench-netstack`: iperf3 through the packet plane, beside the kernel.
//
//   1. kernel: iperf3 client in a device namespace, server on the host
//      side of the same veth (no tunnel), the path's ceiling
//   2. ours: the client's traffic goes through wireguard-go (wg0 in the
//      device namespace) to our userspace WireGuard + our TCP/IP stack in
//      this process, whose Flows are relayed to the same iperf3 server from
//      this process's own sockets (a plain pipe: the gateway's dispatch
//      layers on top cost little next to the packet path)
//
// Each case runs upload (device -> server) and download (-R). Printed:
// Mbit/s, ours/kernel, and this process's CPU per MB moved (case 2 only;
// wireguard-go and iperf3 are other processes). The wireguard-go + kernel
// forwarding baseline is in ../shared notes (200-275 Mbit/s, wireguard-go
// bound on 2 cores); it needs a second wireguard-go and is not rerun here.
//
// Root only. SECONDS=N sets each iperf3 run's length (default 5).
import net from "node:net";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { Topology, sh, isRoot } from "../integration/support/netns.ts";
import { tempDir } from "../integration/support/gateway.ts";
import { generateKeyPair, startUserspaceWireGuard } from "../../app/net/wireguard/shell.ts";
import { attachStack, gatewayAddressOf } from "../../app/net/packet-plane.ts";

if (!isRoot) {
  console.error("bench-netstack: needs root (network namespaces)");
  process.exit(1);
}
const SECONDS = Number(process.env.SECONDS_PER_RUN ?? process.env.SECONDS ?? 5);
const N = 100 + (process.pid % 100);
const HOST_IP = `10.220.${N}.1`;
const DEV_IP = `10.220.${N}.2`;
const SERVER_IP = `10.221.${N}.1`;
const WG_PORT = 45000 + (process.pid % 5000);
const IPERF_PORT = 5201 + (process.pid % 1000);

const topo = new Topology("cpb");
let iperfServer: ReturnType<typeof Bun.spawn> | null = null;

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

function line(label: string, r: Run): string {
  const mb = r.bytes / (1 << 20);
  const cpu = r.cpuMs !== undefined ? `  gateway CPU ${(r.cpuMs / 1000).toFixed(2)} s = ${(r.cpuMs / mb).toFixed(2)} ms/MiB (${((r.cpuMs / (SECONDS * 1000)) * 100).toFixed(0)}% of a core)` : "";
  return `${label.padEnd(34)} ${r.mbps.toFixed(0).padStart(6)} Mbit/s  ${mb.toFixed(0).padStart(6)} MiB${cpu}`;
}

try {
  const dev = topo.namespace("dev");
  topo.veth(dev, "h", `${HOST_IP}/30`, `${DEV_IP}/30`);
  sh(`ip addr add ${SERVER_IP}/32 dev ${topo.hostLink("h")}`);
  iperfServer = Bun.spawn(["iperf3", "-s", "-B", SERVER_IP, "-p", String(IPERF_PORT)], { stdout: "ignore", stderr: "ignore" });
  await Bun.sleep(300);

  // 1. kernel: the device routes the server straight over the veth.
  sh(`ip -n ${dev} route add ${SERVER_IP}/32 via ${HOST_IP}`);
  const kUp = await iperf(dev, false, false);
  const kDown = await iperf(dev, true, false);
  sh(`ip -n ${dev} route del ${SERVER_IP}/32 via ${HOST_IP}`);

  // 2. ours: wireguard-go -> our WireGuard + stack -> relay from our sockets.
  const gwKeys = generateKeyPair();
  const devKeys = generateKeyPair();
  const wg = await startUserspaceWireGuard({
    listen: { host: HOST_IP, port: WG_PORT },
    privateKey: gwKeys.privateKey,
    peers: [{ publicKey: devKeys.publicKey, allowedIPs: ["10.85.0.2/32"] }],
  });
  const stack = attachStack(wg.link, gatewayAddressOf("10.85.0.0/24"), {
    stateDir: tempDir("bench-plane"),
    identify: () => ({ name: "bench", profile: "bench" }),
    udpPolicy: () => "drop",
    onFlow: (f) => {
      const up = net.connect({ host: f.dst.host, port: f.dst.port, allowHalfOpen: true });
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
  });
  const dir = tempDir("bench-dev");
  writeFileSync(path.join(dir, "key"), devKeys.privateKey + "\n", { mode: 0o600 });
  const dwg = await topo.wireguardGo(dev);
  dwg.wg(`set wg0 private-key ${dir}/key peer ${gwKeys.publicKey} allowed-ips 0.0.0.0/0 endpoint ${HOST_IP}:${WG_PORT}`);
  sh(`ip -n ${dev} addr add 10.85.0.2/32 dev wg0 && ip -n ${dev} link set wg0 mtu 1420 up`);
  sh(`ip -n ${dev} route add ${SERVER_IP}/32 dev wg0`);
  const oUp = await iperf(dev, false, true);
  const oDown = await iperf(dev, true, true);
  const st = stack.stats();
  const wst = wg.stats();
  stack.close();
  wg.close();

  console.log(`\nbench-netstack: iperf3, ${SECONDS} s per run, one TCP stream, ${spawnSync("nproc").stdout.toString().trim()} cores\n`);
  console.log(line("1 kernel veth, upload", kUp));
  console.log(line("1 kernel veth, download", kDown));
  console.log(line("2 wg-go -> our WG+stack, upload", oUp));
  console.log(line("2 wg-go -> our WG+stack, download", oDown));
  console.log(`\nratio ours/kernel: upload ${(oUp.mbps / kUp.mbps).toFixed(3)}, download ${(oDown.mbps / kDown.mbps).toFixed(3)}`);
  console.log(`(reference, machine notes: wireguard-go + kernel forwarding 200-275 Mbit/s; ours/that = ${(oUp.mbps / 237).toFixed(2)} up, ${(oDown.mbps / 237).toFixed(2)} down at the midpoint)`);
  console.log(`stack tcp: ${JSON.stringify({ ...st.tcp, connections: undefined })}`);
  console.log(`drops: ${JSON.stringify(st.drops)}  wireguard drops: ${JSON.stringify(wst.drops)} udpTxDropped ${wst.udpTxDropped}`);
} finally {
  iperfServer?.kill();
  topo.destroy();
}
// iperf3's control connection may still hold a relayed socket open.
process.exit(0);
