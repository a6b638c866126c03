// The actions sink behind its writer thread: every event of a burst arrives
// exactly once, a full queue drops and counts (never blocks), close commits
// everything accepted.
import { afterEach, beforeEach, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import * as path from "node:path";
import { QueuedActionsSink } from "../../../app/events/sinks/sqlite-queue.ts";
import { setLogWriter } from "../../../app/log.ts";
import { openStateDb, STATE_DB_FILE } from "../../../app/store/db.ts";
import { sampleEvent, tempDir } from "./fixtures.ts";

let t: ReturnType<typeof tempDir>;
let db: Database;
let logs: string[];
beforeEach(() => {
  t = tempDir();
  db = openStateDb(t.dir);
  logs = [];
  setLogWriter((line) => logs.push(line));
});
afterEach(() => {
  setLogWriter(undefined);
  db.close();
  t.cleanup();
});

const file = () => path.join(t.dir, STATE_DB_FILE);
const flowIds = () => (db.query("SELECT flow_id FROM actions ORDER BY id").all() as { flow_id: string }[]).map((r) => r.flow_id);

test("every event of a burst arrives exactly once, in order", async () => {
  const sink = new QueuedActionsSink({ file: file(), retentionDays: 30, maxBatch: 64, flushMs: 10 });
  const n = 5000;
  for (let i = 0; i < n; i++) sink.write(sampleEvent({ flowId: `e${i}`, action: { verb: "select", tables: ["t"], rows: i } }));
  await sink.settled();
  const ids = flowIds();
  expect(ids.length).toBe(n);
  expect(ids).toEqual(Array.from({ length: n }, (_, i) => `e${i}`));
  expect(sink.dropped).toBe(0);
  expect(sink.queued).toBe(0);
  await sink.close();
  expect(flowIds().length).toBe(n);
});

test("a full queue drops new events, counts them in the metrics and logs once", async () => {
  // A write lock held by another connection: the worker's inserts wait, so nothing is acknowledged.
  const blocker = openStateDb(t.dir);
  blocker.run("BEGIN IMMEDIATE");
  const sink = new QueuedActionsSink({ file: file(), retentionDays: 30, maxBatch: 10, maxQueued: 100, flushMs: 10 });
  for (let i = 0; i < 150; i++) sink.write(sampleEvent({ flowId: `e${i}` }));
  expect(sink.dropped).toBe(50);
  expect(sink.metricLines()).toContain("clawpatrol_events_dropped_total 50");
  expect(logs.filter((l) => l.includes("queue full")).length).toBe(1);

  blocker.run("COMMIT");
  blocker.close();
  await sink.settled();
  expect(flowIds()).toEqual(Array.from({ length: 100 }, (_, i) => `e${i}`));
  // Room again: accepted once more.
  sink.write(sampleEvent({ flowId: "after" }));
  await sink.close();
  expect(flowIds().at(-1)).toBe("after");
  expect(sink.dropped).toBe(50);
});

test("close commits everything accepted, even events not yet handed over", async () => {
  const sink = new QueuedActionsSink({ file: file(), retentionDays: 30, maxBatch: 1000, flushMs: 60_000 });
  for (let i = 0; i < 700; i++) sink.write(sampleEvent({ flowId: `e${i}` }));
  expect(sink.queued).toBe(700);
  await sink.close();
  expect(flowIds().length).toBe(700);
  expect(sink.dropped).toBe(0);
  sink.write(sampleEvent({ flowId: "late" }));
  expect(flowIds().length).toBe(700);
});

test("prune runs in the writer and deletes rows past the retention", async () => {
  const sink = new QueuedActionsSink({ file: file(), retentionDays: 7, flushMs: 10 });
  sink.write(sampleEvent({ flowId: "old", time: new Date(Date.now() - 8 * 86_400_000).toISOString() }));
  sink.write(sampleEvent({ flowId: "new", time: new Date().toISOString() }));
  await sink.settled();
  expect(flowIds()).toEqual(["old", "new"]);
  sink.prune();
  await sink.close(); // messages are handled in order: the prune is done once close returns
  expect(flowIds()).toEqual(["new"]);
});

test("SIGTERM's clean stop commits every event still queued", async () => {
  const n = 3000;
  const child = Bun.spawn([process.execPath, path.join(import.meta.dir, "sqlite-queue-child.ts"), t.dir, String(n)], { stdout: "pipe", stderr: "inherit" });
  const killer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  try {
    const reader = child.stdout.getReader();
    let out = "";
    while (!out.includes("ready")) {
      const { value, done } = await reader.read();
      if (done) break;
      out += new TextDecoder().decode(value);
    }
    expect(out).toContain("ready");
    child.kill("SIGTERM");
    expect(await child.exited).toBe(0);
  } finally {
    clearTimeout(killer);
    child.kill("SIGKILL");
  }
  expect(flowIds()).toEqual(Array.from({ length: n }, (_, i) => `e${i}`));
});
