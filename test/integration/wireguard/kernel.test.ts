/**
 * kernel-wg.ts against real `ip` and `wg` in a fresh network namespace.
 * This kernel has no WireGuard module, so wireguard-go creates wg0 first (it
 * is managed by `wg`/`ip` exactly like the kernel's) and ensureInterface must
 * accept the existing interface. The gateway's TUN is `ip tuntap … cp0`.
 *
 * Every command runs through the injectable runner, wrapped in
 * `nsenter -t <wireguard-go> -m -n` (its mount namespace holds the private
 * /run/wireguard with the control socket); sysctls are written inside the
 * namespace.
 *
 * Needs root; skips without it unless CI=true (then it must run).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import {
  defaultRunner,
  ensureInterface,
  installPolicyRouting,
  listPeers,
  removePeer,
  removePolicyRouting,
  setPeer,
  type KernelWgDeps,
} from "../../../app/net/kernel-wg.ts";
import { generateKeyPair } from "../../../app/net/wireguard/keys.ts";
import { setLogWriter } from "../../../app/log.ts";

const isRoot = process.getuid?.() === 0;
const run = isRoot || process.env.CI === "true";

const PREFIX = `wgk${process.pid % 100000}`;
const NS = `${PREFIX}n`;
const POLICY = { wg: "wg0", tun: "cp0", table: 100, subnets: ["10.100.0.0/24", "fd10:100::/64"] };

function sh(cmd: string): string {
  const r = spawnSync("sh", ["-c", cmd], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr || r.stdout}`);
  return r.stdout.trim();
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return cond();
}

describe.skipIf(!run)("kernel-mode management with ip/wg (wireguard-go as the kernel)", () => {
  const gwKeys = generateKeyPair();
  const peerA = generateKeyPair();
  const peerB = generateKeyPair();
  const psk = generateKeyPair().privateKey;
  const logLines: string[] = [];
  let tmp = "";
  let wg: ChildProcess | undefined;
  let deps: KernelWgDeps;
  /** Runs a command in the namespace (and wireguard-go's mount namespace). */
  let inNs: (cmd: string) => string;

  beforeAll(async () => {
    setLogWriter((l) => logLines.push(l));
    for (const tool of ["wireguard-go", "wg", "ip", "nsenter"]) {
      if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) throw new Error(`${tool} is needed`);
    }
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), `${PREFIX}-`));
    fs.writeFileSync(path.join(tmp, "wg.key"), gwKeys.privateKey + "\n", { mode: 0o600 });
    sh(`ip netns add ${NS} && ip -n ${NS} link set lo up`);
    fs.mkdirSync("/run/wireguard", { recursive: true });
    wg = spawn(
      "ip",
      ["netns", "exec", NS, "unshare", "-m", "--propagation", "private", "sh", "-c", "mount -t tmpfs x /run/wireguard && exec wireguard-go -f wg0"],
      { stdio: "ignore", env: { ...process.env, WG_PROCESS_FOREGROUND: "1" } },
    );
    if (!(await waitFor(() => spawnSync("ip", ["-n", NS, "link", "show", "wg0"]).status === 0, 5000))) throw new Error("wireguard-go did not create wg0");
    const pid = String(wg.pid);
    await waitFor(() => spawnSync("nsenter", ["-t", pid, "-m", "-n", "wg", "show", "wg0"]).status === 0, 5000);
    sh(`ip -n ${NS} tuntap add dev cp0 mode tun && ip -n ${NS} link set cp0 addrgenmode none && ip -n ${NS} link set cp0 up`);
    inNs = (cmd) => sh(`nsenter -t ${pid} -m -n sh -c '${cmd}'`);
    deps = {
      run: (argv, opts) => defaultRunner(["nsenter", "-t", pid, "-m", "-n", ...argv], opts),
      writeSysctl: async (segments, value) => {
        const r = await defaultRunner(["nsenter", "-t", pid, "-n", "tee", path.join("/proc/sys", ...segments)], { stdin: value });
        if (r.code !== 0) throw new Error(`sysctl ${segments.join("/")}: ${r.stderr}`);
      },
    };
  }, 20_000);

  afterAll(() => {
    try {
      spawnSync("ip", ["-n", NS, "link", "del", "wg0"]);
      if (wg?.pid !== undefined) {
        try {
          process.kill(wg.pid, "SIGTERM");
        } catch {}
      }
      spawnSync("ip", ["netns", "del", NS]);
      if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    } finally {
      setLogWriter(undefined);
    }
  });

  test("ensureInterface configures the existing wg0 (twice: idempotent)", async () => {
    const opts = { name: "wg0", privateKeyFile: path.join(tmp, "wg.key"), listenPort: 51899, address: ["10.100.0.1/24", "fd10:100::1/64"] };
    expect(await ensureInterface(opts, deps)).toEqual({ created: false });
    expect(await ensureInterface(opts, deps)).toEqual({ created: false });
    expect(inNs("wg show wg0 public-key")).toBe(gwKeys.publicKey);
    expect(inNs("wg show wg0 listen-port")).toBe("51899");
    const addrs = inNs("ip -o addr show dev wg0");
    expect(addrs).toContain("10.100.0.1/24");
    expect(addrs).toContain("fd10:100::1/64");
    expect(addrs.split("\n").filter((l) => l.includes("10.100.0.1/24")).length).toBe(1);
    expect(inNs("ip -o link show dev wg0")).toMatch(/[<,]UP[,>]/);
  });

  test("ensureInterface on a missing interface fails clearly (no kernel module here)", async () => {
    const e = await ensureInterface({ name: "wg9", privateKeyFile: path.join(tmp, "wg.key"), listenPort: 1, address: "10.9.0.1/24" }, deps).catch((x: Error) => x);
    // with a WireGuard kernel module this creates wg9; on this kernel it must say why it cannot
    if (e instanceof Error) expect(e.message).toMatch(/cannot create WireGuard interface wg9/);
    else spawnSync("ip", ["-n", NS, "link", "del", "wg9"]);
  });

  test("setPeer / listPeers / removePeer are reflected by wg show", async () => {
    await setPeer("wg0", { publicKey: peerA.publicKey, allowedIPs: ["10.100.0.2/32", "fd10:100::2/128"], presharedKey: psk, persistentKeepalive: 25 }, deps);
    await setPeer("wg0", { publicKey: peerB.publicKey, allowedIPs: ["10.100.0.3/32"] }, deps);
    let peers = await listPeers("wg0", deps);
    const a = peers.find((p) => p.publicKey === peerA.publicKey)!;
    expect(a).toMatchObject({ hasPresharedKey: true, allowedIPs: ["10.100.0.2/32", "fd10:100::2/128"], persistentKeepalive: 25, lastHandshake: undefined });
    expect(peers.find((p) => p.publicKey === peerB.publicKey)).toMatchObject({ hasPresharedKey: false, allowedIPs: ["10.100.0.3/32"] });
    expect(inNs("wg show wg0 preshared-keys")).toContain(`${peerA.publicKey}\t${psk}`);

    // replace A's allowed IPs and drop its PSK
    await setPeer("wg0", { publicKey: peerA.publicKey, allowedIPs: ["10.100.0.4/32"] }, deps);
    peers = await listPeers("wg0", deps);
    expect(peers.find((p) => p.publicKey === peerA.publicKey)).toMatchObject({ hasPresharedKey: false, allowedIPs: ["10.100.0.4/32"] });

    await removePeer("wg0", peerB.publicKey, deps);
    peers = await listPeers("wg0", deps);
    expect(peers.map((p) => p.publicKey)).toEqual([peerA.publicKey]);
    expect(inNs("wg show wg0 peers")).toBe(peerA.publicKey);
  });

  test("installPolicyRouting: one rule per family, default route into the TUN, forwarding only from wg0 and the TUN; removable", async () => {
    await installPolicyRouting(POLICY, deps);
    await installPolicyRouting(POLICY, deps); // idempotent
    for (const fam of ["-4", "-6"]) {
      const rules = inNs(`ip ${fam} rule show`).split("\n").filter((l) => /iif wg0 .*lookup 100/.test(l));
      expect(rules.length).toBe(1);
      expect(rules[0]).toMatch(/^100:/);
      expect(inNs(`ip ${fam} route show table 100`)).toMatch(/^default dev cp0/m);
    }
    // IPv4 forwards from wg0 and the TUN only; IPv6 (all-or-nothing in the kernel) is guarded by rules
    expect(inNs("cat /proc/sys/net/ipv4/ip_forward")).toBe("0");
    expect(inNs("cat /proc/sys/net/ipv4/conf/wg0/forwarding")).toBe("1");
    expect(inNs("cat /proc/sys/net/ipv4/conf/cp0/forwarding")).toBe("1");
    expect(inNs("cat /proc/sys/net/ipv4/conf/lo/forwarding")).toBe("0");
    expect(inNs("cat /proc/sys/net/ipv6/conf/all/forwarding")).toBe("1");
    // the local table comes after the iif rule, so a device's packet to the host's own address reaches the TUN
    expect(inNs("ip -4 rule show")).not.toMatch(/^0:\s+from all lookup local/m);
    expect(inNs("ip -4 route get 127.0.0.1")).toContain("local");
    // nothing but the TUN's replies may enter the device subnet: `prohibit` answers EACCES
    expect(inNs("ip -4 route get 10.100.0.4 2>&1 || true")).toContain("Permission denied");
    expect(inNs("ip -6 route get fd10:100::4 2>&1 || true")).toContain("Permission denied");
    expect(inNs("ip -4 route get 10.100.0.4 from 10.100.0.1 iif cp0")).not.toMatch(/prohibit/);
    for (const scope of ["all", "default", "cp0", "wg0"]) expect(inNs(`cat /proc/sys/net/ipv4/conf/${scope}/rp_filter`)).toBe("0");
    // the lookup really sends device traffic into the TUN
    expect(inNs("ip -4 route get 93.184.216.34 from 10.100.0.4 iif wg0")).toContain("dev cp0");
    expect(inNs("ip -6 route get 2001:db8::1 from fd10:100::2 iif wg0")).toContain("dev cp0");

    await removePolicyRouting(POLICY, deps);
    await removePolicyRouting(POLICY, deps);
    for (const fam of ["-4", "-6"]) {
      expect(inNs(`ip ${fam} rule show`)).not.toContain("iif wg0");
      expect(inNs(`ip ${fam} rule show`)).toMatch(/^0:\s+from all lookup local/m);
      expect(inNs(`ip ${fam} rule show`)).not.toMatch(/prohibit|iif cp0/);
      expect(inNs(`ip ${fam} route show table 100`)).toBe("");
    }
  });

  test("secrets never reached the logs", () => {
    const all = logLines.join("\n");
    expect(all).toContain("kernel wireguard peer set");
    expect(all).not.toContain(gwKeys.privateKey);
    expect(all).not.toContain(psk);
  });
});
