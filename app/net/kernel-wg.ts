/**
 * Kernel-mode WireGuard management (the appliance): the kernel's `wg0`, its
 * peers, and the policy routing that sends everything arriving on it into
 * the gateway's TUN. Shells out to `ip` and `wg`; no nftables, no TPROXY.
 *
 *   1. ensureInterface  wg0 exists (created, or already there: wireguard-go
 *                       stands in where the kernel has no module), key, port,
 *                       addresses, up
 *   2. setPeer / removePeer / listPeers   as devices come and go
 *   3. installPolicyRouting   ip rule iif wg0 lookup T (v4+v6, idempotent),
 *                             default dev <tun> table T, and the isolation
 *                             rules: the appliance forwards nothing but wg0
 *                             -> TUN and the TUN's replies (no device to
 *                             device, no LAN into the device subnet, a
 *                             device's packet to the host's own addresses
 *                             meets our stack too); rp_filter off (replies
 *                             leave the TUN with any source address)
 *
 * Secrets never reach argv, errors or logs: the private key is passed as a
 * file path, a preshared key through stdin, and `wg show dump` output (which
 * holds the private key) is parsed, never echoed.
 *
 * Every command goes through an injectable runner so tests can check the exact
 * argv sequence without root.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { parsePrefix } from "./wireguard/allowedips.ts";
import { isWireGuardKey } from "./wireguard/keys.ts";
import { log } from "../log.ts";

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}
export type Runner = (argv: string[], opts?: { stdin?: string }) => Promise<RunResult>;

export interface KernelWgDeps {
  run: Runner;
  /** Writes a sysctl: path segments below /proc/sys (segments may contain dots, e.g. "eth0.100"). */
  writeSysctl: (segments: string[], value: string) => Promise<void>;
}

export class KernelWgError extends Error {
  constructor(
    message: string,
    readonly argv: string[] = [],
    readonly stderr = "",
  ) {
    super(message);
    this.name = "KernelWgError";
  }
}

