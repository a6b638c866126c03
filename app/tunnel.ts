// The WireGuard capture mode assembled: the packet plane, the devices that
// may use it (their peers follow approvals and revocations), and the
// device-code onboarding that enrolls them.
import type { BufferAccount } from "./net/stack/tcp/buffer.ts";
import type { Database } from "bun:sqlite";
import type { Duplex } from "node:stream";
import type { Policy, WireGuardSettings } from "./policy/types.ts";
import type { DeviceIdentity, Flow } from "./dispatch/flow.ts";
import type { DeviceRegistry, WireguardDevice } from "./store/devices.ts";
import { AddressPool } from "./store/addresses.ts";
import { OnboardService } from "./control/onboard/index.ts";
import { DeviceRuns, SWEEP_MS as RUN_SWEEP_MS } from "./control/device-runs/index.ts";
import { RunPeerStore } from "./store/run-peers.ts";
import { startKernelPlane, startUserspacePlane, type PacketPlane } from "./net/packet-plane.ts";
import { checkDestination, type DestinationContext } from "./dispatch/destinations.ts";
import { log } from "./log.ts";
import { sshTrustForProfile } from "./endpoints/ssh/trust.ts";

export interface TunnelDeps {
  db: Database;
  devices: DeviceRegistry;
  stateDir: string;
  caCertPem: string;
  publicUrl: string;
  policy(): Policy;
  onFlow(flow: Flow): void;
  /** Where device DNS goes (the DNS-VIP responder, ip:port); default: the host's resolver. */
  dnsResolver?: string;
  /** What relayed UDP may reach (the same destination policy as TCP relays). */
  destinations?: () => DestinationContext;
  /** Per-device quota of relayed UDP flows: open() false refuses the flow (the device gets ICMP). */
  udpQuota?: { open(device: DeviceIdentity, dst: { host: string; port: number }): boolean; close(device: DeviceIdentity): void };
  /** Per-device buffered-bytes quota (app/dispatch/quotas.ts). */
  bufferAccount?(device: DeviceIdentity): BufferAccount;
  /** A device's UDP datagram the destination policy refused (to be recorded). */
  onUdpRefused?(device: DeviceIdentity, dst: { host: string; port: number }, reason: string): void;
}

export interface Tunnel {
  plane: PacketPlane;
  onboard: OnboardService;
  /** Per-run peers of devices (`clawpatrol run`). */
  runs: DeviceRuns;
  /** Ends every open flow of a device (revocation cuts traffic at once). */
  cutFlows(device: string): number;
  close(): Promise<void>;
}

function listenPort(listen: string): number {
  return Number(/:(\d+)$/.exec(listen)?.[1] ?? 51820);
}

export async function startTunnel(settings: WireGuardSettings, deps: TunnelDeps): Promise<Tunnel> {
  // Open flows per device, so a revocation can end them.
  const open = new Map<string, Set<Duplex>>();
  const track = (flow: Flow) => {
    let set = open.get(flow.device.name);
    if (!set) open.set(flow.device.name, (set = new Set()));
    set.add(flow.conn);
    flow.conn.once("close", () => set!.delete(flow.conn));
  };
  const cutFlows = (device: string): number => {
    const set = open.get(device);
    if (!set) return 0;
    for (const conn of set) conn.destroy();
    open.delete(device);
    return set.size;
  };

  // The profile is read at every flow, so a profile change applies on the next one.
  // A run's own address (a per-run peer) is its device's.
  const runStore = new RunPeerStore(deps.db);
  const identify = (address: string): DeviceIdentity | undefined => {
    const d = deps.devices.lookupByAddress(address);
    if (d) return d.kind === "wireguard" ? { name: d.name, profile: d.profile } : undefined;
    return runStore.lookupByAddress(address);
  };

  // kernel: the kernel's wg0 routed into our TUN (the appliance, root);
  // userspace: our own WireGuard on a UDP socket. Same stack, same Flows.
  const start = settings.mode === "kernel" ? startKernelPlane : startUserspacePlane;
  const plane = await start(
    settings,
    {
      stateDir: deps.stateDir,
      identify,
      udpPolicy: () => deps.policy().defaults.udp,
      ...(deps.udpQuota ? { udpQuota: deps.udpQuota } : {}),
      ...(deps.bufferAccount ? { bufferAccount: deps.bufferAccount } : {}),
      ...(deps.destinations
        ? {
            udpDestinationAllowed: (dst: { host: string; port: number }, src: { host: string; port: number }) => {
              const v = checkDestination(dst.host, dst.port, deps.destinations!());
              if (v.verdict === "allow") return true;
              const device = identify(src.host);
              if (device) deps.onUdpRefused?.(device, dst, v.reason);
              return false;
            },
          }
        : {}),
      ...(deps.dnsResolver ? { dnsResolver: deps.dnsResolver } : {}),
      onFlow: (flow) => {
        track(flow);
        deps.onFlow(flow);
      },
    },
    [
      ...deps.devices.activeWireguard().map((d) => ({ publicKey: d.publicKey, address: d.address, ...(d.address6 ? { address6: d.address6 } : {}) })),
      ...DeviceRuns.tunnelPeers(runStore),
    ],
  );
  const pool = new AddressPool(deps.db, settings.subnetCidr, settings.subnet6Cidr);
  const runs = new DeviceRuns({ store: runStore, pool, plane });

  const onboard = new OnboardService({
    db: deps.db,
    registry: deps.devices,
    pool,
    settings: {
      subnetCidr: settings.subnetCidr,
      ...(settings.subnet6Cidr ? { subnet6Cidr: settings.subnet6Cidr } : {}),
      listenPort: listenPort(settings.listen),
      publicUrl: deps.publicUrl,
      ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
    },
    profileNames: () => deps.policy().profiles.keys(),
    gatewayPublicKey: () => plane.publicKey,
    caCertPem: () => deps.caCertPem,
    sshTrust: (profile) => sshTrustForProfile(deps.policy(), profile, { db: deps.db, stateDir: deps.stateDir }, Date.now()),
    hooks: {
      onDeviceApproved: async (d: WireguardDevice) => {
        await plane.addPeer({ publicKey: d.publicKey, address: d.address, ...(d.address6 ? { address6: d.address6 } : {}) });
        log.info("device approved", { device: d.name, profile: d.profile, address: d.address });
      },
      onDeviceRevoked: (d: WireguardDevice) => {
        plane.removePeer(d.publicKey);
        const ended = runs.endDevice(d.name);
        const cut = cutFlows(d.name);
        log.info("device revoked", { device: d.name, flowsCut: cut, runsEnded: ended.length });
      },
    },
  });
  const sweep = setInterval(() => onboard.sweep(), 60_000);
  sweep.unref?.();
  const runSweep = setInterval(() => runs.sweep(), RUN_SWEEP_MS);
  runSweep.unref?.();

  return {
    plane,
    onboard,
    runs,
    cutFlows,
    async close() {
      clearInterval(sweep);
      clearInterval(runSweep);
      onboard.close();
      await plane.close();
    },
  };
}
