// The in-memory twin of a TUN device (STYLE item 10; wireguard-go
// tun/tuntest): two connected PacketLinks. What one side writes the other
// receives, in order, delivered asynchronously in batches like the real
// device (a microtask after the write, up to `batchLimit` per call), so code
// under test sees the same re-entrancy as on a TUN.
//
// Each side has a bounded queue (`queueLimit` packets): a write into a full
// queue, or after close, returns false and counts as txDropped. Packets are
// copied on write, so the writer may reuse its buffer at once.
import { emptyStats, type LinkStats, type PacketLink } from "./link.ts";

export interface MemoryLinkOptions {
  mtu?: number;
  /** Packets queued toward one side before writes are dropped. Default 1024. */
  queueLimit?: number;
  /** Packets per handler call. Default 64. */
  batchLimit?: number;
  names?: [string, string];
}

export interface MemoryLink extends PacketLink {
  readonly stats: LinkStats;
  readonly closed: boolean;
  /** Resolves when everything written so far toward this side has been delivered. */
  drained(): Promise<void>;
}

class Side implements MemoryLink {
  readonly stats = emptyStats();
  peer!: Side;
  closed = false;
  private handler: ((packets: Uint8Array[]) => void) | null = null;
  private queue: Uint8Array[] = [];
  private head = 0;
  private scheduled = false;
  private waiters: (() => void)[] = [];

  constructor(
    readonly name: string,
    readonly mtu: number,
    private readonly queueLimit: number,
    private readonly batchLimit: number,
  ) {}

  onPackets(handler: (packets: Uint8Array[]) => void): void {
    this.handler = handler;
    this.schedule();
  }

  write(packet: Uint8Array): boolean {
    const to = this.peer;
    if (this.closed || to.closed || to.queue.length - to.head >= to.queueLimit || packet.length > this.mtu) {
      this.stats.txDropped++;
      return false;
    }
    to.queue.push(packet.slice());
    this.stats.txPackets++;
    this.stats.txBytes += packet.length;
    to.schedule();
    return true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue = [];
    this.head = 0;
    this.handler = null;
    this.wake();
  }

  drained(): Promise<void> {
    if (this.pending() === 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private pending(): number {
    return this.queue.length - this.head;
  }

  private schedule(): void {
    if (this.scheduled || this.pending() === 0 || this.handler === null) return;
    this.scheduled = true;
    queueMicrotask(() => this.deliver());
  }

  private deliver(): void {
    this.scheduled = false;
    const handler = this.handler;
    if (this.closed || handler === null) return;
    const end = Math.min(this.queue.length, this.head + this.batchLimit);
    const batch = this.queue.slice(this.head, end);
    this.head = end;
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    }
    this.stats.rxBatches++;
    this.stats.rxPackets += batch.length;
    for (const p of batch) this.stats.rxBytes += p.length;
    try {
      handler(batch);
    } finally {
      if (this.pending() > 0) this.schedule();
      else this.wake();
    }
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const resolve of w) resolve();
  }
}

/** Two PacketLinks wired back to back: a.write(p) reaches b's handler and vice versa. */
export function createMemoryLinkPair(opts: MemoryLinkOptions = {}): [MemoryLink, MemoryLink] {
  const mtu = opts.mtu ?? 1500;
  const queueLimit = opts.queueLimit ?? 1024;
  const batchLimit = opts.batchLimit ?? 64;
  const [na, nb] = opts.names ?? ["mem0", "mem1"];
  const a = new Side(na, mtu, queueLimit, batchLimit);
  const b = new Side(nb, mtu, queueLimit, batchLimit);
  a.peer = b;
  b.peer = a;
  return [a, b];
}