export const defaultRunner: Runner = async (argv, opts) => {
  const p = Bun.spawn(argv, {
    stdin: opts?.stdin === undefined ? "ignore" : new TextEncoder().encode(opts.stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr };
};

export const defaultWriteSysctl = async (segments: string[], value: string): Promise<void> => {
  for (const s of segments) if (s === "" || s === "." || s === ".." || s.includes("/")) throw new KernelWgError(`bad sysctl segment ${JSON.stringify(s)}`);
  await fs.writeFile(path.join("/proc/sys", ...segments), value);
};

const DEFAULT_DEPS: KernelWgDeps = { run: defaultRunner, writeSysctl: defaultWriteSysctl };

function depsOf(d: Partial<KernelWgDeps> | undefined): KernelWgDeps {
  return { ...DEFAULT_DEPS, ...d };
}

/** Runs a command that must succeed; the error carries argv and stderr only (never stdout). */
async function must(d: KernelWgDeps, argv: string[], opts?: { stdin?: string }): Promise<RunResult> {
  const r = await d.run(argv, opts);
  if (r.code !== 0) {
    const stderr = r.stderr.trim().slice(0, 500);
    throw new KernelWgError(`${argv.join(" ")} failed (${r.code}): ${stderr}`, argv, stderr);
  }
  return r;
}

const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;

function checkIfName(name: string): void {
  if (!IFNAME.test(name)) throw new KernelWgError(`bad interface name ${JSON.stringify(name)}`);
}

function checkPublicKey(k: string): void {
  if (!isWireGuardKey(k)) throw new KernelWgError(`bad public key ${JSON.stringify(k.slice(0, 60))}`);
}

function checkPrefixes(allowedIPs: readonly string[]): string[] {
  return allowedIPs.map((s) => {
    const t = s.trim();
    if (parsePrefix(t) === undefined) throw new KernelWgError(`bad allowed IP ${JSON.stringify(s)}`);
    return t;
  });
}

// ---------------------------------------------------------------------------
// 1. The interface
// ---------------------------------------------------------------------------

export interface EnsureInterfaceOptions {
  name: string;
  /** A file holding the base64 private key (wg set … private-key FILE). */
  privateKeyFile: string;
  listenPort: number;
  /** CIDR(s) for the interface, e.g. "10.100.0.1/24" and "fd10:100::1/64". */
  address: string | readonly string[];
  mtu?: number;
}

/**
 * Makes `name` a configured, up WireGuard interface. An existing interface
 * (created earlier, or by wireguard-go) is configured in place; otherwise
 * `ip link add … type wireguard` creates it.
 */
export async function ensureInterface(opts: EnsureInterfaceOptions, deps?: Partial<KernelWgDeps>): Promise<{ created: boolean }> {
  const d = depsOf(deps);
  checkIfName(opts.name);
  if (!Number.isInteger(opts.listenPort) || opts.listenPort < 0 || opts.listenPort > 65535) throw new KernelWgError(`bad listen port ${opts.listenPort}`);
  const addresses = (typeof opts.address === "string" ? [opts.address] : [...opts.address]).map((a) => a.trim());
  for (const a of addresses) if (parsePrefix(a) === undefined) throw new KernelWgError(`bad interface address ${JSON.stringify(a)}`);

  let created = false;
  const exists = await d.run(["ip", "link", "show", "dev", opts.name]);
  if (exists.code !== 0) {
    const add = await d.run(["ip", "link", "add", "dev", opts.name, "type", "wireguard"]);
    if (add.code !== 0) {
      throw new KernelWgError(
        `cannot create WireGuard interface ${opts.name} (no wireguard kernel module? create it first, e.g. with wireguard-go): ${add.stderr.trim()}`,
        ["ip", "link", "add", "dev", opts.name, "type", "wireguard"],
        add.stderr.trim(),
      );
    }
    created = true;
  }
  await must(d, ["wg", "set", opts.name, "listen-port", String(opts.listenPort), "private-key", opts.privateKeyFile]);
  for (const a of addresses) await must(d, ["ip", "address", "replace", a, "dev", opts.name]);
  if (opts.mtu !== undefined) await must(d, ["ip", "link", "set", "dev", opts.name, "mtu", String(opts.mtu)]);
  await must(d, ["ip", "link", "set", "dev", opts.name, "up"]);
  log.info("kernel wireguard interface ready", { interface: opts.name, listen_port: opts.listenPort, address: addresses.join(","), created });
  return { created };
}

// ---------------------------------------------------------------------------
// 2. Peers
// ---------------------------------------------------------------------------

export interface KernelPeerConfig {
  publicKey: string;
  allowedIPs: readonly string[];
  /** base64; passed to wg through stdin. Absent: the peer has none (an old one is removed). */
  presharedKey?: string;
  persistentKeepalive?: number;
  endpoint?: string;
}

/** Adds or updates a peer; its allowed IPs are replaced by exactly `allowedIPs`. */
export async function setPeer(name: string, peer: KernelPeerConfig, deps?: Partial<KernelWgDeps>): Promise<void> {
  const d = depsOf(deps);
  checkIfName(name);
  checkPublicKey(peer.publicKey);
  const ips = checkPrefixes(peer.allowedIPs);
  if (peer.presharedKey !== undefined && !isWireGuardKey(peer.presharedKey)) throw new KernelWgError("bad preshared key (not 32 bytes of base64)");
  const argv = ["wg", "set", name, "peer", peer.publicKey, "allowed-ips", ips.join(",")];
  if (peer.persistentKeepalive !== undefined) argv.push("persistent-keepalive", peer.persistentKeepalive > 0 ? String(peer.persistentKeepalive) : "off");
  if (peer.endpoint !== undefined) argv.push("endpoint", peer.endpoint);
  // /dev/stdin with an empty input clears the key (wg treats an empty key file as "none")
  argv.push("preshared-key", "/dev/stdin");
  await must(d, argv, { stdin: peer.presharedKey === undefined ? "" : peer.presharedKey + "\n" });
  log.info("kernel wireguard peer set", { interface: name, peer: peer.publicKey, allowed_ips: ips.join(","), psk: peer.presharedKey !== undefined });
}

export async function removePeer(name: string, publicKey: string, deps?: Partial<KernelWgDeps>): Promise<void> {
  const d = depsOf(deps);
  checkIfName(name);
  checkPublicKey(publicKey);
  await must(d, ["wg", "set", name, "peer", publicKey, "remove"]);
  log.info("kernel wireguard peer removed", { interface: name, peer: publicKey });
}

export interface KernelPeerStatus {
  publicKey: string;
  hasPresharedKey: boolean;
  /** "host:port", undefined when none is known yet */
  endpoint: string | undefined;
  allowedIPs: string[];
  /** ms since the Unix epoch; undefined before the first handshake */
  lastHandshake: number | undefined;
  rxBytes: number;
  txBytes: number;
  /** seconds; 0: off */
  persistentKeepalive: number;
}

/**
 * Parses `wg show NAME dump`. The first line describes the interface and
 * carries its private key: it is skipped. Peer lines are tab-separated:
 * public-key, preshared-key, endpoint, allowed-ips, latest-handshake,
 * transfer-rx, transfer-tx, persistent-keepalive.
 */
export function parseDump(stdout: string): KernelPeerStatus[] {
  const lines = stdout.split("\n").filter((l) => l.length > 0);
  const peers: KernelPeerStatus[] = [];
  for (const line of lines.slice(1)) {
    const f = line.split("\t");
    if (f.length < 8) continue;
    const [pub, psk, endpoint, ips, hs, rx, tx, ka] = f as [string, string, string, string, string, string, string, string];
    const handshake = Number(hs);
    peers.push({
      publicKey: pub,
      hasPresharedKey: psk !== "(none)",
      endpoint: endpoint === "(none)" ? undefined : endpoint,
      allowedIPs: ips === "(none)" || ips === "" ? [] : ips.split(","),
      lastHandshake: handshake > 0 ? handshake * 1000 : undefined,
      rxBytes: Number(rx) || 0,
      txBytes: Number(tx) || 0,
      persistentKeepalive: ka === "off" ? 0 : Number(ka) || 0,
    });
  }
  return peers;
}

export async function listPeers(name: string, deps?: Partial<KernelWgDeps>): Promise<KernelPeerStatus[]> {
  const d = depsOf(deps);
  checkIfName(name);
  const r = await must(d, ["wg", "show", name, "dump"]);
  return parseDump(r.stdout);
}

// ---------------------------------------------------------------------------
// 3. Policy routing into the TUN
// ---------------------------------------------------------------------------

export interface PolicyRoutingOptions {
  /** the WireGuard interface, e.g. "wg0" */
  wg: string;
  /** the gateway's TUN, e.g. "cp0" (must exist and be up) */
  tun: string;
  /** routing table number, e.g. 100 */
  table: number;
  /** rule priority; default: the table number. The isolation rules take the next four. */
  pref?: number;
  /** The device subnets (v4 and v6): nothing but the TUN's replies is routed into them. */
  subnets?: readonly string[];
}

const FAMILIES = ["-4", "-6"] as const;

function checkPolicy(o: PolicyRoutingOptions): void {
  checkIfName(o.wg);
  checkIfName(o.tun);
  if (!Number.isInteger(o.table) || o.table <= 0 || o.table >= 2 ** 31 || o.table === 253 || o.table === 254 || o.table === 255) {
    throw new KernelWgError(`bad routing table ${o.table}`);
  }
  const pref = o.pref ?? o.table;
  if (!Number.isInteger(pref) || pref <= 0 || pref + 4 >= 32766) throw new KernelWgError(`bad rule priority ${pref}`);
  checkPrefixes(o.subnets ?? []);
}

/** True when `ip rule show` output holds "iif WG … lookup TABLE". */
export function hasIifRule(ruleShow: string, wg: string, table: number): boolean {
  const re = new RegExp(`\\biif ${wg.replace(/[.]/g, "\\.")}\\b(?: \\[detached\\])? lookup ${table}\\b`);
  return ruleShow.split("\n").some((l) => re.test(l));
}

/** True when the kernel's own `0: from all lookup local` rule is still in place. */
export function hasLocalRuleAtZero(ruleShow: string): boolean {
  return /^0:\s+from all lookup local\b/m.test(ruleShow);
}

/**
 * The rules after `iif wg lookup T` that keep the appliance from forwarding
 * anything it does not terminate itself (pref P = the iif rule's):
 *   P+1  iif tun lookup main       the stack's replies to devices
 *   P+2  to SUBNET prohibit        nothing else enters a device subnet (the
 *                                  LAN routing it via us, the host itself)
 *   P+3  lookup local              the host's own addresses, moved here from
 *                                  pref 0 so that a device's packet to them
 *                                  meets the iif rule first (and our stack)
 *   P+4  not iif lo prohibit (v6)  IPv6 forwarding is all-or-nothing in the
 *                                  kernel: whatever arrives elsewhere for a
 *                                  foreign address is refused, not forwarded
 * IPv4 needs no P+4: forwarding is on only for the wg and tun interfaces.
 */
export function isolationRules(o: PolicyRoutingOptions, fam: "-4" | "-6"): { pref: number; selector: string[] }[] {
  const p = o.pref ?? o.table;
  const subnets = (o.subnets ?? []).filter((s) => (parsePrefix(s.trim())!.address.length === 4) === (fam === "-4"));
  const rules = [
    { pref: p + 1, selector: ["iif", o.tun, "lookup", "main"] },
    ...subnets.map((s) => ({ pref: p + 2, selector: ["to", s.trim(), "prohibit"] })),
    { pref: p + 3, selector: ["lookup", "local"] },
  ];
  if (fam === "-6") rules.push({ pref: p + 4, selector: ["not", "iif", "lo", "prohibit"] });
  return rules;
}

/** Deletes every rule at these priorities (a crashed older run may have left copies). */
async function deleteRulesAt(d: KernelWgDeps, fam: string, prefs: readonly number[]): Promise<void> {
  for (const pref of new Set(prefs)) {
    for (let i = 0; i < 16; i++) {
      const r = await d.run(["ip", fam, "rule", "del", "pref", String(pref)]);
      if (r.code !== 0) break;
    }
  }
}

/**
 * Sends every packet arriving on `wg` into `tun`, and forwards nothing else:
 * per family an `ip rule … iif wg lookup table` (added once), `ip route
 * replace default dev tun table T`, then the isolation rules (above).
 * Forwarding: IPv4 on the wg and tun interfaces only (ip_forward, which
 * governs every interface, off first); IPv6 on when a v6 subnet is given
 * (guarded by the rules), else off. rp_filter off on all/default/tun/wg
 * (replies leave the TUN with any source address). Idempotent.
 */
export async function installPolicyRouting(o: PolicyRoutingOptions, deps?: Partial<KernelWgDeps>): Promise<void> {
  const d = depsOf(deps);
  checkPolicy(o);
  const table = String(o.table);
  const pref = String(o.pref ?? o.table);
  const v6 = (o.subnets ?? []).some((s) => parsePrefix(s.trim())!.address.length === 16);
  await d.writeSysctl(["net", "ipv4", "ip_forward"], "0");
  for (const ifname of [o.wg, o.tun]) await d.writeSysctl(["net", "ipv4", "conf", ifname, "forwarding"], "1");
  await d.writeSysctl(["net", "ipv6", "conf", "all", "forwarding"], v6 ? "1" : "0");
  for (const scope of ["all", "default", o.tun, o.wg]) await d.writeSysctl(["net", "ipv4", "conf", scope, "rp_filter"], "0");
  for (const fam of FAMILIES) {
    const rules = await must(d, ["ip", fam, "rule", "show"]);
    if (!hasIifRule(rules.stdout, o.wg, o.table)) await must(d, ["ip", fam, "rule", "add", "iif", o.wg, "lookup", table, "pref", pref]);
    await must(d, ["ip", fam, "route", "replace", "default", "dev", o.tun, "table", table]);
    const isolation = isolationRules(o, fam);
    await deleteRulesAt(d, fam, isolation.map((r) => r.pref));
    for (const r of isolation) await must(d, ["ip", fam, "rule", "add", ...r.selector, "pref", String(r.pref)]);
    // The local table now has its place after the iif rule: take it away from pref 0.
    if (hasLocalRuleAtZero(rules.stdout)) await must(d, ["ip", fam, "rule", "del", "pref", "0", "lookup", "local"]);
  }
  log.info("kernel wireguard policy routing installed", { wg: o.wg, tun: o.tun, table: o.table, subnets: (o.subnets ?? []).join(",") });
}

/** Undoes installPolicyRouting's rules and routes, with the local rule back at pref 0 (sysctls stay). */
export async function removePolicyRouting(o: PolicyRoutingOptions, deps?: Partial<KernelWgDeps>): Promise<void> {
  const d = depsOf(deps);
  checkPolicy(o);
  const table = String(o.table);
  for (const fam of FAMILIES) {
    // delete every copy (a crashed older run may have added one more)
    for (let i = 0; i < 16; i++) {
      const rules = await must(d, ["ip", fam, "rule", "show"]);
      if (!hasIifRule(rules.stdout, o.wg, o.table)) break;
      await must(d, ["ip", fam, "rule", "del", "iif", o.wg, "lookup", table]);
    }
    const rules = await must(d, ["ip", fam, "rule", "show"]);
    // The local rule first back at 0, then the isolation rules (its moved copy among them) go.
    if (!hasLocalRuleAtZero(rules.stdout)) await must(d, ["ip", fam, "rule", "add", "pref", "0", "lookup", "local"]);
    await deleteRulesAt(d, fam, isolationRules(o, fam).map((r) => r.pref));
    const routes = await must(d, ["ip", fam, "route", "show", "table", table]);
    if (/^default\b/m.test(routes.stdout)) await must(d, ["ip", fam, "route", "del", "default", "table", table]);
  }
  log.info("kernel wireguard policy routing removed", { wg: o.wg, tun: o.tun, table: o.table });
}
