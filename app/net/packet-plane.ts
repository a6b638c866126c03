// The packet plane: devices' WireGuard tunnels in, Flows out.
//
// 1. a link of decrypted IP packets: our userspace WireGuard on a UDP port
//    (the embedded default, no root), or the kernel's wg0 routed into a TUN
// 2. the userspace stack terminates every TCP connection and UDP exchange
// 3. each TCP connection becomes a Flow for the device that owns its source
//    address, and goes through the same pipeline as the explicit proxy's
import { gatewayAddress, parseSubnet } from "../store/addresses.ts";
import { readFileSync } from "node:fs";
import type { WireGuardSettings } from "../policy/types.ts";
import type { DeviceIdentity, Flow } from "../dispatch/flow.ts";
import { newFlowId } from "../dispatch/flow.ts";
import type { PacketLink } from "./tun/link.ts";
import { NetStack, type TcpFlowInit } from "./stack/netstack.ts";
import type { BufferAccount } from "./stack/tcp/buffer.ts";
import { INTERNAL_HOST } from "../dispatch/dispatch.ts";
import { startUserspaceWireGuard, loadOrCreatePrivateKey, type UserspaceWireGuard } from "./wireguard/shell.ts";
import { openTun, interfaceMtu } from "./tun/tun.ts";
import * as kernelWg from "./kernel-wg.ts";
import { parsePrefix, formatIp } from "./wireguard/allowedips.ts";
import { log } from "../log.ts";

export interface TunnelPeer {
  publicKey: string;
  /** The device's tunnel address (its only allowed source). */
  address: string;
  /** Its IPv6 tunnel address, when the gateway has a subnet6_cidr. */
  address6?: string;
}

export interface PacketPlaneDeps {
  stateDir: string;
  onFlow(flow: Flow): void;
  /** The device that owns a tunnel source address, if any. */
  identify(address: string): DeviceIdentity | undefined;
  udpPolicy(): "relay" | "drop";
  /** Where device DNS queries are forwarded (host:port); default: the host's resolver. */
  dnsResolver?: string;
  /** The destination policy for relayed UDP (TCP meets it in the flow shell); default: no extra check. */
  udpDestinationAllowed?: (dst: { host: string; port: number }, src: { host: string; port: number }) => boolean;
  /** Per-device quota of relayed UDP flows (app/dispatch/quotas.ts); the device is the source address's owner. */
  udpQuota?: { open(device: DeviceIdentity, dst: { host: string; port: number }): boolean; close(device: DeviceIdentity): void };
  /** Per-device buffered-bytes quota: the account a device's TCP connections allocate their buffers from. */
  bufferAccount?(device: DeviceIdentity): BufferAccount;
}

export interface PacketPlane {
  /** The gateway's own address inside the tunnel (devices' DNS server). */
  gatewayAddress: string;
  publicKey: string;
  /** UDP address WireGuard listens on. */
  listen: { host: string; port: number };
  /** Kernel mode: resolves once `wg set` has the peer, rejects if it failed (userspace: at once). */
  addPeer(peer: TunnelPeer): void | Promise<void>;
  removePeer(publicKey: string): void;
  peers(): { publicKey: string; lastHandshake: number | undefined; rxBytes: number; txBytes: number }[];
  stack: NetStack;
  close(): Promise<void>;
}

/** The first host address of the subnet: the gateway's own tunnel address. */
export function gatewayAddressOf(subnetCidr: string): string {
  const prefix = parsePrefix(subnetCidr);
  if (!prefix || prefix.address.length !== 4) throw new Error(`subnet_cidr ${subnetCidr} is not an IPv4 network`);
  const a = prefix.address;
  const mask = prefix.bits === 0 ? 0 : (0xffffffff << (32 - prefix.bits)) >>> 0;
  const net = ((((a[0]! << 24) | (a[1]! << 16) | (a[2]! << 8) | a[3]!) >>> 0) & mask) >>> 0;
  const first = net + 1;
  return formatIp(Uint8Array.of(first >>> 24, (first >>> 16) & 0xff, (first >>> 8) & 0xff, first & 0xff));
}

