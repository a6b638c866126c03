// How long an HTTP/1.1 client may take, after TLS termination. Sans-IO: the
// shell reports what happens (waiting for a request, bytes in, a head parsed,
// a body ended, a read pending) with the time, asks when to look again
// (deadline), and asks whether time ran out (expired).
//
//   idle    between requests: the next request's first byte within idleMs
//   head    from a head's first byte to its end: within headerMs
//   body    the request body: minRate bytes/s after a grace of headerMs
//           (mod_reqtimeout's scheme: each byte buys 1/minRate s). Only time
//           spent waiting on the client counts, so an upstream that stops
//           reading (backpressure) never makes the client look slow.
//   busy    the gateway is answering: the client owes nothing.

export interface TimeoutSettings {
  headerMs: number;
  idleMs: number;
  /** Bytes per second; 0 turns the body rate check off. */
  minRateBytesPerSec: number;
}

export type TimeoutReason = "idle" | "header" | "slow_body";

type Phase = "idle" | "head" | "body" | "busy";

export class ClientTimeouts {
  private phase: Phase = "idle";
  private phaseStart: number;
  /** A read from the client is pending since this time. */
  private waitStart: number | undefined;
  /** Body phase: ms spent waiting on the client, and bytes it sent. */
  private waited = 0;
  private bodyBytes = 0;

  constructor(
    private readonly s: TimeoutSettings,
    now: number,
  ) {
    this.phaseStart = now;
  }

  /** The connection is between requests (or at its start). */
  awaitRequest(now: number): void {
    this.enter("idle", now);
  }

  /** Bytes arrived from the client. */
  received(now: number, n: number): void {
    this.endWait(now);
    if (this.phase === "idle") this.enter("head", now);
    else if (this.phase === "body") this.bodyBytes += n;
  }

  /** A request head was parsed; its body follows when `hasBody`. */
  headParsed(now: number, hasBody: boolean): void {
    this.enter(hasBody ? "body" : "busy", now);
  }

  /** The request body ended. */
  bodyEnded(now: number): void {
    if (this.phase === "body") this.enter("busy", now);
  }

  /** The client is owed nothing any more (an upgraded connection). */
  stop(now: number): void {
    this.enter("busy", now);
  }

  /** The shell is waiting to read from the client. */
  waiting(now: number): void {
    this.waitStart ??= now;
  }

  /** When expired() could next say something; undefined: not while nothing changes. */
  deadline(): number | undefined {
    switch (this.phase) {
      case "idle":
        return this.phaseStart + this.s.idleMs;
      case "head":
        return this.phaseStart + this.s.headerMs;
      case "body": {
        if (this.s.minRateBytesPerSec <= 0 || this.waitStart === undefined) return undefined;
        return this.waitStart + this.bodyAllowanceMs() - this.waited;
      }
      case "busy":
        return undefined;
    }
  }

  expired(now: number): TimeoutReason | undefined {
    const d = this.deadline();
    if (d === undefined || now < d) return undefined;
    return this.phase === "idle" ? "idle" : this.phase === "head" ? "header" : "slow_body";
  }

  private bodyAllowanceMs(): number {
    return this.s.headerMs + (this.bodyBytes * 1000) / this.s.minRateBytesPerSec;
  }

  private enter(phase: Phase, now: number): void {
    this.endWait(now);
    this.phase = phase;
    this.phaseStart = now;
    this.waited = 0;
    this.bodyBytes = 0;
  }

  private endWait(now: number): void {
    if (this.waitStart === undefined) return;
    if (this.phase === "body") this.waited += now - this.waitStart;
    this.waitStart = undefined;
  }
}
