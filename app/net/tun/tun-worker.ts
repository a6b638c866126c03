// The TUN wake-up worker. It never reads packets: it blocks in poll() on
// the TUN fd (and on an eventfd that asks it to stop), tells the main
// thread the fd is readable, then sleeps in Atomics.wait until the main
// thread has drained the fd to EAGAIN. So the main thread never blocks and
// nothing spins: one wake-up per burst, however many packets it holds.
//
// Protocol over ctl = Int32Array(SharedArrayBuffer):
//   ctl[CTL_STATE]: IDLE (worker may poll) -> READY (set by the worker,
//   main drains) -> IDLE (set by main after EAGAIN, notified) ... CLOSE
//   (set by main; the worker exits at its next look).
//   ctl[CTL_WAKES]: wake-ups sent (for stats).
// The main thread learns of READY by Atomics.waitAsync ("atomics") or by a
// message ("message"), per the init message.
import { errno, libc, EINTR, POLLIN, POLLERR, POLLHUP, POLLNVAL, POLLFD_SIZE } from "./libc.ts";

export const CTL_STATE = 0;
export const CTL_WAKES = 1;
export const STATE_IDLE = 0;
export const STATE_READY = 1;
export const STATE_CLOSE = 2;

export interface WorkerInit {
  fd: number;
  eventFd: number;
  ctl: SharedArrayBuffer;
  wake: "atomics" | "message";
}

export type WorkerReport =
  | { type: "ready" }
  | { type: "exit"; error: string | null };

declare const self: Worker;

function run(init: WorkerInit): string | null {
  const L = libc();
  const ctl = new Int32Array(init.ctl);
  const fds = new Uint8Array(2 * POLLFD_SIZE);
  const dv = new DataView(fds.buffer);
  dv.setInt32(0, init.fd, true);
  dv.setInt16(4, POLLIN, true);
  dv.setInt32(POLLFD_SIZE, init.eventFd, true);
  dv.setInt16(POLLFD_SIZE + 4, POLLIN, true);
  for (;;) {
    if (Atomics.load(ctl, CTL_STATE) === STATE_CLOSE) return null;
    dv.setInt16(6, 0, true);
    dv.setInt16(POLLFD_SIZE + 6, 0, true);
    const n = L.poll(fds, 2, -1);
    if (n < 0) {
      const e = errno();
      if (e === EINTR) continue;
      return `poll: errno ${e}`;
    }
    if (Atomics.load(ctl, CTL_STATE) === STATE_CLOSE) return null;
    if (dv.getInt16(POLLFD_SIZE + 6, true) !== 0) return null; // eventfd: stop
    const rev = dv.getInt16(6, true);
    if (rev & (POLLERR | POLLHUP | POLLNVAL)) return `poll: revents 0x${rev.toString(16)}`;
    if (!(rev & POLLIN)) continue;
    const was = Atomics.compareExchange(ctl, CTL_STATE, STATE_IDLE, STATE_READY);
    if (was === STATE_CLOSE) return null;
    if (was === STATE_IDLE) {
      Atomics.add(ctl, CTL_WAKES, 1);
      if (init.wake === "atomics") Atomics.notify(ctl, CTL_STATE);
      else self.postMessage({ type: "ready" } satisfies WorkerReport);
    }
    // Sleep until the main thread has drained (state back to IDLE). A wait
    // can end without that (a notify meant for the main thread's waitAsync on
    // the same cell): polling then would see the same packets and, before
    // this loop, took a READY state for a reason to stop, killing the link
    // mid-transfer.
    while (Atomics.load(ctl, CTL_STATE) === STATE_READY) Atomics.wait(ctl, CTL_STATE, STATE_READY);
  }
}

self.onmessage = (ev: MessageEvent<WorkerInit>) => {
  self.onmessage = null;
  let error: string | null;
  try {
    error = run(ev.data);
  } catch (e) {
    error = String(e);
  }
  self.postMessage({ type: "exit", error } satisfies WorkerReport);
  process.exit(0);
};
