// A Linux TUN device as a PacketLink, through bun:ffi.
//
//   1. open /dev/net/tun (O_RDWR|O_NONBLOCK|O_CLOEXEC); TUNSETIFF with
//      IFF_TUN|IFF_NO_PI (|IFF_VNET_HDR) attaches to the named device or
//      creates one (the kernel picks the name when none is given).
//   2. With vnetHdr: TUNSETVNETHDRSZ 12 and TUNSETOFFLOAD CSUM|TSO4|TSO6, so
//      the kernel may hand us TCP super-packets and partial checksums; vnet.ts
//      turns them back into plain, checksummed IP packets.
//   3. A Worker (tun-worker.ts) blocks in poll() and wakes the main thread,
//      which drains the non-blocking fd in batches into one pooled slab and
//      hands each batch to the handler (views valid until it returns).
//   4. write() is one non-blocking write(); EAGAIN or any error is a drop,
//      counted, never an exception.
//   5. close(): tell the worker (state + eventfd), close the TUN fd; the
//      eventfd is closed once the worker has exited.
import { ptr, type Pointer } from "bun:ffi";
import {
  AF_INET, EAGAIN, EINTR, EFD_CLOEXEC, EFD_NONBLOCK, IFF_NO_PI, IFF_TUN, IFF_VNET_HDR, IFNAMSIZ,
  IFREQ_SIZE, IFREQ_UNION_OFFSET, O_CLOEXEC, O_NONBLOCK, O_RDWR, SIOCGIFMTU, SOCK_DGRAM,
  TUNSETIFF, TUNSETOFFLOAD, TUNSETVNETHDRSZ, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6,
  VIRTIO_NET_HDR_LEN, cString, errno, libc, sysError,
} from "./libc.ts";
import { emptyStats, type LinkStats, type PacketLink } from "./link.ts";
import { CTL_STATE, CTL_WAKES, STATE_CLOSE, STATE_IDLE, STATE_READY, type WorkerInit, type WorkerReport } from "./tun-worker.ts";
import { fromVirtio } from "./vnet.ts";

export interface TunOptions {
  /** Attach to this device (creating it if it does not exist). Empty: the kernel names a new one. */
  name?: string;
  /** IFF_VNET_HDR + TUNSETOFFLOAD: accept TSO super-packets and partial checksums from the kernel. */
  vnetHdr?: boolean;
  /** Packets read per handler call (default 64). */
  batchLimit?: number;
  /** How the worker wakes the main thread (default "atomics"; "message" kept for measurement). */
  wake?: "atomics" | "message";
  /** Called once if the reader stops on an error (the device is then closed). */
  onError?: (error: Error) => void;
}

export interface TunDevice extends PacketLink {
  readonly fd: number;
  readonly vnetHdr: boolean;
  readonly stats: LinkStats & { wakeups: number };
  readonly closed: boolean;
  /** Resolves when the worker has exited and every fd is closed. */
  readonly done: Promise<void>;
}

const DEV_NET_TUN = "/dev/net/tun";
/** An IP packet is at most 65535 bytes (IPv6 jumbograms are not carried by TUN). */
const MAX_PACKET = 65535;
const SLAB_SIZE = 1 << 20;