/** The network of a CIDR in canonical form ("10.88.0.7/24" -> "10.88.0.0/24"). */
export function networkOf(subnetCidr: string): string {
  const prefix = parsePrefix(subnetCidr);
  if (!prefix || prefix.address.length !== 4) throw new Error(`subnet_cidr ${subnetCidr} is not an IPv4 network`);
  const a = prefix.address;
  const mask = prefix.bits === 0 ? 0 : (0xffffffff << (32 - prefix.bits)) >>> 0;
  const net = ((((a[0]! << 24) | (a[1]! << 16) | (a[2]! << 8) | a[3]!) >>> 0) & mask) >>> 0;
  return `${formatIp(Uint8Array.of(net >>> 24, (net >>> 16) & 0xff, (net >>> 8) & 0xff, net & 0xff))}/${prefix.bits}`;
}

/** The first nameserver in /etc/resolv.conf, as host:53. */
export function systemResolver(path = "/etc/resolv.conf"): string {
  try {
    for (const line of readFileSync(path, "utf8").split("\n")) {
      const m = /^\s*nameserver\s+(\S+)/.exec(line);
      if (m) return m[1]!.includes(":") ? `[${m[1]}]:53` : `${m[1]}:53`;
    }
  } catch {
    /* no resolv.conf: fall through */
  }
  return "127.0.0.53:53";
}

function parseListen(listen: string): { host: string; port: number } {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(listen);
  if (!m) throw new Error(`invalid listen address "${listen}"`);
  return { host: m[1]!, port: Number(m[2]) };
}

/** The gateway's IPv6 tunnel address (the subnet's first host), when subnet6_cidr is set. */
export function gatewayAddress6Of(settings: Pick<WireGuardSettings, "subnet6Cidr">): string | undefined {
  return settings.subnet6Cidr === undefined ? undefined : gatewayAddress(parseSubnet(settings.subnet6Cidr));
}

/** A device's allowed source addresses: its /32, and its /128 when it has one. */
export function allowedIPsOf(p: TunnelPeer): string[] {
  return p.address6 ? [`${p.address}/32`, `${p.address6}/128`] : [`${p.address}/32`];
}

/** Connects a link of device packets to the stack and the stack's TCP connections to Flows. */
export function attachStack(link: PacketLink, gatewayAddress: string, deps: PacketPlaneDeps, gatewayAddress6?: string): NetStack {
  return new NetStack({
    link,
    settings: { ownAddresses: gatewayAddress6 ? [gatewayAddress, gatewayAddress6] : [gatewayAddress] },
    dns: { resolver: deps.dnsResolver ?? systemResolver() },
    // https://clawpatrol.internal/ (the discovery service) is the gateway itself.
    localNames: new Map([[INTERNAL_HOST, gatewayAddress]]),
    udpPolicy: deps.udpPolicy,
    ...(deps.udpDestinationAllowed ? { udpDestinationAllowed: deps.udpDestinationAllowed } : {}),
    ...(deps.udpQuota ? { udpFlowQuota: udpFlowQuotaOf(deps) } : {}),
    ...(deps.bufferAccount
      ? {
          tcpBufferAccount: (src: string) => {
            const device = deps.identify(src);
            return device ? deps.bufferAccount!(device) : undefined;
          },
        }
      : {}),
    onTcpFlow: (init: TcpFlowInit) => {
      const device = deps.identify(init.src.host);
      if (!device) {
        // The tunnel authenticated the peer, but no device owns this address any more.
        log.warn("tunnel flow from an unknown address", { src: init.src.host });
        init.conn.destroy();
        return;
      }
      deps.onFlow({
        id: newFlowId(),
        proto: "tcp",
        src: init.src,
        dst: init.dst,
        device,
        conn: init.conn,
        startedAt: Date.now(),
      });
    },
  });
}

/** The stack's per-source-address UDP flow admission, as the per-device quota of the address's owner. */
function udpFlowQuotaOf(deps: PacketPlaneDeps): { open(src: string, dst: { host: string; port: number }): boolean; close(src: string): void } {
  const q = deps.udpQuota!;
  // A flow admitted for a device is released for that same device, even if the address changes hands meanwhile.
  const owners = new Map<string, { device: DeviceIdentity; flows: number }>();
  return {
    open(src, dst) {
      const device = deps.identify(src);
      if (!device || !q.open(device, dst)) return false;
      const o = owners.get(src);
      if (o && o.device.name === device.name) o.flows++;
      else owners.set(src, { device, flows: 1 });
      return true;
    },
    close(src) {
      const o = owners.get(src);
      if (!o) return;
      q.close(o.device);
      if (--o.flows <= 0) owners.delete(src);
    },
  };
}

