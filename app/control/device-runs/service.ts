// Per-run peers as the gateway runs them: the store (app/store/run-peers.ts)
// kept in step with the packet plane's WireGuard peers.
//
// 1. register: a device (authenticated by its API token, in routes.ts) adds
//    an ephemeral key; it gets an address of its own and a peer whose only
//    allowed source is that address. Flows from it are the device's.
// 2. end: the run deregisters on exit; its peer goes at once.
// 3. endDevice: revocation ends every run of the device with it.
// 4. sweep (every SWEEP_MS): peers that never handshook or went idle are
//    dropped (liveness.ts); a killed run does not leak a peer for ever.
import { AddressError, type AddressPool } from "../../store/addresses.ts";
import { RunPeerError, type RunPeer, type RunPeerStore } from "../../store/run-peers.ts";
import type { TunnelPeer } from "../../net/packet-plane.ts";
import { ApiError } from "../errors.ts";
import { log } from "../../log.ts";
import { DEFAULT_RUN_BOUNDS, initialLiveness, judge, observe, type Liveness, type RunBounds } from "./liveness.ts";

/** How often the gateway looks for dead run peers. */
export const SWEEP_MS = 30_000;

/** The part of the packet plane run peers need. */
export interface RunPlane {
  publicKey: string;
  /** May resolve later (kernel mode: after `wg set`). */
  addPeer(peer: TunnelPeer): void | Promise<void>;
  removePeer(publicKey: string): void;
  peers(): { publicKey: string; lastHandshake: number | undefined; rxBytes: number; txBytes: number }[];
}

export interface DeviceRunsDeps {
  store: RunPeerStore;
  pool: AddressPool;
  plane: RunPlane;
  now?: () => number;
  bounds?: RunBounds;
}

export interface RunStatus extends RunPeer {
  lastHandshake: number | undefined;
  rxBytes: number;
  txBytes: number;
}

export class DeviceRuns {
  private readonly now: () => number;
  private readonly bounds: RunBounds;
  /** by public key */
  private readonly live = new Map<string, Liveness>();

  constructor(private readonly deps: DeviceRunsDeps) {
    this.now = deps.now ?? Date.now;
    this.bounds = deps.bounds ?? DEFAULT_RUN_BOUNDS;
    // Runs of devices revoked while the gateway was down end now; the rest
    // (the plane was started with them, see tunnelPeers) get a fresh grace.
    for (const p of deps.store.releaseRevoked()) deps.plane.removePeer(p.publicKey);
    const start = this.now();
    for (const p of deps.store.active()) this.live.set(p.publicKey, initialLiveness(start));
  }

  /** The peers to start the plane with. */
  static tunnelPeers(store: RunPeerStore): TunnelPeer[] {
    return store.active().map((p) => ({ publicKey: p.publicKey, address: p.address, ...(p.address6 ? { address6: p.address6 } : {}) }));
  }

  async register(device: string, publicKey: string): Promise<RunPeer> {
    let peer: RunPeer;
    try {
      peer = this.deps.store.register(device, publicKey, this.deps.pool, [this.deps.plane.publicKey]);
    } catch (e) {
      if (e instanceof RunPeerError) {
        const status = e.code === "too_many_runs" ? 429 : e.code === "no_such_device" ? 403 : 409;
        throw new ApiError(status, e.code, e.message);
      }
      if (e instanceof AddressError) throw new ApiError(409, e.code, e.message);
      throw e;
    }
    this.live.set(peer.publicKey, initialLiveness(this.now()));
    try {
      await this.deps.plane.addPeer({ publicKey: peer.publicKey, address: peer.address, ...(peer.address6 ? { address6: peer.address6 } : {}) });
    } catch (e) {
      // Without its peer the run could not work: undo, and say so.
      this.deps.store.release(peer.id);
      this.live.delete(peer.publicKey);
      this.deps.plane.removePeer(peer.publicKey);
      log.error("run peer: adding the WireGuard peer failed", { device, error: (e as Error).message });
      throw new ApiError(500, "peer_setup_failed", "the gateway could not add the WireGuard peer");
    }
    log.info("run peer registered", { device: device, run: peer.id, address: peer.address, peer: peer.publicKey });
    return peer;
  }

  /** Ends a run of `device`; false when it has no such run. */
  end(device: string, runId: string, why = "deregistered"): boolean {
    const p = this.deps.store.release(runId, device);
    if (!p) return false;
    this.drop(p, why);
    return true;
  }

  /** Ends every run of a device (it was revoked). */
  endDevice(device: string): RunPeer[] {
    const ended = this.deps.store.releaseDevice(device);
    for (const p of ended) this.drop(p, "device revoked");
    return ended;
  }

  list(device?: string): RunStatus[] {
    const status = new Map(this.deps.plane.peers().map((s) => [s.publicKey, s]));
    return this.deps.store.active(device).map((p) => {
      const s = status.get(p.publicKey);
      return { ...p, lastHandshake: s?.lastHandshake, rxBytes: s?.rxBytes ?? 0, txBytes: s?.txBytes ?? 0 };
    });
  }

  /** Drops run peers that never handshook or went idle; returns them. */
  sweep(): RunPeer[] {
    const now = this.now();
    const status = new Map(this.deps.plane.peers().map((s) => [s.publicKey, s]));
    const expired: RunPeer[] = [];
    const current = this.deps.store.active();
    const keys = new Set(current.map((p) => p.publicKey));
    for (const k of this.live.keys()) if (!keys.has(k)) this.live.delete(k);
    for (const p of current) {
      const prev = this.live.get(p.publicKey) ?? initialLiveness(now);
      const next = observe(prev, status.get(p.publicKey), now);
      this.live.set(p.publicKey, next);
      const v = judge(next, now, this.bounds);
      if (v.verdict === "expire" && this.deps.store.release(p.id)) {
        this.drop(p, `expired: ${v.reason}`);
        expired.push(p);
      }
    }
    return expired;
  }

  private drop(p: RunPeer, why: string): void {
    this.live.delete(p.publicKey);
    this.deps.plane.removePeer(p.publicKey);
    log.info("run peer removed", { device: p.device, run: p.id, address: p.address, reason: why });
  }
}