export function openTun(opts: TunOptions = {}): TunDevice {
  const L = libc();
  const vnetHdr = opts.vnetHdr === true;
  const name = opts.name ?? "";
  if (new TextEncoder().encode(name).length >= IFNAMSIZ) throw new Error(`tun: interface name too long: ${name}`);

  const fd = L.open(cString(DEV_NET_TUN), O_RDWR | O_NONBLOCK | O_CLOEXEC, 0);
  if (fd < 0) throw sysError(`open(${DEV_NET_TUN})`);
  let eventFd = -1;
  try {
    const ifr = new Uint8Array(IFREQ_SIZE);
    ifr.set(new TextEncoder().encode(name), 0);
    const dv = new DataView(ifr.buffer);
    dv.setUint16(IFREQ_UNION_OFFSET, IFF_TUN | IFF_NO_PI | (vnetHdr ? IFF_VNET_HDR : 0), true);
    if (L.ioctl(fd, TUNSETIFF, ifr) < 0) throw sysError(`ioctl(TUNSETIFF${name ? ` ${name}` : ""})`);
    const nul = ifr.indexOf(0);
    const actual = new TextDecoder().decode(ifr.subarray(0, nul < 0 ? IFNAMSIZ : nul));
    if (vnetHdr) {
      const sz = new Int32Array([VIRTIO_NET_HDR_LEN]);
      if (L.ioctl(fd, TUNSETVNETHDRSZ, sz) < 0) throw sysError("ioctl(TUNSETVNETHDRSZ)");
      if (L.ioctl_int(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) < 0) throw sysError("ioctl(TUNSETOFFLOAD)");
    }
    const mtu = interfaceMtu(actual);
    eventFd = L.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (eventFd < 0) throw sysError("eventfd");
    return new Tun(fd, eventFd, actual, mtu, vnetHdr, opts);
  } catch (e) {
    L.close(fd);
    if (eventFd >= 0) L.close(eventFd);
    throw e;
  }
}

/** SIOCGIFMTU on a throwaway socket (namespace-correct, unlike /sys). */
export function interfaceMtu(name: string): number {
  const L = libc();
  const s = L.socket(AF_INET, SOCK_DGRAM | O_CLOEXEC, 0);
  if (s < 0) throw sysError("socket");
  try {
    const ifr = new Uint8Array(IFREQ_SIZE);
    ifr.set(new TextEncoder().encode(name), 0);
    if (L.ioctl(s, SIOCGIFMTU, ifr) < 0) throw sysError(`ioctl(SIOCGIFMTU ${name})`);
    return new DataView(ifr.buffer).getInt32(IFREQ_UNION_OFFSET, true);
  } finally {
    L.close(s);
  }
}

class Tun implements TunDevice {
  readonly stats = { ...emptyStats(), wakeups: 0 };
  readonly done: Promise<void>;
  closed = false;
  private handler: ((packets: Uint8Array[]) => void) | null = null;
  private readonly ctl: Int32Array;
  private readonly worker: Worker;
  private readonly slab = new Uint8Array(SLAB_SIZE);
  private readonly slabPtr: number;
  private readonly batchLimit: number;
  private readonly readMax: number;
  private readonly txScratch: Uint8Array | null;
  /** The worker said READY and we have not yet drained to EAGAIN. */
  private ready = false;
  private draining = false;
  private resolveDone!: () => void;
  private workerGone = false;
  private readonly onError: ((error: Error) => void) | undefined;
  private readonly wake: "atomics" | "message";

  constructor(
    readonly fd: number,
    private readonly eventFd: number,
    readonly name: string,
    readonly mtu: number,
    readonly vnetHdr: boolean,
    opts: TunOptions,
  ) {
    this.batchLimit = Math.max(1, opts.batchLimit ?? 64);
    this.readMax = MAX_PACKET + (vnetHdr ? VIRTIO_NET_HDR_LEN : 0);
    this.txScratch = vnetHdr ? new Uint8Array(VIRTIO_NET_HDR_LEN + MAX_PACKET) : null;
    this.slabPtr = ptr(this.slab) as unknown as number;
    this.onError = opts.onError;
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    this.ctl = new Int32Array(new SharedArrayBuffer(16));
    const wake = (this.wake = opts.wake ?? "atomics");
    this.worker = new Worker(new URL("./tun-worker.ts", import.meta.url));
    this.worker.onmessage = (ev: MessageEvent<WorkerReport>) => {
      if (ev.data.type === "ready") this.onReady();
      else this.onWorkerExit(ev.data.error);
    };
    this.worker.addEventListener("close", () => this.onWorkerExit(null));
    this.worker.postMessage({ fd, eventFd, ctl: this.ctl.buffer as SharedArrayBuffer, wake } satisfies WorkerInit);
    if (wake === "atomics") this.arm();
  }

  onPackets(handler: (packets: Uint8Array[]) => void): void {
    this.handler = handler;
    if (this.ready && !this.draining) this.scheduleDrain();
  }