export async function startUserspacePlane(settings: WireGuardSettings, deps: PacketPlaneDeps, peers: TunnelPeer[]): Promise<PacketPlane> {
  const key = loadOrCreatePrivateKey(deps.stateDir);
  const gatewayAddress = gatewayAddressOf(settings.subnetCidr);
  const wg: UserspaceWireGuard = await startUserspaceWireGuard({
    listen: parseListen(settings.listen),
    privateKey: key.privateKey,
    peers: peers.map((p) => ({ publicKey: p.publicKey, allowedIPs: allowedIPsOf(p) })),
  });
  const stack = attachStack(wg.link, gatewayAddress, deps, gatewayAddress6Of(settings));
  return {
    gatewayAddress,
    publicKey: wg.publicKey,
    listen: wg.address,
    addPeer: (p) => void wg.addPeer({ publicKey: p.publicKey, allowedIPs: allowedIPsOf(p) }),
    removePeer: (publicKey) => void wg.removePeer(publicKey),
    peers: () =>
      wg.peers().map((p) => ({ publicKey: p.publicKey, lastHandshake: p.lastHandshake, rxBytes: p.rxBytes, txBytes: p.txBytes })),
    stack,
    async close() {
      stack.close();
      wg.close();
    },
  };
}

export interface KernelPlaneOptions {
  /** The routing table devices' packets are looked up in (default 100; the rule's pref is the same). */
  table?: number;
  /** How `ip`/`wg` are run and sysctls written (tests inject; default: the real commands). */
  kernel?: Partial<kernelWg.KernelWgDeps>;
  /** IFF_VNET_HDR on the TUN: TSO super-packets from the kernel (default off). */
  vnetHdr?: boolean;
  /** How often the cached peer status (peers()) is refreshed from `wg show` (default 10 s). */
  peerRefreshMs?: number;
}

/**
 * Kernel mode (the appliance): the kernel's WireGuard interface terminates
 * the tunnels, policy routing sends everything that arrives on it into our
 * TUN, and the same stack and Flow path as userspace mode take it from there.
 *
 *   1. the private key from the state directory (`wg.key`, as userspace mode)
 *   2. the interface (existing, or created): key, listen port, up. It gets no
 *      address of its own: the gateway's tunnel address must reach the TUN
 *      like any other destination (device DNS, pings to the gateway), and an
 *      address on wg0 would put it in the local table, which wins over the iif
 *      rule. A route for the subnet on it carries the replies back.
 *   3. peers: exactly the active devices (stale peers left on the interface
 *      by an earlier run or revoked while the gateway was down are removed),
 *      allowed IPs `<device address>/32` — the kernel enforces the source, so
 *      identity by source address is as sound as in userspace mode
 *   4. the TUN (attached, or created non-persistent): addrgenmode none, a
 *      long tx queue, wg0's MTU, up; the stack attached to it
 *   5. policy routing: `ip rule iif wg0 lookup 100`, `default dev cp0 table 100`,
 *      and nothing else forwarded (kernel-wg.ts isolationRules): a device's
 *      packet to any address, the host's own included, reaches our stack, and
 *      nothing but the stack's replies enters the device subnet
 *
 * close() fails closed: it removes the peers it set (so with the gateway down
 * nothing a device sends is forwarded ungoverned by the kernel), the policy
 * routing, and the TUN. wg0 itself, its key and port stay: the kernel owns it.
 */
