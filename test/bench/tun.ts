/**
 * TUN device benchmark (not a test; `bun test` does not pick it up). Root.
 *
 *   ./node_modules/.bin/bun test/bench/tun.ts [count]
 *
 * In a fresh network namespace with tun0 10.78.0.1/24, for 64- and
 * 1400-byte IPv4/UDP packets:
 *   rx        kernel -> TUN -> openTun reader: a sender process blasts UDP to
 *             an address routed into tun0, a separate reader process counts
 *             (pps over first..last packet; loss shown);
 *   rx-win    the same, sender and reader in one process with at most 384
 *             datagrams unread (no loss by construction), for both wake-ups:
 *             Atomics.waitAsync and postMessage;
 *   tx        TunDevice.write() -> kernel -> a UDP socket in the same process;
 *   baseline  kernel UDP socket -> socket over lo, same sender (rx's ceiling).
 * Each process runs through tun-peer.ts under `ip netns exec`.
 */
import * as path from "node:path";
import { spawn, spawnSync } from "node:child_process";

const COUNT = Number(process.argv[2] ?? 200_000);
const BUN = path.resolve(import.meta.dir, "../../node_modules/.bin/bun");
const PEER_SCRIPT = path.resolve(import.meta.dir, "../integration/tun/tun-peer.ts");
const NS = `tunb${Math.random().toString(36).slice(2, 8)}ns`;
const LOCAL = "10.78.0.1";
const PEER = "10.78.0.2";

function sh(cmd: string): void {
  const r = spawnSync("sh", ["-c", cmd], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr || r.stdout}`);
}

function peer(args: string[], env: Record<string, string> = {}): any {
  const r = spawnSync("ip", ["netns", "exec", NS, BUN, PEER_SCRIPT, ...args], {
    encoding: "utf8", timeout: 60_000, env: { ...process.env, ...env },
  });
  if (r.status !== 0) throw new Error(`tun-peer ${args.join(" ")}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

async function rxSeparate(size: number): Promise<any> {
  const sink = spawn("ip", ["netns", "exec", NS, BUN, PEER_SCRIPT, "sink", "tun0", String(COUNT)], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  sink.stdout.on("data", (d) => (out += d));
  while (!out.includes("ready")) await Bun.sleep(10);
  const blast = peer(["blast", "-", LOCAL, PEER, String(COUNT), String(size)]);
  await new Promise((r) => sink.on("exit", r));
  const res = JSON.parse(out.trim().split("\n").pop()!);
  return { ...res, sent: blast.sent, senderPps: blast.pps };
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

try {
  sh(`ip netns add ${NS}`);
  sh(`ip -n ${NS} link set lo up`);
  sh(`ip -n ${NS} tuntap add dev tun0 mode tun`);
  sh(`ip -n ${NS} link set tun0 addrgenmode none`);
  sh(`ip -n ${NS} link set tun0 txqueuelen 4096`);
  sh(`ip -n ${NS} addr add ${LOCAL}/24 dev tun0`);
  sh(`ip -n ${NS} link set tun0 up`);
  sh(`ip netns exec ${NS} sysctl -qw net.core.rmem_max=8388608 net.core.rmem_default=8388608`);
  console.log(`TUN benchmark, ${fmt(COUNT)} packets per run (2 shared cores; CPU is the reader's process)`);
  console.log("case                        size      pps     Mbit/s   notes");
  const row = (name: string, size: number, pps: number, mbps: number, note: string) =>
    console.log(`${name.padEnd(26)} ${String(size).padStart(5)} ${fmt(pps).padStart(9)} ${mbps.toFixed(0).padStart(9)}   ${note}`);
  for (const size of [64, 1400]) {
    const base = peer(["blast", "-", LOCAL, LOCAL, String(COUNT), String(size)]);
    row("baseline: socket send", size, base.pps, (base.pps * size * 8) / 1e6, "kernel only, sender's rate over lo");
    const rx = await rxSeparate(size);
    row("rx  (separate sender)", size, rx.pps, rx.mbps, `${fmt(rx.received)}/${fmt(rx.sent)} received, reader CPU ${fmt(rx.cpuMs)} ms, ${rx.stats.rxBatches} batches`);
    for (const wake of ["atomics", "message"]) {
      const w = peer(["flood", "tun0", LOCAL, PEER, String(COUNT), String(size), "384"], { TUN_WAKE: wake });
      row(`rx-win (${wake})`, size, w.pps, w.mbps, `${fmt(w.received)}/${fmt(w.sent)}, CPU ${fmt(w.cpuBusyMs)} ms, idle ${w.idleCpuMs.toFixed(1)} ms/s, ${w.stats.rxBatches} batches`);
    }
    const tx = peer(["tx", "tun0", LOCAL, PEER, String(COUNT), String(size)]);
    row("tx  (write -> socket)", size, tx.pps, tx.mbps, `${fmt(tx.received)}/${fmt(tx.written)} received (write() ${fmt(tx.writePps)} pps, ${tx.dropped} dropped)`);
  }
} finally {
  spawnSync("ip", ["netns", "del", NS]);
}
