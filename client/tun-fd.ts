// A PacketLink over a TUN fd we did not open ourselves: the inner stage of
// `clawpatrol run` creates the device inside the new network namespace and
// passes the fd out (SCM_RIGHTS). app/net/tun/tun.ts opens /dev/net/tun by
// itself, so this is its reader without the open: the same wake-up worker
// (app/net/tun/tun-worker.ts, unchanged: it only needs an fd to poll) and
// the same drain loop, no virtio header (the inner stage does not ask for
// one).
//
//   1. the worker polls the fd and flips ctl[STATE] to READY;
//   2. the main thread drains with non-blocking read() into one slab, hands
//      the batch to the handler (views valid until it returns), and sets
//      IDLE again at EAGAIN;
//   3. write() is one non-blocking write(); a short or failed write is a drop.
import { ptr, type Pointer } from "bun:ffi";
import { EAGAIN, EINTR, EFD_CLOEXEC, EFD_NONBLOCK, errno, libc, sysError } from "../app/net/tun/libc.ts";
import { emptyStats, type LinkStats, type PacketLink } from "../app/net/tun/link.ts";
import { CTL_STATE, STATE_CLOSE, STATE_IDLE, STATE_READY, type WorkerInit, type WorkerReport } from "../app/net/tun/tun-worker.ts";

const MAX_PACKET = 65535;
const SLAB_SIZE = 1 << 20;
const BATCH_LIMIT = 64;

export interface FdTun extends PacketLink {
  readonly stats: LinkStats;
  readonly done: Promise<void>;
}

/** The worker script: next to this file when run from source, an extra entrypoint when compiled. */
function workerUrl(): string | URL {
  if (Bun.main.startsWith("/$bunfs/")) return "./app/net/tun/tun-worker.ts";
  return new URL("../app/net/tun/tun-worker.ts", import.meta.url);
}

export function tunFromFd(fd: number, name: string, mtu: number, onError?: (e: Error) => void): FdTun {
  const eventFd = libc().eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (eventFd < 0) throw sysError("eventfd");
  return new Reader(fd, eventFd, name, mtu, onError);
}

class Reader implements FdTun {
  readonly stats = emptyStats();
  readonly done: Promise<void>;
  #closed = false;
  #handler: ((p: Uint8Array[]) => void) | null = null;
  readonly #ctl = new Int32Array(new SharedArrayBuffer(16));
  readonly #worker: Worker;
  readonly #slab = new Uint8Array(SLAB_SIZE);
  readonly #slabPtr: number;
  #ready = false;
  #draining = false;
  #workerGone = false;
  #finished = false;
  #resolveDone!: () => void;

  constructor(
    readonly fd: number,
    private readonly eventFd: number,
    readonly name: string,
    readonly mtu: number,
    private readonly onError: ((e: Error) => void) | undefined,
  ) {
    this.#slabPtr = ptr(this.#slab) as unknown as number;
    this.done = new Promise((r) => (this.#resolveDone = r));
    this.#worker = new Worker(workerUrl());
    this.#worker.onmessage = (ev: MessageEvent<WorkerReport>) => {
      if (ev.data.type === "ready") this.#onReady();
      else this.#onWorkerExit(ev.data.error);
    };
    this.#worker.addEventListener("close", () => this.#onWorkerExit(null));
    this.#worker.postMessage({ fd, eventFd, ctl: this.#ctl.buffer as SharedArrayBuffer, wake: "atomics" } satisfies WorkerInit);
    this.#arm();
  }

  onPackets(handler: (packets: Uint8Array[]) => void): void {
    this.#handler = handler;
    if (this.#ready && !this.#draining) this.#scheduleDrain();
  }

  write(packet: Uint8Array): boolean {
    if (this.#closed || packet.length > MAX_PACKET) {
      this.stats.txDropped++;
      return false;
    }
    const n = libc().write(this.fd, packet, packet.length);
    if (n !== packet.length) {
      this.stats.txDropped++;
      return false;
    }
    this.stats.txPackets++;
    this.stats.txBytes += n;
    return true;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#handler = null;
    Atomics.store(this.#ctl, CTL_STATE, STATE_CLOSE);
    Atomics.notify(this.#ctl, CTL_STATE);
    libc().write(this.eventFd, new BigUint64Array([1n]), 8);
    libc().close(this.fd);
    if (this.#workerGone) this.#finish();
  }

  #arm(): void {
    if (this.#closed) return;
    const r = Atomics.waitAsync(this.#ctl, CTL_STATE, STATE_IDLE);
    if (r.async) r.value.then(() => this.#onAtomicWake());
    else this.#onAtomicWake();
  }

  #onAtomicWake(): void {
    if (this.#closed) return;
    const s = Atomics.load(this.#ctl, CTL_STATE);
    if (s === STATE_READY) this.#onReady();
    else if (s === STATE_IDLE) this.#arm();
  }

  #onReady(): void {
    if (this.#closed) return;
    this.#ready = true;
    if (this.#handler !== null && !this.#draining) this.#drain();
  }

  #scheduleDrain(): void {
    this.#draining = true;
    setImmediate(() => {
      this.#draining = false;
      this.#drain();
    });
  }

  #drain(): void {
    const handler = this.#handler;
    if (this.#closed || handler === null || !this.#ready) return;
    const L = libc();
    const batch: Uint8Array[] = [];
    let off = 0;
    let exhausted = false;
    while (batch.length < BATCH_LIMIT && off + MAX_PACKET <= SLAB_SIZE) {
      const n = L.read(this.fd, (this.#slabPtr + off) as unknown as Pointer, MAX_PACKET);
      if (n <= 0) {
        const e = n < 0 ? errno() : 0;
        if (n < 0 && e !== EAGAIN && e !== EINTR) this.stats.rxDropped++;
        exhausted = true;
        break;
      }
      this.stats.rxPackets++;
      this.stats.rxBytes += n;
      batch.push(this.#slab.subarray(off, off + n));
      off += (n + 7) & ~7;
    }
    if (batch.length > 0) {
      this.stats.rxBatches++;
      try {
        handler(batch);
      } finally {
        this.#afterBatch(exhausted);
      }
    } else {
      this.#afterBatch(exhausted);
    }
  }

  #afterBatch(exhausted: boolean): void {
    if (this.#closed) return;
    if (!exhausted) return this.#scheduleDrain();
    this.#ready = false;
    Atomics.store(this.#ctl, CTL_STATE, STATE_IDLE);
    Atomics.notify(this.#ctl, CTL_STATE);
    this.#arm();
  }

  #onWorkerExit(error: string | null): void {
    if (this.#workerGone) return;
    this.#workerGone = true;
    if (!this.#closed) {
      this.close();
      this.onError?.(new Error(`tun ${this.name}: reader stopped: ${error ?? "worker exited"}`));
    }
    this.#finish();
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    libc().close(this.eventFd);
    this.#worker.terminate();
    this.#resolveDone();
  }
}
