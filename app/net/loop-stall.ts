// How long the process's event loop has been unable to run timers: the
// time a deadline spent waiting for the loop (hundreds of TLS handshakes
// at once, or the process not scheduled on a loaded machine) rather than
// waiting for the network. A deadline that should measure the network
// alone (the upstream connect timeout) subtracts it.
//
// Sans-IO core: `tick(now)` is called every `periodMs` by the shell; a tick
// that comes later than due adds its lateness to the stall. `stalledMs(now)`
// also counts the tick now overdue, so a deadline timer that fires in the
// same late turn already sees the stall it suffered.

export class LoopStall {
  private stalled = 0;
  private last: number;
  /** The largest lateness of one tick since the last `takeMaxLag()` (for /metrics). */
  private maxLag = 0;

  constructor(
    readonly periodMs: number,
    now: number,
  ) {
    this.last = now;
  }

  tick(now: number): void {
    const late = now - this.last - this.periodMs;
    if (late > 0) {
      this.stalled += late;
      if (late > this.maxLag) this.maxLag = late;
    }
    this.last = now;
  }

  /** Milliseconds of stall so far, the current overdue tick included. */
  stalledMs(now: number): number {
    return this.stalled + Math.max(0, now - this.last - this.periodMs);
  }

  /** The worst lateness since the last call, then starts over. */
  takeMaxLag(): number {
    const m = this.maxLag;
    this.maxLag = 0;
    return m;
  }
}

/** The running process's loop, ticked every 25 ms by an unref'd timer (started on first use). */
let shared: LoopStall | undefined;

export function processLoopStall(): LoopStall {
  if (!shared) {
    const s = new LoopStall(25, performance.now());
    setInterval(() => s.tick(performance.now()), s.periodMs).unref?.();
    shared = s;
  }
  return shared;
}

/**
 * A timeout that measures `ms` of the loop being able to run: when it fires,
 * the time the loop was stalled meanwhile is granted again, so a deadline
 * is missed only by what it waits for, not by the gateway's own queue.
 * Returns the cancel.
 */
export function stallCorrectedTimeout(ms: number, onTimeout: () => void, stall: LoopStall = processLoopStall(), now: () => number = () => performance.now()): () => void {
  const started = now();
  const stalledAtStart = stall.stalledMs(started);
  let timer: ReturnType<typeof setTimeout>;
  const arm = (after: number) => {
    timer = setTimeout(check, after);
  };
  const check = () => {
    const t = now();
    const waited = t - started - (stall.stalledMs(t) - stalledAtStart);
    if (waited >= ms) onTimeout();
    else arm(ms - waited);
  };
  arm(ms);
  return () => clearTimeout(timer);
}
