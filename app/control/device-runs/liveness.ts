// When does the gateway drop a run peer nobody deregistered? A killed run
// (SIGKILL, a crash, a lost laptop) never sends its DELETE, and its key died
// with it, so its peer is harmless but would hold an address and a peer slot
// forever. Pure: observations and `now` in, a verdict out; the service owns
// the clock and the plane.
//
// A live run talks: its WireGuard sends a persistent keepalive every 25 s
// and re-handshakes every REKEY_AFTER_TIME (120 s) while it sends anything.
// So the gateway drops a run peer that
//   - never completed a handshake within RUN_HANDSHAKE_GRACE_MS of being
//     registered (the client gives up after 10 s by default), or
//   - has received nothing for RUN_IDLE_MS (24 keepalives missed).
// A run suspended longer than that (a laptop asleep) loses its peer; its
// command keeps running without network and is restarted by hand.

export const RUN_HANDSHAKE_GRACE_MS = 2 * 60_000;
export const RUN_IDLE_MS = 10 * 60_000;

export interface RunBounds {
  handshakeGraceMs: number;
  idleMs: number;
}

export const DEFAULT_RUN_BOUNDS: RunBounds = { handshakeGraceMs: RUN_HANDSHAKE_GRACE_MS, idleMs: RUN_IDLE_MS };

/** What the gateway remembers of a run peer between sweeps. */
export interface Liveness {
  /** ms: registration, or the gateway's start for peers loaded from the database */
  since: number;
  /** ms: the last time anything was seen from it (handshake or received bytes) */
  lastActive: number;
  /** received bytes at the last observation */
  rxBytes: number;
  handshook: boolean;
}

/** The plane's view of the peer now; undefined when the plane does not list it (yet). */
export interface PeerObservation {
  lastHandshake: number | undefined;
  rxBytes: number;
}

export type LivenessVerdict = { verdict: "keep" } | { verdict: "expire"; reason: string };

export function initialLiveness(since: number): Liveness {
  return { since, lastActive: since, rxBytes: 0, handshook: false };
}

/** Folds one observation into the state: activity moves lastActive forward. */
export function observe(prev: Liveness, obs: PeerObservation | undefined, now: number): Liveness {
  if (!obs) return prev;
  const next = { ...prev };
  if (obs.rxBytes !== prev.rxBytes) {
    next.rxBytes = obs.rxBytes;
    next.lastActive = now;
  }
  if (obs.lastHandshake !== undefined) {
    next.handshook = true;
    if (obs.lastHandshake > next.lastActive) next.lastActive = Math.min(obs.lastHandshake, now);
  }
  return next;
}

export function judge(l: Liveness, now: number, bounds: RunBounds = DEFAULT_RUN_BOUNDS): LivenessVerdict {
  if (!l.handshook && now - l.since >= bounds.handshakeGraceMs) {
    return { verdict: "expire", reason: `no handshake within ${Math.round(bounds.handshakeGraceMs / 1000)} s` };
  }
  if (now - l.lastActive >= bounds.idleMs) {
    return { verdict: "expire", reason: `nothing received for ${Math.round(bounds.idleMs / 1000)} s` };
  }
  return { verdict: "keep" };
}
