// The event bus: redact once, then fan out to every sink and live
// subscriber. Publishing never throws: a failing sink is reported to the log
// once (the first failure; later ones are counted, not logged) and the
// others still receive the event. If redaction itself fails the event is
// dropped rather than sent unredacted.
import { log } from "../log.ts";
import type { Redactor } from "./redact.ts";
import type { EventSink, GatewayEvent } from "./types.ts";

export type EventSubscriber = (event: GatewayEvent) => void;

function describe(target: object): string {
  if (typeof target === "function") return target.name || "subscriber";
  return target.constructor?.name || "anonymous";
}

export class EventBus {
  private readonly sinks: EventSink[] = [];
  private readonly subscribers = new Set<EventSubscriber>();
  /** Failures per sink or subscriber, so each is logged once. */
  private readonly failures = new Map<object, number>();
  private closed = false;

  constructor(private readonly redactor: Redactor) {}

  addSink(sink: EventSink): void {
    this.sinks.push(sink);
  }

  /** Receive every published (redacted) event, e.g. for SSE. Returns the unsubscribe. */
  subscribe(fn: EventSubscriber): () => void {
    this.subscribers.add(fn);
    return () => {
      this.subscribers.delete(fn);
    };
  }

  publish(event: GatewayEvent): void {
    if (this.closed) return;
    let redacted: GatewayEvent;
    try {
      redacted = this.redactor.redactEvent(event);
    } catch (err) {
      this.fail(this.redactor, "event redaction failed; event dropped", err);
      return;
    }
    for (const sink of this.sinks) {
      try {
        sink.write(redacted);
      } catch (err) {
        this.fail(sink, "event sink failed", err);
      }
    }
    for (const fn of this.subscribers) {
      try {
        fn(redacted);
      } catch (err) {
        this.fail(fn, "event subscriber failed", err);
      }
    }
  }

  /** How many times a sink (or subscriber) has thrown. */
  failureCount(target: object): number {
    return this.failures.get(target) ?? 0;
  }

  /** Stop accepting events and close every sink (flushing their buffers). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.subscribers.clear();
    await Promise.all(
      this.sinks.map(async (sink) => {
        try {
          await sink.close?.();
        } catch (err) {
          log.error("event sink failed to close", { sink: describe(sink), error: err });
        }
      }),
    );
  }

  private fail(target: object, msg: string, err: unknown): void {
    const n = (this.failures.get(target) ?? 0) + 1;
    this.failures.set(target, n);
    if (n === 1) log.error(msg, { sink: describe(target), error: err });
  }
}
