// The exporter (app/events/export/exporter.ts) over a real spool and an
// in-memory twin of ClickHouse that can be taken down and brought back.
// Conditions are waited for, never fixed times.
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Exporter, type ExportTarget } from "../../../app/events/export/exporter.ts";
import { eventRow } from "../../../app/events/export/rows.ts";
import { Spool } from "../../../app/events/export/spool.ts";
import { sampleEvent } from "../events/fixtures.ts";

class TwinTarget implements ExportTarget {
  rows: Record<string, unknown>[] = [];
  inserts: number[] = [];
  prepares = 0;
  failures = 0;
  down = false;
  async prepare(): Promise<void> {
    if (this.down) this.refuse();
    this.prepares += 1;
  }
  async insert(rows: Record<string, unknown>[]): Promise<void> {
    if (this.down) this.refuse();
    this.inserts.push(rows.length);
    this.rows.push(...rows);
  }
  async close(): Promise<void> {}
  private refuse(): never {
    this.failures += 1;
    throw new Error("connect ECONNREFUSED 127.0.0.1:8123");
  }
}

const dirs: string[] = [];
const exporters: Exporter[] = [];
afterEach(async () => {
  await Promise.all(exporters.splice(0).map((e) => e.close()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setup(opts: { maxBytes?: number; batchSize?: number; dir?: string; target?: TwinTarget } = {}) {
  const dir = opts.dir ?? mkdtempSync(path.join(tmpdir(), "clawpatrol-exporter-"));
  if (!opts.dir) dirs.push(dir);
  const target = opts.target ?? new TwinTarget();
  let n = 0;
  const exporter = new Exporter({
    spool: new Spool({ dir, maxBytes: opts.maxBytes ?? 1 << 20 }),
    target,
    gateway: "gw-test",
    batchSize: opts.batchSize ?? 10,
    flushIntervalMs: 20,
    backoff: { minMs: 5, maxMs: 40 },
    newId: () => `id-${++n}`,
  });
  exporters.push(exporter);
  return { dir, target, exporter };
}

async function until(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(5);
  }
}

const paths = (rows: Record<string, unknown>[]) => rows.filter((r) => r.kind !== "export_gap").map((r) => r.path);

test("events arrive as rows, in order, in batches of at most batch_size, after the table was prepared", async () => {
  const { target, exporter } = setup({ batchSize: 10 });
  for (let i = 0; i < 35; i++) exporter.write(sampleEvent({ path: `/p/${i}` }));
  await until("35 rows", () => target.rows.length === 35);
  expect(paths(target.rows)).toEqual(Array.from({ length: 35 }, (_, i) => `/p/${i}`));
  expect(Math.max(...target.inserts)).toBeLessThanOrEqual(10);
  expect(target.prepares).toBe(1);
  const row = target.rows[0]!;
  expect(row).toMatchObject({ gateway: "gw-test", event_id: "id-1", device: "laptop", ts: "2025-01-02 10:31:02", ts_ms: Date.parse("2025-01-02T10:31:02.000Z") });
  expect(String(row.batch_id)).toMatch(/^gw-test:\d+:\d+$/);
});

test("while the target is down nothing is lost and write() never waits; back up, every row arrives once", async () => {
  const { target, exporter } = setup({ batchSize: 10 });
  exporter.write(sampleEvent({ path: "/before" }));
  await until("the first row", () => target.rows.length === 1);
  target.rows = [];
  target.down = true;
  for (let i = 0; i < 25; i++) exporter.write(sampleEvent({ path: `/down/${i}` }));
  await until("failed attempts", () => target.failures >= 3);
  await until("rows on disk", () => exporter.snapshot().spoolBytes > 0);
  expect(target.rows).toEqual([]);
  expect(exporter.snapshot().up).toBe(false);
  expect(exporter.metricLines()).toContain("clawpatrol_export_up 0");
  target.down = false;
  await until("25 rows", () => target.rows.length === 25);
  expect(paths(target.rows)).toEqual(Array.from({ length: 25 }, (_, i) => `/down/${i}`));
  // Prepared again after the outage (the table may have gone with the server).
  expect(target.prepares).toBe(2);
  await until("an empty spool", () => exporter.snapshot().spoolBytes === 0);
  expect(exporter.snapshot()).toMatchObject({ sent: 26, dropped: 0, up: true });
});

test("spool cap: beyond it events are dropped and counted (write() is synchronous: it cannot wait); the gap is recorded as a row once there is room", async () => {
  const lineBytes = JSON.stringify(eventRow(sampleEvent({ path: "/cap/00" }), "gw-test", "id-00")).length + 1;
  // Room for about 20 rows.
  const { target, exporter } = setup({ maxBytes: lineBytes * 20, batchSize: 5 });
  target.down = true;
  for (let i = 0; i < 60; i++) exporter.write(sampleEvent({ path: `/cap/${String(i).padStart(2, "0")}` }));
  await until("drops", () => exporter.snapshot().dropped > 0);
  const { dropped } = exporter.snapshot();
  expect(dropped).toBeGreaterThanOrEqual(35);
  expect(dropped).toBeLessThanOrEqual(45);
  expect(exporter.metricLines()).toContain(`clawpatrol_export_dropped_total ${dropped}`);
  target.down = false;
  await until("the gap row", () => target.rows.some((r) => r.kind === "export_gap"));
  await until("every kept row", () => target.rows.length === 60 - dropped + 1);
  const gap = target.rows.find((r) => r.kind === "export_gap")!;
  expect(gap).toMatchObject({ gateway: "gw-test", verdict: "dropped" });
  expect(String(gap.reason)).toBe(`${dropped} events dropped: the export spool was full (${lineBytes * 20} bytes)`);
  // The kept rows are the oldest ones, in order; the gap row follows them.
  const kept = paths(target.rows);
  expect(kept).toEqual(Array.from({ length: 60 - dropped }, (_, i) => `/cap/${String(i).padStart(2, "0")}`));
  expect(target.rows.at(-1)!.kind).toBe("export_gap");
});

test("close() spools what is buffered; the next exporter on the same spool sends it", async () => {
  const first = setup({ batchSize: 1000 });
  first.target.down = true;
  for (let i = 0; i < 7; i++) first.exporter.write(sampleEvent({ path: `/later/${i}` }));
  await first.exporter.close();
  expect(first.target.rows).toEqual([]);
  const second = setup({ dir: first.dir });
  await until("7 rows", () => second.target.rows.length === 7);
  expect(paths(second.target.rows)).toEqual(Array.from({ length: 7 }, (_, i) => `/later/${i}`));
});

test("a write after close is ignored, and close twice is fine", async () => {
  const { target, exporter } = setup();
  await exporter.close();
  exporter.write(sampleEvent());
  await exporter.close();
  expect(target.rows).toEqual([]);
});

test("a row: absent fields are '' or 0, the action is JSON (BigInts as text), the time is DateTime text in UTC", () => {
  const row = eventRow(
    { time: "2026-12-07T17:43:03.120Z", kind: "sql", flowId: "f9", device: "d", profile: "p", host: "db", port: 5432, bytesUp: 1, bytesDown: 2, durationMs: 3.6, verdict: "deny", reason: "r", action: { verb: "delete", rows: 12n, tables: ["public.users"] } },
    "gw",
    "e1",
  );
  expect(row).toMatchObject({ ts: "2026-12-07 17:43:03", ts_ms: Date.parse("2026-12-07T17:43:03.120Z"), kind: "sql", family: "", method: "", status: 0, rule: "", duration_ms: 4, remembered: 0, approval_ms: 0 });
  expect(JSON.parse(row.action)).toEqual({ verb: "delete", rows: "12", tables: ["public.users"] });
});
