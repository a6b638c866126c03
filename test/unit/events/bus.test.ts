import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { EventBus } from "../../../app/events/bus.ts";
import { REDACTED, Redactor } from "../../../app/events/redact.ts";
import type { EventSink, GatewayEvent } from "../../../app/events/types.ts";
import { setLogWriter } from "../../../app/log.ts";
import { sampleEvent } from "./fixtures.ts";

class MemorySink implements EventSink {
  events: GatewayEvent[] = [];
  closed = false;
  write(e: GatewayEvent): void {
    this.events.push(e);
  }
  async close(): Promise<void> {
    await Promise.resolve();
    this.closed = true;
  }
}

class ThrowingSink implements EventSink {
  write(): void {
    throw new Error("disk on fire");
  }
  close(): void {
    throw new Error("still on fire");
  }
}

let logs: string[];
beforeEach(() => {
  logs = [];
  setLogWriter((line) => logs.push(line));
});
afterEach(() => setLogWriter(undefined));

const SECRET = "sk-live-0123456789";

describe("EventBus", () => {
  test("redacts once, then fans out the same object to every sink and subscriber", () => {
    let calls = 0;
    const redactor = new Redactor(() => [SECRET]);
    const orig = redactor.redactEvent.bind(redactor);
    redactor.redactEvent = (e) => {
      calls++;
      return orig(e);
    };
    const bus = new EventBus(redactor);
    const a = new MemorySink();
    const b = new MemorySink();
    bus.addSink(a);
    bus.addSink(b);
    const seen: GatewayEvent[] = [];
    bus.subscribe((e) => seen.push(e));
    bus.publish(sampleEvent({ path: `/x?key=${SECRET}` }));
    expect(calls).toBe(1);
    expect(a.events).toHaveLength(1);
    expect(a.events[0]!.path).toBe(`/x?key=${REDACTED}`);
    expect(b.events[0]).toBe(a.events[0]!);
    expect(seen[0]).toBe(a.events[0]!);
  });

  test("a throwing sink is logged once and never breaks publish or the others", () => {
    const bus = new EventBus(new Redactor(() => []));
    const bad = new ThrowingSink();
    const good = new MemorySink();
    bus.addSink(bad);
    bus.addSink(good);
    expect(() => {
      bus.publish(sampleEvent({ flowId: "1" }));
      bus.publish(sampleEvent({ flowId: "2" }));
      bus.publish(sampleEvent({ flowId: "3" }));
    }).not.toThrow();
    expect(good.events.map((e) => e.flowId)).toEqual(["1", "2", "3"]);
    expect(bus.failureCount(bad)).toBe(3);
    expect(logs).toEqual(['ERROR event sink failed sink=ThrowingSink error="disk on fire"']);
  });

  test("a throwing subscriber is isolated too", () => {
    const bus = new EventBus(new Redactor(() => []));
    const good = new MemorySink();
    bus.addSink(good);
    const after: string[] = [];
    bus.subscribe(function boom() {
      throw new Error("x");
    });
    bus.subscribe((e) => after.push(e.flowId));
    bus.publish(sampleEvent());
    expect(after).toEqual(["f1"]);
    expect(logs[0]).toStartWith("ERROR event subscriber failed sink=boom");
  });

  test("unsubscribe stops delivery", () => {
    const bus = new EventBus(new Redactor(() => []));
    const seen: string[] = [];
    const off = bus.subscribe((e) => seen.push(e.flowId));
    bus.publish(sampleEvent({ flowId: "a" }));
    off();
    off();
    bus.publish(sampleEvent({ flowId: "b" }));
    expect(seen).toEqual(["a"]);
  });

  test("if redaction fails the event is dropped, not sent in the clear", () => {
    const bus = new EventBus(
      new Redactor(() => {
        throw new Error("store unreadable");
      }),
    );
    const sink = new MemorySink();
    bus.addSink(sink);
    bus.publish(sampleEvent());
    expect(sink.events).toEqual([]);
    expect(logs[0]).toContain("event redaction failed");
  });

  test("close closes every sink (awaiting async ones), survives a throwing close, then ignores publishes", async () => {
    const bus = new EventBus(new Redactor(() => []));
    const a = new MemorySink();
    bus.addSink(new ThrowingSink());
    bus.addSink(a);
    await bus.close();
    expect(a.closed).toBe(true);
    expect(logs.some((l) => l.includes("failed to close") && l.includes("still on fire"))).toBe(true);
    bus.publish(sampleEvent());
    expect(a.events).toEqual([]);
    await bus.close();
  });
});