  write(packet: Uint8Array): boolean {
    if (this.closed || packet.length > MAX_PACKET) {
      this.stats.txDropped++;
      return false;
    }
    let n: number;
    if (this.txScratch !== null) {
      // A zero virtio_net_hdr: no GSO, checksums already complete.
      const s = this.txScratch;
      s.fill(0, 0, VIRTIO_NET_HDR_LEN);
      s.set(packet, VIRTIO_NET_HDR_LEN);
      n = libc().write(this.fd, s, VIRTIO_NET_HDR_LEN + packet.length) - VIRTIO_NET_HDR_LEN;
    } else {
      n = libc().write(this.fd, packet, packet.length);
    }
    if (n !== packet.length) {
      this.stats.txDropped++;
      return false;
    }
    this.stats.txPackets++;
    this.stats.txBytes += n;
    return true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.handler = null;
    const L = libc();
    Atomics.store(this.ctl, CTL_STATE, STATE_CLOSE);
    Atomics.notify(this.ctl, CTL_STATE);
    L.write(this.eventFd, new BigUint64Array([1n]), 8);
    L.close(this.fd);
    if (this.workerGone) this.finish();
  }

  private arm(): void {
    if (this.closed) return;
    const r = Atomics.waitAsync(this.ctl, CTL_STATE, STATE_IDLE);
    if (r.async) r.value.then(() => this.onAtomicWake());
    else this.onAtomicWake();
  }

  private onAtomicWake(): void {
    if (this.closed) return;
    const s = Atomics.load(this.ctl, CTL_STATE);
    if (s === STATE_READY) this.onReady();
    else if (s === STATE_IDLE) this.arm(); // spurious
  }

  private onReady(): void {
    if (this.closed) return;
    this.ready = true;
    if (this.handler !== null && !this.draining) this.drain();
  }

  private scheduleDrain(): void {
    this.draining = true;
    setImmediate(() => {
      this.draining = false;
      this.drain();
    });
  }

  /** Read up to batchLimit packets; hand them over; then go on (EAGAIN: back to the worker). */
  private drain(): void {
    const handler = this.handler;
    if (this.closed || handler === null || !this.ready) return;
    const L = libc();
    const slab = this.slab;
    const batch: Uint8Array[] = [];
    let off = 0;
    let exhausted = false;
    while (batch.length < this.batchLimit && off + this.readMax <= SLAB_SIZE) {
      const n = L.read(this.fd, (this.slabPtr + off) as unknown as Pointer, this.readMax);
      if (n < 0) {
        const e = errno();
        exhausted = true;
        if (e !== EAGAIN && e !== EINTR) this.stats.rxDropped++;
        break;
      }
      if (n === 0) {
        exhausted = true;
        break;
      }
      this.stats.rxPackets++;
      this.stats.rxBytes += n;
      const raw = slab.subarray(off, off + n);
      off += (n + 7) & ~7;
      if (this.vnetHdr) {
        const r = fromVirtio(raw);
        if (!r.ok) this.stats.rxDropped++;
        else for (const p of r.packets) batch.push(p);
      } else {
        batch.push(raw);
      }
    }
    if (batch.length === 0) return this.afterBatch(exhausted);
    this.stats.rxBatches++;
    // A handler that throws still leaves the link reading (its exception
    // propagates to the event loop like any callback's).
    try {
      handler(batch);
    } finally {
      this.afterBatch(exhausted);
    }
  }

  private afterBatch(exhausted: boolean): void {
    if (this.closed) return;
    if (!exhausted) return this.scheduleDrain();
    this.ready = false;
    this.stats.wakeups = Atomics.load(this.ctl, CTL_WAKES);
    Atomics.store(this.ctl, CTL_STATE, STATE_IDLE);
    Atomics.notify(this.ctl, CTL_STATE);
    if (this.wake === "atomics") this.arm();
  }

  private onWorkerExit(error: string | null): void {
    if (this.workerGone) return;
    this.workerGone = true;
    if (!this.closed) {
      // The reader stopped on its own: the device is unusable.
      this.close();
      this.onError?.(new Error(`tun ${this.name}: reader stopped: ${error ?? "worker exited"}`));
    }
    this.finish();
  }

  private finished = false;
  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    libc().close(this.eventFd);
    this.worker.terminate();
    this.resolveDone();
  }
}
