import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { MAX_QUERY_LIMIT, insertActions, pruneActions, queryActions } from "../../../app/store/actions.ts";
import { openStateDb } from "../../../app/store/db.ts";
import { sampleEvent, tempDir } from "../events/fixtures.ts";

let t: ReturnType<typeof tempDir>;
let db: Database;
beforeEach(() => {
  t = tempDir();
  db = openStateDb(t.dir);
});
afterEach(() => {
  db.close();
  t.cleanup();
});

const at = (i: number) => new Date(Date.UTC(2025, 0, 1, 0, 0, i)).toISOString();

function seed(): void {
  const events = [];
  for (let i = 0; i < 30; i++) {
    events.push(
      sampleEvent({
        time: at(i),
        flowId: `f${i}`,
        device: i % 3 === 0 ? "ci" : "laptop",
        verdict: i % 5 === 0 ? "deny" : "allow",
      }),
    );
  }
  insertActions(db, events);
}

describe("insertActions / queryActions", () => {
  test("round-trips every field; absent optionals stay absent", () => {
    const full = sampleEvent({ detail: "cel: no such key", time: "2025-01-02T10:31:02.123Z", durationMs: 12 });
    const { endpoint, method, path, status, rule, credential, ...rest } = sampleEvent();
    const relay = { ...rest, kind: "connection" as const, verdict: "relay", port: 22, host: "10.0.0.5" };
    insertActions(db, [full, relay]);
    const [r2, r1] = queryActions(db, { limit: 10 });
    const { id: id1, ...e1 } = r1!;
    const { id: id2, ...e2 } = r2!;
    expect(e1).toEqual(full);
    expect(e2).toEqual(relay);
    expect(id2).toBeGreaterThan(id1);
  });

  test("an unparsable time falls back to the clock", () => {
    insertActions(db, [sampleEvent({ time: "garbage" })], () => Date.UTC(2025, 5, 1));
    expect(queryActions(db, { limit: 1 })[0]!.time).toBe("2025-06-01T00:00:00.000Z");
  });

  test("newest first, limited", () => {
    seed();
    const rows = queryActions(db, { limit: 5 });
    expect(rows.map((r) => r.flowId)).toEqual(["f29", "f28", "f27", "f26", "f25"]);
  });

  test("filters by device, verdict and since, combined", () => {
    seed();
    expect(queryActions(db, { device: "ci", limit: 100 }).every((r) => r.device === "ci")).toBe(true);
    expect(queryActions(db, { device: "ci", limit: 100 })).toHaveLength(10);
    expect(queryActions(db, { verdict: "deny", limit: 100 }).map((r) => r.flowId)).toEqual([
      "f25",
      "f20",
      "f15",
      "f10",
      "f5",
      "f0",
    ]);
    expect(queryActions(db, { since: at(27), limit: 100 }).map((r) => r.flowId)).toEqual(["f29", "f28", "f27"]);
    expect(queryActions(db, { since: Date.parse(at(28)), limit: 100 })).toHaveLength(2);
    expect(queryActions(db, { device: "ci", verdict: "deny", limit: 100 }).map((r) => r.flowId)).toEqual([
      "f15",
      "f0",
    ]);
    expect(queryActions(db, { device: "nobody", limit: 100 })).toEqual([]);
    expect(() => queryActions(db, { since: "not a time", limit: 1 })).toThrow(/invalid since/);
  });

  test("pages with beforeId until exhausted, without gaps or repeats", () => {
    seed();
    const seen: string[] = [];
    let beforeId: number | undefined;
    for (;;) {
      const page = queryActions(db, { device: "laptop", limit: 7, beforeId });
      if (page.length === 0) break;
      seen.push(...page.map((r) => r.flowId));
      beforeId = page[page.length - 1]!.id;
    }
    const expected = [];
    for (let i = 29; i >= 0; i--) if (i % 3 !== 0) expected.push(`f${i}`);
    expect(seen).toEqual(expected);
  });

  test("limit is clamped", () => {
    seed();
    expect(queryActions(db, { limit: -1 })).toEqual([]);
    expect(queryActions(db, { limit: 1e9 })).toHaveLength(30);
    expect(MAX_QUERY_LIMIT).toBe(1000);
  });

  test("pruneActions deletes strictly older rows", () => {
    seed();
    expect(pruneActions(db, Date.parse(at(10)))).toBe(10);
    expect(queryActions(db, { limit: 100 }).at(-1)!.flowId).toBe("f10");
  });
});
