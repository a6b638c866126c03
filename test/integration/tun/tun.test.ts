/**
 * openTun() against the kernel, inside a network namespace:
 *
 *   [<prefix>ns] tun0 10.77.N.1/24 (ip tuntap, persistent), lo up
 *     kernel socket on 10.77.N.1  --route 10.77.N.0/24-->  tun0  -->  tun-peer.ts (Bun, openTun)
 *
 * tun-peer.ts runs under `ip netns exec` so both the TUN and the kernel
 * sockets live in the namespace; it prints what it saw as one JSON line and
 * the assertions are made here, with the stack's wire parsers.
 *
 * Needs root; skips without it unless CI=true (then it must run).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as path from "node:path";
import { spawn, spawnSync } from "node:child_process";
import * as ipv4 from "../../../app/net/stack/wire/ipv4.ts";
import * as udp from "../../../app/net/stack/wire/udp.ts";
import { IPPROTO_UDP } from "../../../app/net/stack/wire/checksum.ts";

const isRoot = process.getuid?.() === 0;
const BUN = path.resolve(import.meta.dir, "../../../node_modules/.bin/bun");
const PEER_SCRIPT = path.resolve(import.meta.dir, "tun-peer.ts");

const PREFIX = `tun${Math.random().toString(36).slice(2, 8)}`;
const NS = `${PREFIX}ns`;
const N = 1 + Math.floor(Math.random() * 250);
const LOCAL = `10.77.${N}.1`;
const PEER = `10.77.${N}.2`;
const DEV = "tun0";

function sh(cmd: string): string {
  const r = spawnSync("sh", ["-c", cmd], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr || r.stdout}`);
  return r.stdout.trim();
}

function peer(...args: string[]): any {
  return peerEnv({}, ...args);
}

function peerEnv(env: Record<string, string>, ...args: string[]): any {
  const r = spawnSync("ip", ["netns", "exec", NS, BUN, PEER_SCRIPT, ...args], {
    encoding: "utf8", timeout: 20_000, env: { ...process.env, ...env },
  });
  if (r.status !== 0) throw new Error(`tun-peer ${args.join(" ")}: exit ${r.status}\n${r.stderr}\n${r.stdout}`);
  const line = r.stdout.trim().split("\n").pop()!;
  return JSON.parse(line);
}

function ip4(s: string): Uint8Array {
  return new Uint8Array(s.split(".").map(Number));
}

describe.skipIf(!(isRoot || process.env.CI === "true"))("TUN device (root, netns)", () => {
  beforeAll(() => {
    sh(`ip netns add ${NS}`);
    sh(`ip -n ${NS} link set lo up`);
    sh(`ip -n ${NS} tuntap add dev ${DEV} mode tun`);
    sh(`ip -n ${NS} link set ${DEV} addrgenmode none`);
    sh(`ip -n ${NS} addr add ${LOCAL}/24 dev ${DEV}`);
    sh(`ip -n ${NS} link set ${DEV} up`);
  });

  afterAll(() => {
    spawnSync("ip", ["netns", "del", NS]);
  });

  test("UDP datagrams routed into the TUN arrive as exact IP packets; written replies reach the socket", () => {
    const out = peer("udp", DEV, LOCAL, PEER, "5");
    expect(out.name).toBe(DEV);
    expect(out.mtu).toBe(1500);
    expect(out.packets).toHaveLength(5);
    const ports = new Set<number>();
    out.packets.forEach((h: string, i: number) => {
      const bytes = new Uint8Array(Buffer.from(h, "hex"));
      const ip = ipv4.parse(bytes);
      if (!ip.ok) throw new Error(ip.reason);
      expect(bytes.length).toBe(20 + 8 + `datagram ${i}`.length);
      expect(ip.repr.protocol).toBe(IPPROTO_UDP);
      expect([...ip.repr.src]).toEqual([...ip4(LOCAL)]);
      expect([...ip.repr.dst]).toEqual([...ip4(PEER)]);
      const u = udp.parse(ip.payload, ip.repr.src, ip.repr.dst);
      if (!u.ok) throw new Error(u.reason);
      expect(u.repr.dstPort).toBe(7777);
      ports.add(u.repr.srcPort);
      expect(new TextDecoder().decode(u.payload)).toBe(`datagram ${i}`);
    });
    expect(ports.size).toBe(1);
    expect(out.replies).toEqual(
      [0, 1, 2, 3, 4].map((i) => ({ from: PEER, port: 7777, data: `echo:datagram ${i}` })),
    );
    expect(out.stats.txPackets).toBe(5);
    expect(out.stats.txDropped).toBe(0);
  });

  test("with vnetHdr (IFF_VNET_HDR + TUNSETOFFLOAD): kernel partial checksums arrive completed", () => {
    const out = peerEnv({ TUN_VNET: "1" }, "udp", DEV, LOCAL, PEER, "3");
    expect(out.vnetHdr).toBe(true);
    expect(out.packets).toHaveLength(3);
    for (const h of out.packets) {
      const bytes = new Uint8Array(Buffer.from(h, "hex"));
      const ip = ipv4.parse(bytes);
      if (!ip.ok) throw new Error(ip.reason);
      const u = udp.parse(ip.payload, ip.repr.src, ip.repr.dst); // verifies the UDP checksum
      if (!u.ok) throw new Error(u.reason);
      expect(new DataView(ip.payload.buffer, ip.payload.byteOffset).getUint16(6)).not.toBe(0);
    }
    expect(out.replies.map((r: { data: string }) => r.data)).toEqual(["echo:datagram 0", "echo:datagram 1", "echo:datagram 2"]);
  });

  test("a flood arrives completely, and the idle reader does not spin", () => {
    const count = 20_000;
    const out = peer("flood", DEV, LOCAL, PEER, String(count), "64", "256");
    expect(out.received).toBe(count);
    expect(out.stats.rxDropped).toBe(0);
    // One second idle with the device open: the worker sleeps in poll().
    expect(out.idleCpuMs).toBeLessThan(100);
    console.log(`flood: ${count} x 64 B in ${(out.seconds * 1000).toFixed(0)} ms (${Math.round(out.pps)} pps), idle CPU ${out.idleCpuMs.toFixed(1)} ms/s`);
  });

  test("a kernel-named device exists while open; close removes it and leaks no fd", async () => {
    const child = spawn("ip", ["netns", "exec", NS, BUN, PEER_SCRIPT, "create"], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    try {
      const deadline = Date.now() + 10_000;
      while (!stdout.includes("\n") && Date.now() < deadline && child.exitCode === null) await Bun.sleep(20);
      if (!stdout.includes("\n")) throw new Error(`create: no output\n${stderr}`);
      const first = JSON.parse(stdout.split("\n")[0]!);
      expect(first.name).toMatch(/^tun\d+$/);
      expect(first.name).not.toBe(DEV);
      expect(first.mtu).toBe(1500);
      expect(sh(`ip -n ${NS} -o link show`)).toContain(`${first.name}:`);
      child.stdin.write("close\n");
      const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
      expect(code).toBe(0);
      const last = JSON.parse(stdout.trim().split("\n").pop()!);
      expect(last.closed).toBe(true);
      expect(last.fdsAfter).toBe(last.fdsBefore); // TUN fd and eventfd closed
      expect(sh(`ip -n ${NS} -o link show`)).not.toContain(`${first.name}:`);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });
});