export async function startKernelPlane(
  settings: WireGuardSettings,
  deps: PacketPlaneDeps,
  peers: TunnelPeer[],
  opts: KernelPlaneOptions = {},
): Promise<PacketPlane> {
  const kd = opts.kernel;
  const run = kd?.run ?? kernelWg.defaultRunner;
  const must = async (argv: string[]): Promise<void> => {
    const r = await run(argv);
    if (r.code !== 0) throw new kernelWg.KernelWgError(`${argv.join(" ")} failed (${r.code}): ${r.stderr.trim().slice(0, 500)}`, argv, r.stderr.trim());
  };
  const key = loadOrCreatePrivateKey(deps.stateDir);
  const gatewayAddress = gatewayAddressOf(settings.subnetCidr);
  const subnet = networkOf(settings.subnetCidr);
  const listen = parseListen(settings.listen);
  const wgIf = settings.interface;
  const routing = { wg: wgIf, tun: settings.tun, table: opts.table ?? 100, subnets: settings.subnet6Cidr ? [subnet, settings.subnet6Cidr] : [subnet] };
  const peerConfig = (p: TunnelPeer): kernelWg.KernelPeerConfig => ({ publicKey: p.publicKey, allowedIPs: allowedIPsOf(p) });

  // 1-3: the interface and its peers.
  await kernelWg.ensureInterface({ name: wgIf, privateKeyFile: key.file, listenPort: listen.port, address: [] }, kd);
  const wanted = new Set(peers.map((p) => p.publicKey));
  let status: kernelWg.KernelPeerStatus[] = [];
  let tun: ReturnType<typeof openTun> | undefined;
  let stack: NetStack | undefined;
  try {
    await must(["ip", "route", "replace", subnet, "dev", wgIf]);
    if (settings.subnet6Cidr) await must(["ip", "-6", "route", "replace", settings.subnet6Cidr, "dev", wgIf]);
    for (const p of peers) await kernelWg.setPeer(wgIf, peerConfig(p), kd);
    status = await kernelWg.listPeers(wgIf, kd);
    for (const stale of status.filter((s) => !wanted.has(s.publicKey))) {
      await kernelWg.removePeer(wgIf, stale.publicKey, kd);
      log.warn("kernel wireguard: removed a peer no active device owns", { interface: wgIf, peer: stale.publicKey });
    }

    // 4: the TUN and the stack.
    const wgMtu = interfaceMtu(wgIf);
    const t = (tun = openTun({
      name: settings.tun,
      ...(opts.vnetHdr || settings.tunOffload ? { vnetHdr: true } : {}),
      onError: (e) => log.error("tun reader stopped", { tun: settings.tun, error: e.message }),
    }));
    await must(["ip", "link", "set", "dev", t.name, "addrgenmode", "none"]);
    await must(["ip", "link", "set", "dev", t.name, "txqueuelen", "10000", "mtu", String(wgMtu), "up"]);
    // The link the stack sees reports wg0's MTU (the TUN's was read before we set it).
    const link: PacketLink = {
      name: t.name,
      mtu: wgMtu,
      onPackets: (h) => t.onPackets(h),
      write: (p) => t.write(p),
      close: () => t.close(),
    };
    stack = attachStack(link, gatewayAddress, deps, gatewayAddress6Of(settings));
    // 5: only now does traffic flow into the TUN.
    await kernelWg.installPolicyRouting(routing, kd);
  } catch (e) {
    // Fail closed: no peer stays on an interface whose traffic nothing governs.
    for (const p of wanted) await kernelWg.removePeer(wgIf, p, kd).catch(() => undefined);
    await kernelWg.removePolicyRouting(routing, kd).catch(() => undefined);
    stack?.close();
    tun?.close();
    throw e;
  }
  const tunDevice = tun;
  const st = stack;

  // Peer changes run in order (an approval then a revocation must end revoked).
  let ops: Promise<void> = Promise.resolve();
  const enqueue = (what: string, fn: () => Promise<void>) => {
    ops = ops.then(fn).catch((e: Error) => log.error(`kernel wireguard: ${what} failed`, { interface: wgIf, error: e.message }));
  };
  const set = new Set(wanted);
  const refresh = async () => {
    status = await kernelWg.listPeers(wgIf, kd);
  };
  const timer = setInterval(() => enqueue("peer status", refresh), opts.peerRefreshMs ?? 10_000);
  timer.unref?.();

  let closed = false;
  return {
    gatewayAddress,
    publicKey: key.publicKey,
    listen,
    addPeer(p) {
      set.add(p.publicKey);
      // Callers wait for it: a device's first handshake should find its peer.
      return new Promise<void>((resolve, reject) => {
        enqueue("set peer", async () => {
          try {
            await kernelWg.setPeer(wgIf, peerConfig(p), kd);
          } catch (e) {
            reject(e as Error);
            throw e;
          }
          resolve();
          await refresh();
        });
      });
    },
    removePeer(publicKey) {
      set.delete(publicKey);
      enqueue("remove peer", async () => {
        await kernelWg.removePeer(wgIf, publicKey, kd);
        await refresh();
      });
    },
    peers: () =>
      status.map((p) => ({ publicKey: p.publicKey, lastHandshake: p.lastHandshake, rxBytes: p.rxBytes, txBytes: p.txBytes })),
    stack: st,
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      await ops;
      // Fail closed first: no peer, no traffic; then the routing and the TUN.
      for (const publicKey of set) await kernelWg.removePeer(wgIf, publicKey, kd).catch((e: Error) => log.error("kernel wireguard: remove peer failed", { error: e.message }));
      await kernelWg.removePolicyRouting(routing, kd).catch((e: Error) => log.error("kernel wireguard: removing policy routing failed", { error: e.message }));
      st.close();
      tunDevice.close();
    },
  };
}
