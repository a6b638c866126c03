// A bounded number of slots shared fairly: waiters queue per key (a device)
// and slots go round-robin over the keys with waiters, so one device's
// burst of new connections cannot hold back another's first one. Past
// `maxWaiting` a request is refused at once (the caller closes the
// connection and logs it) rather than queued without bound.
//
// Used for the agents' TLS handshakes: hundreds at once on one event loop
// would all finish late together; a few at a time finish in order.

export type Release = () => void;

interface Waiter {
  grant: (r: Release | undefined) => void;
  cancelled: boolean;
}

export class FairQueue {
  private active = 0;
  private waitingCount = 0;
  /** Keys with waiters, in round-robin order; each key's waiters in arrival order. */
  private readonly queues = new Map<string, Waiter[]>();

  constructor(
    readonly limit: number,
    readonly maxWaiting: number,
  ) {
    if (limit < 1) throw new RangeError("a fair queue needs at least one slot");
  }

  stats(): { active: number; waiting: number } {
    return { active: this.active, waiting: this.waitingCount };
  }

  /**
   * A slot for `key`: granted now, later (in turn), or refused (the queue is
   * full). `cancel` gives up a place still waiting (`granted` then resolves
   * undefined); a granted slot must be released once (more calls do nothing).
   */
  acquire(key: string): { granted: Promise<Release | undefined>; cancel: () => void } | { refused: true } {
    if (this.active < this.limit && this.waitingCount === 0) {
      this.active += 1;
      return { granted: Promise.resolve(this.releaser()), cancel: () => undefined };
    }
    if (this.waitingCount >= this.maxWaiting) return { refused: true };
    let waiter!: Waiter;
    const granted = new Promise<Release | undefined>((resolve) => {
      waiter = { grant: resolve, cancelled: false };
    });
    let q = this.queues.get(key);
    if (!q) this.queues.set(key, (q = []));
    q.push(waiter);
    this.waitingCount += 1;
    return {
      granted,
      cancel: () => {
        if (waiter.cancelled) return;
        const list = this.queues.get(key);
        const i = list ? list.indexOf(waiter) : -1;
        if (i < 0) return; // already granted: the holder releases
        waiter.cancelled = true;
        list!.splice(i, 1);
        if (list!.length === 0) this.queues.delete(key);
        this.waitingCount -= 1;
        waiter.grant(undefined);
      },
    };
  }

  private releaser(): Release {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active -= 1;
      this.next();
    };
  }

  /** Grants free slots to the next keys in turn; a key served goes to the back. */
  private next(): void {
    while (this.active < this.limit && this.waitingCount > 0) {
      const [key, q] = this.queues.entries().next().value as [string, Waiter[]];
      const w = q.shift()!;
      this.queues.delete(key);
      if (q.length > 0) this.queues.set(key, q);
      this.waitingCount -= 1;
      this.active += 1;
      w.grant(this.releaser());
    }
  }
}
