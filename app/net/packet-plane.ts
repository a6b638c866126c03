// The packet plane: devices' WireGuard tunnels in, Flows out.
//
// 1. a link of decrypted IP packets: our userspace WireGuard on a UDP port
//    (the embedded default, no root), or the kernel's wg0 routed into a TUN
// 2. the userspace stack terminates every TCP connection and UDP exchange
// 3. each TCP connection becomes a Flow for the device that owns its source
//    address, and goes through the same pipeline as the explicit proxy's
import { readFileSync } from "node:fs";
import type { WireGuardSettings } from "../policy/types.ts";
import type { DeviceIdentity, Flow } from "../dispatch/flow.ts";
import { newFlowId } from "../dispatch/flow.ts";
import type { PacketLink } from "./tun/link.ts";
import { NetStack, type TcpFlowInit } from "./stack/netstack.ts";
import { startUserspaceWireGuard, loadOrCreatePrivateKey, type UserspaceWireGuard } from "./wireguard/shell.ts";
import { parsePrefix, formatIp } from "./wireguard/allowedips.ts";
import { log } from "../log.ts";

export interface TunnelPeer {
  publicKey: string;
  /** The device's tunnel address (its only allowed source). */
  address: string;
}

export interface PacketPlaneDeps {
  stateDir: string;
  onFlow(flow: Flow): void;
  /** The device that owns a tunnel source address, if any. */
  identify(address: string): DeviceIdentity | undefined;
  udpPolicy(): "relay" | "drop";
  /** Where device DNS queries are forwarded (host:port); default: the host's resolver. */
  dnsResolver?: string;
}

export interface PacketPlane {
  /** The gateway's own address inside the tunnel (devices' DNS server). */
  gatewayAddress: string;
  publicKey: string;
  /** UDP address WireGuard listens on. */
  listen: { host: string; port: number };
  addPeer(peer: TunnelPeer): void;
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

/** Connects a link of device packets to the stack and the stack's TCP connections to Flows. */
export function attachStack(link: PacketLink, gatewayAddress: string, deps: PacketPlaneDeps): NetStack {
  return new NetStack({
    link,
    settings: { ownAddresses: [gatewayAddress] },
    dns: { resolver: deps.dnsResolver ?? systemResolver() },
    udpPolicy: deps.udpPolicy,
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

export async function startUserspacePlane(settings: WireGuardSettings, deps: PacketPlaneDeps, peers: TunnelPeer[]): Promise<PacketPlane> {
  const key = loadOrCreatePrivateKey(deps.stateDir);
  const gatewayAddress = gatewayAddressOf(settings.subnetCidr);
  const wg: UserspaceWireGuard = await startUserspaceWireGuard({
    listen: parseListen(settings.listen),
    privateKey: key.privateKey,
    peers: peers.map((p) => ({ publicKey: p.publicKey, allowedIPs: [`${p.address}/32`] })),
  });
  const stack = attachStack(wg.link, gatewayAddress, deps);
  return {
    gatewayAddress,
    publicKey: wg.publicKey,
    listen: wg.address,
    addPeer: (p) => void wg.addPeer({ publicKey: p.publicKey, allowedIPs: [`${p.address}/32`] }),
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
