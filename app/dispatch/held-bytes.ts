// What a device makes the gateway hold between its two sides, counted
// against its buffered-bytes budget (quota_buffered_bytes,
// app/dispatch/quotas.ts), the same budget its connections' stack rings
// draw from:
//
//   pipeWithin   one direction of a relay: reads only as many bytes as the
//                budget has room for, holds them (charged) until the other
//                side has taken them (the write's callback), and at the
//                budget stops reading until bytes are given back:
//                backpressure toward that side, never a drop.
//   HeldBytes    a shell that holds bytes in ways of its own (an
//                interception's body buffers, parser state, queued writes)
//                says how many it holds now; the difference is charged.
//
// Not counted: each stream's own read-ahead (at most its high-water mark,
// 64 KiB) and the kernel's socket buffers, a constant per connection that
// quota_tcp_flows bounds.
import type { Duplex, Readable, Writable } from "node:stream";
import type { DeviceBudget } from "./quotas.ts";

export type ByteBudget = Pick<DeviceBudget, "remaining" | "add" | "limited" | "whenRoom">;

export interface Pipe {
  /** Bytes read from the source and not yet taken by the destination (charged to the budget). */
  readonly held: number;
  /** Stops reading and gives back what is held (the destination will not take it now). */
  stop(): void;
}

/**
 * Moves `src`'s bytes into `dst` as `dst` drains and `budget` has room
 * (absent: only `dst`'s backpressure). `onBytes` is told each chunk moved.
 * The source is read in paused mode; its end is the caller's to listen for.
 */
export function pipeWithin(src: Readable, dst: Writable | Duplex, budget: ByteBudget | undefined, onBytes: (n: number) => void = () => undefined): Pipe {
  let held = 0;
  let stopped = false;
  let waitingDrain = false;
  let cancelRoom: (() => void) | undefined;

  const giveBack = (n: number) => {
    if (stopped) return;
    held -= n;
    budget?.add(-n);
  };
  const onDrain = () => {
    waitingDrain = false;
    move();
  };
  const move = (): void => {
    if (stopped || waitingDrain || cancelRoom) return;
    for (;;) {
      const avail = src.readableLength;
      // Nothing buffered: ask for more (an ended source emits its end). read(0)
      // returns nothing even when the source pushes at once (a TcpDuplex
      // does): what it pushed comes as another 'readable'.
      if (avail === 0) return void src.read(0);
      let n = avail;
      if (budget) {
        const room = budget.remaining;
        if (room <= 0) {
          budget.limited();
          cancelRoom = budget.whenRoom(() => {
            cancelRoom = undefined;
            move();
          });
          return;
        }
        n = Math.min(n, room);
      }
      const chunk = src.read(n) as Buffer | null;
      if (chunk === null) return;
      const len = chunk.length;
      held += len;
      budget?.add(len);
      onBytes(len);
      if (!dst.write(chunk, () => giveBack(len))) {
        waitingDrain = true;
        dst.once("drain", onDrain);
        return;
      }
    }
  };
  src.on("readable", move);
  // bytes already buffered before the listener (a peek's unshift) emit no 'readable' of their own
  queueMicrotask(move);
  return {
    get held() {
      return held;
    },
    stop() {
      if (stopped) return;
      budget?.add(-held);
      held = 0;
      stopped = true;
      cancelRoom?.();
      cancelRoom = undefined;
      src.off("readable", move);
      dst.off("drain", onDrain);
    },
  };
}

/** Bytes a shell holds, charged to the device's budget as the shell reports them. */
export class HeldBytes {
  private charged = 0;
  private closed = false;
  constructor(private readonly budget: ByteBudget) {}

  /** The shell holds `bytes` now. */
  set(bytes: number): void {
    if (this.closed || bytes === this.charged) return;
    this.budget.add(bytes - this.charged);
    this.charged = bytes;
    if (this.budget.remaining <= 0) this.budget.limited();
  }

  /** The budget has no room. */
  get full(): boolean {
    return this.budget.remaining <= 0;
  }

  /** Resolves once the budget has room (at once when it has), or `gone` is aborted (the side it would read has closed). */
  room(gone?: AbortSignal): Promise<void> {
    if (this.closed || this.budget.remaining > 0 || gone?.aborted) return Promise.resolve();
    this.budget.limited();
    return new Promise((resolve) => {
      const cancel = this.budget.whenRoom(done);
      function done() {
        cancel?.();
        gone?.removeEventListener("abort", done);
        resolve();
      }
      gone?.addEventListener("abort", done, { once: true });
    });
  }

  /** The shell is over: everything it held is given back. */
  close(): void {
    this.set(0);
    this.closed = true;
  }
}
