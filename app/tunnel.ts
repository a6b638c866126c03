// The WireGuard capture mode assembled: the packet plane, the devices that
// may use it (their peers follow approvals and revocations), and the
// device-code onboarding that enrolls them.
import type { Database } from "bun:sqlite";
import type { Duplex } from "node:stream";
import type { Policy, WireGuardSettings } from "./policy/types.ts";
import type { DeviceIdentity, Flow } from "./dispatch/flow.ts";
import type { DeviceRegistry, WireguardDevice } from "./store/devices.ts";
import { AddressPool } from "./store/addresses.ts";
import { OnboardService } from "./control/onboard/index.ts";
import { startKernelPlane, startUserspacePlane, type PacketPlane } from "./net/packet-plane.ts";
import { log } from "./log.ts";

export interface TunnelDeps {
  db: Database;
  devices: DeviceRegistry;
  stateDir: string;
  caCertPem: string;
  publicUrl: string;
  policy(): Policy;
  onFlow(flow: Flow): void;
}

export interface Tunnel {
  plane: PacketPlane;
  onboard: OnboardService;
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
  const identify = (address: string): DeviceIdentity | undefined => {
    const d = deps.devices.lookupByAddress(address);
    return d && d.kind === "wireguard" ? { name: d.name, profile: d.profile } : undefined;
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
      onFlow: (flow) => {
        track(flow);
        deps.onFlow(flow);
      },
    },
    deps.devices.activeWireguard().map((d) => ({ publicKey: d.publicKey, address: d.address })),
  );

  const onboard = new OnboardService({
    db: deps.db,
    registry: deps.devices,
    pool: new AddressPool(deps.db, settings.subnetCidr),
    settings: {
      subnetCidr: settings.subnetCidr,
      listenPort: listenPort(settings.listen),
      publicUrl: deps.publicUrl,
      ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
    },
    profileNames: () => deps.policy().profiles.keys(),
    gatewayPublicKey: () => plane.publicKey,
    caCertPem: () => deps.caCertPem,
    hooks: {
      onDeviceApproved: (d: WireguardDevice) => {
        plane.addPeer({ publicKey: d.publicKey, address: d.address });
        log.info("device approved", { device: d.name, profile: d.profile, address: d.address });
      },
      onDeviceRevoked: (d: WireguardDevice) => {
        plane.removePeer(d.publicKey);
        const cut = cutFlows(d.name);
        log.info("device revoked", { device: d.name, flowsCut: cut });
      },
    },
  });
  const sweep = setInterval(() => onboard.sweep(), 60_000);
  sweep.unref?.();

  return {
    plane,
    onboard,
    cutFlows,
    async close() {
      clearInterval(sweep);
      onboard.close();
      await plane.close();
    },
  };
}
