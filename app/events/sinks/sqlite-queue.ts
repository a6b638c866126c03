// The `actions` table's sink as the gateway's event loop sees it: a bounded
// queue in front of a worker thread (sqlite-worker.ts) that does the
// inserts. A request pays for pushing its event and, once per batch, a
// JSON.stringify of the batch (about 2 µs an event, against 8–13 µs for
// the insert itself, which moves off the loop; measured on this machine).
//
// Back-pressure never reaches a request: past `maxQueued` events accepted
// but not yet committed (a locked database, a full disk, a stalled disk),
// new events are dropped, counted in clawpatrol_events_dropped_total, and
// the first drop of each episode is logged. close() hands over everything
// queued and waits for the worker to commit it.
import { log } from "../../log.ts";
import type { EventSink, GatewayEvent } from "../types.ts";
import { eventJson } from "../json.ts";
import type { WorkerIn, WorkerOut } from "./sqlite-worker.ts";

export interface QueuedActionsSinkOptions {
  /** The state database file (already opened and migrated by the main thread). */
  file: string;
  retentionDays: number;
  /** Hand a batch to the worker this long after its first event (default 50 ms). */
  flushMs?: number;
  /** Hand a batch over at once at this many events (default 256). */
  maxBatch?: number;
  /** Events accepted but not yet committed, past which new ones are dropped (default 50 000). */
  maxQueued?: number;
  /** How long close() waits for the worker's last commit (default 10 s). */
  closeTimeoutMs?: number;
}

export class QueuedActionsSink implements EventSink {
  private batch: GatewayEvent[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** Handed to the worker, not yet acknowledged as committed. */
  private inFlight = 0;
  private droppedTotal = 0;
  private droppedEpisode = 0;
  private closed = false;
  private workerDead = false;
  private readonly worker: Worker;
  private readonly flushMs: number;
  private readonly maxBatch: number;
  private readonly maxQueued: number;
  private readonly closeTimeoutMs: number;
  private onClosed: ((lost: number) => void) | undefined;
  private readonly idleWaiters: (() => void)[] = [];

  constructor(opts: QueuedActionsSinkOptions) {
    this.flushMs = opts.flushMs ?? 50;
    this.maxBatch = opts.maxBatch ?? 256;
    this.maxQueued = opts.maxQueued ?? 50_000;
    this.closeTimeoutMs = opts.closeTimeoutMs ?? 10_000;
    this.worker = new Worker(new URL("./sqlite-worker.ts", import.meta.url));
    this.worker.onmessage = (ev: MessageEvent<WorkerOut>) => this.onWorker(ev.data);
    this.worker.onerror = (ev) => this.onWorkerGone(ev.message);
    // Never keep the process alive for the writer: close() is the clean stop.
    (this.worker as Worker & { unref(): void }).unref();
    this.post({ type: "open", file: opts.file, retentionDays: opts.retentionDays });
  }

  write(event: GatewayEvent): void {
    if (this.closed) return;
    if (this.workerDead || this.queued >= this.maxQueued) {
      this.drop(1);
      return;
    }
    this.batch.push(event);
    if (this.batch.length >= this.maxBatch) this.handOver();
    else if (!this.timer) {
      this.timer = setTimeout(() => this.handOver(), this.flushMs);
      this.timer.unref?.();
    }
  }

  /** Events accepted and not yet committed (waiting here or in the worker). */
  get queued(): number {
    return this.batch.length + this.inFlight;
  }

  /** Events dropped since start: the queue was full, or the writer failed. */
  get dropped(): number {
    return this.droppedTotal;
  }

  /** Delete rows older than the retention, in the worker. Call on start and hourly. */
  prune(): void {
    if (!this.closed) this.post({ type: "prune" });
  }

  /** Resolves once everything accepted so far is committed (for tests and callers that read back). */
  settled(): Promise<void> {
    this.handOver();
    if (this.inFlight === 0 || this.workerDead) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  metricLines(): string[] {
    return [
      "# HELP clawpatrol_events_dropped_total Events not recorded in the state database: its write queue was full or its writer failed.",
      "# TYPE clawpatrol_events_dropped_total counter",
      `clawpatrol_events_dropped_total ${this.droppedTotal}`,
      "# HELP clawpatrol_events_queued Events waiting to be written to the state database.",
      "# TYPE clawpatrol_events_queued gauge",
      `clawpatrol_events_queued ${this.queued}`,
    ];
  }

  /** Hands over what is queued and waits for the worker to commit it and close its connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.handOver();
    if (this.workerDead) return;
    const lost = await new Promise<number | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), this.closeTimeoutMs);
      this.onClosed = (n) => {
        clearTimeout(timer);
        resolve(n);
      };
      this.post({ type: "close" });
    });
    if (lost === undefined) log.error("actions sink: the writer did not finish in time; events lost", { events: this.inFlight });
    else if (lost > 0) log.error("actions sink: events lost at close", { events: lost });
    this.droppedTotal += lost ?? this.inFlight;
    this.worker.terminate();
  }

  private handOver(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.batch.length === 0) return;
    const batch = this.batch;
    this.batch = [];
    let json: string;
    try {
      // Each event's JSON is made once (the JSON-lines sink may have made it already).
      json = `[${batch.map(eventJson).join(",")}]`;
    } catch (err) {
      // A value JSON cannot carry (a cycle, a BigInt): drop this batch, say so.
      log.error("actions sink: events could not be serialised; dropped", { events: batch.length, error: err });
      this.drop(batch.length, false);
      return;
    }
    this.inFlight += batch.length;
    this.post({ type: "batch", json });
  }

  private onWorker(m: WorkerOut): void {
    switch (m.type) {
      case "written":
        this.inFlight = Math.max(0, this.inFlight - m.rows);
        if (this.droppedEpisode > 0 && this.queued < this.maxQueued) {
          log.info("actions sink: queue has room again", { dropped: this.droppedEpisode });
          this.droppedEpisode = 0;
        }
        if (this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w();
        break;
      case "log":
        log[m.level](m.msg, m.fields);
        break;
      case "closed":
        this.inFlight = m.lost;
        this.onClosed?.(m.lost);
        break;
    }
  }

  private onWorkerGone(reason: string): void {
    if (this.workerDead) return;
    this.workerDead = true;
    log.error("actions sink: the writer thread failed; events are dropped from now on", { error: reason, events: this.queued });
    this.drop(this.queued, false);
    this.batch = [];
    this.inFlight = 0;
    for (const w of this.idleWaiters.splice(0)) w();
    this.onClosed?.(0);
  }

  private drop(n: number, episode = true): void {
    this.droppedTotal += n;
    if (!episode) return;
    if (this.droppedEpisode === 0) log.warn("actions sink: queue full; dropping events (counted in clawpatrol_events_dropped_total)", { queued: this.queued });
    this.droppedEpisode += n;
  }

  private post(m: WorkerIn): void {
    this.worker.postMessage(m);
  }
}
