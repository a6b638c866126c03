// What the end of an upstream attempt means for one forwarded exchange,
// sans-IO: facts about the attempt in, a value out (try again, answer 502,
// give the upstream back to the pool, keep the agent's connection). The
// session only carries these out.
import type { HeaderList } from "../http1/headers.ts";
import { simpleResponse } from "../http1/serialize.ts";

/**
 * The upstream could not be dialed. Nothing was sent on it, so a transient
 * failure (refused, reset, timed out: a burst at the upstream's accept
 * queue) is dialed once more; otherwise 502, and the agent's connection goes
 * on when the request was read whole.
 */
export function dialFailed(x: {
  sni: string;
  message: string;
  complete: boolean;
  keepAlive: boolean;
  /** The failure may pass (not a certificate refused, say). */
  transient?: boolean;
  /** A dial of this exchange was already retried. */
  retried?: boolean;
}): { retry: true } | { retry: false; status: 502; detail: string; data: Uint8Array; close: boolean } {
  if (x.transient && !x.retried) return { retry: true };
  return {
    retry: false,
    status: 502,
    detail: `upstream: ${x.message}`,
    data: errorResponse(502, `could not reach ${x.sni}`, !x.complete),
    close: !(x.complete && x.keepAlive),
  };
}

/**
 * An attempt ended without a response to relay. A pooled connection the
 * server closed meanwhile fails before any response byte; a request still
 * held whole is then sent once more on a fresh connection. Otherwise 502
 * (unless a response already started: then the agent is told nothing more)
 * and both connections close.
 */
export function attemptFailed(x: {
  /** A response the gateway will not forward (it could carry the secret past the scrubber). */
  refused: boolean;
  message: string;
  pooled: boolean;
  /** The request was read whole, so it can be sent again. */
  replayable: boolean;
  attempt: number;
  responseStarted: boolean;
  sni: string;
}): { retry: true } | { retry: false; status: 502; detail: string; data: Uint8Array | undefined } {
  if (!x.refused && x.pooled && x.replayable && x.attempt === 1 && !x.responseStarted) return { retry: true };
  const detail = x.refused ? x.message : "upstream closed the connection";
  const said = x.refused ? `${x.sni} sent a response the gateway does not forward` : `${x.sni} closed the connection`;
  return { retry: false, status: 502, detail, data: x.responseStarted ? undefined : errorResponse(502, said, true) };
}

/**
 * After a relayed response: the upstream goes back to the pool only at a
 * clean boundary of both parsers (the request sent whole, the response read
 * whole, nothing more buffered; after HEAD a lenient server may still send
 * a body we were told not to expect), and the agent's connection goes on
 * only when both sides can.
 */
export function afterResponse(x: {
  reusable: boolean;
  requestComplete: boolean;
  method: string;
  atCleanBoundary: boolean;
  agentClose: boolean;
  keepAlive: boolean;
}): { release: boolean; close: boolean } {
  return {
    release: x.reusable && x.requestComplete && x.method !== "HEAD" && x.atCleanBoundary,
    close: !x.requestComplete || x.agentClose || !x.keepAlive,
  };
}

export function errorResponse(status: number, message: string, close = true): Uint8Array {
  const body = JSON.stringify({ error: message }) + "\n";
  const headers: HeaderList = [["Content-Type", "application/json"]];
  if (close) headers.push(["Connection", "close"]);
  return simpleResponse(status, headers, body);
}
