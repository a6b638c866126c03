// Transparent TCP relay: bytes both ways, untouched, with half-close and
// backpressure. Used for destinations the gateway has no opinion on and for
// TLS passthrough (the peeked ClientHello is replayed first).
import net from "node:net";
import type { Duplex } from "node:stream";
import { isFdExhaustion, openFdCount, fdLimit } from "../net/fds.ts";
import { log } from "../log.ts";
import { pipeWithin, type ByteBudget } from "../dispatch/held-bytes.ts";

/**
 * A relay with no byte either way for this long is closed (a device's idle
 * connections must not hold the gateway's descriptors for ever). The
 * upstream side is probed with TCP keep-alive meanwhile, so a dead upstream
 * ends its relay much sooner.
 */
export const RELAY_IDLE_MS = 30 * 60_000;
/** TCP keep-alive on the upstream socket: first probe after this long idle. */
export const RELAY_KEEPALIVE_MS = 60_000;

export interface RelayResult {
  bytesUp: number;
  bytesDown: number;
  /** Why the relay ended badly, if it did (dial failure, reset). */
  error?: string;
}

export interface Dialer {
  (host: string, port: number): Duplex & { setNoDelay?(v: boolean): unknown; setTimeout?(ms: number, cb?: () => void): unknown };
}

export const dialTcp: Dialer = (host, port) => {
  const sock = net.connect({ host, port, allowHalfOpen: true });
  sock.setNoDelay(true);
  sock.setKeepAlive(true, RELAY_KEEPALIVE_MS);
  return sock;
};

/** The upstream's error as the operator should read it: running out of descriptors is said as such. */
function upstreamError(e: Error & { code?: string }): string {
  if (!isFdExhaustion(e.code)) return `upstream: ${e.message}`;
  const open = openFdCount();
  const limit = fdLimit();
  log.error("out of file descriptors: a relay could not dial its upstream", { open, limit, error: e.message });
  return `upstream: out of file descriptors (${open ?? "?"} open of ${limit ?? "?"}; the runtime said: ${e.message})`;
}

/**
 * Pipes `agent` <-> a new connection to host:port until both directions have
 * ended. `initial` holds bytes already read from the agent (a peeked
 * ClientHello) and is sent first. The bytes read from one side and not yet
 * taken by the other are held against the device's `budget`: at its quota
 * the relay stops reading (app/dispatch/held-bytes.ts).
 */
export function relay(
  agent: Duplex,
  host: string,
  port: number,
  initial: Uint8Array | undefined,
  dial: Dialer = dialTcp,
  idleMs = RELAY_IDLE_MS,
  budget?: ByteBudget,
): Promise<RelayResult> {
  return new Promise((resolve) => {
    const upstream = dial(host, port);
    const result: RelayResult = { bytesUp: initial?.length ?? 0, bytesDown: 0 };
    let agentEnded = false;
    let upstreamEnded = false;
    // Our FIN toward each side has been handed on with everything before it.
    let agentFlushed = false;
    let upstreamFlushed = false;
    let settled = false;

    const finish = (error?: string) => {
      if (settled) return;
      settled = true;
      if (error) result.error = error;
      up.stop();
      down.stop();
      agent.destroy();
      upstream.destroy();
      resolve(result);
    };
    // A clean end waits until both directions are flushed, so destroying
    // cannot cut bytes still queued toward a side (which would be a reset).
    const maybeDone = () => {
      if (agentEnded && upstreamEnded && agentFlushed && upstreamFlushed) finish();
    };
    agent.once("finish", () => {
      agentFlushed = true;
      maybeDone();
    });
    upstream.once("finish", () => {
      upstreamFlushed = true;
      maybeDone();
    });

    if (initial && initial.length > 0) upstream.write(initial);

    // Each side is read as the other drains and the device's budget has room.
    const up = pipeWithin(agent, upstream, budget, (n) => (result.bytesUp += n));
    const down = pipeWithin(upstream, agent, budget, (n) => (result.bytesDown += n));

    // Half-close: a FIN from one side becomes a FIN toward the other.
    agent.on("end", () => {
      agentEnded = true;
      upstream.end();
      maybeDone();
    });
    upstream.on("end", () => {
      upstreamEnded = true;
      agent.end();
      maybeDone();
    });
    agent.on("error", (e: Error) => finish(`agent: ${e.message}`));
    upstream.on("error", (e: Error) => finish(upstreamError(e)));
    // Inactivity of the upstream socket is inactivity both ways (what the agent sends is written to it).
    upstream.setTimeout?.(idleMs, () => finish(`idle for ${idleMs / 1000} s`));
    // A side that closed can neither send nor receive any more.
    agent.on("close", () => finish());
    upstream.on("close", () => finish());
  });
}
