// The export spool (app/events/export/spool.ts) on a real temp dir: order,
// acknowledgement, the byte cap, reopening after a stop or a crash.
import { afterEach, expect, test } from "bun:test";
import { appendFileSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { MAX_LINE_BYTES, Spool } from "../../../app/events/export/spool.ts";

const dirs: string[] = [];
function dir(): string {
  const d = mkdtempSync(path.join(tmpdir(), "clawpatrol-spool-"));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const line = (i: number) => `{"n":"${String(i).padStart(2, "0")}","pad":"${"x".repeat(40)}"}`;
/** Every test line's size on disk, its newline included. */
const L = line(0).length + 1;

function drain(s: Spool, per = 7): string[] {
  const out: string[] = [];
  for (let b = s.read(per); b; b = s.read(per)) {
    out.push(...b.lines);
    s.acknowledge(b);
  }
  return out;
}

test("lines come back in order, in batches of at most the size asked for, across segments", () => {
  const s = new Spool({ dir: dir(), maxBytes: 1 << 20, segmentBytes: 300 });
  const lines = Array.from({ length: 50 }, (_, i) => line(i));
  expect(s.append(lines)).toBe(50);
  const first = s.read(7)!;
  expect(first.lines).toEqual(lines.slice(0, 7));
  s.acknowledge(first);
  expect(drain(s)).toEqual(lines.slice(7));
  expect(s.read(7)).toBeUndefined();
  expect(s.pendingBytes).toBe(0);
});

test("a batch read but not acknowledged is read again, from the same start", () => {
  const s = new Spool({ dir: dir(), maxBytes: 1 << 20 });
  s.append([line(1), line(2), line(3)]);
  const a = s.read(2)!;
  const b = s.read(2)!;
  expect(b.lines).toEqual(a.lines);
  expect(b.start).toEqual(a.start);
});

test("read segments are deleted, so their bytes count toward the cap no longer", () => {
  const d = dir();
  const s = new Spool({ dir: d, maxBytes: 1 << 20, segmentBytes: 200 });
  s.append(Array.from({ length: 20 }, (_, i) => line(i)));
  expect(readdirSync(d).filter((f) => f.endsWith(".seg")).length).toBeGreaterThan(3);
  drain(s);
  // Only the segment still being written to remains.
  expect(readdirSync(d).filter((f) => f.endsWith(".seg")).length).toBe(1);
  expect(s.bytes).toBeLessThanOrEqual(200);
});

test("the cap: a line that does not fit is refused, the call returns at once, and room comes back once lines are acknowledged", () => {
  const s = new Spool({ dir: dir(), maxBytes: L * 10, segmentBytes: L * 2 });
  expect(s.append(Array.from({ length: 15 }, (_, i) => line(i)))).toBe(10);
  expect(s.bytes).toBe(L * 10);
  expect(s.append([line(99)])).toBe(0);
  const b = s.read(4)!;
  expect(b.lines.length).toBe(4);
  s.acknowledge(b);
  // Two whole segments of two lines went: four lines fit again, not five.
  expect(s.bytes).toBe(L * 6);
  expect(s.append([line(10), line(11), line(12), line(13), line(14)])).toBe(4);
  expect(drain(s)).toEqual([...Array.from({ length: 6 }, (_, i) => line(i + 4)), line(10), line(11), line(12), line(13)]);
});

test("a line over MAX_LINE_BYTES is refused whatever the room", () => {
  const s = new Spool({ dir: dir(), maxBytes: 64 << 20 });
  expect(s.append(["x".repeat(MAX_LINE_BYTES + 1)])).toBe(0);
  expect(s.bytes).toBe(0);
});

test("reopened, a spool resumes after the last acknowledged line (a stop is not a loss, nor a duplicate)", () => {
  const d = dir();
  const lines = Array.from({ length: 30 }, (_, i) => line(i));
  const s1 = new Spool({ dir: d, maxBytes: 1 << 20, segmentBytes: 2000 });
  s1.append(lines);
  const b = s1.read(12)!;
  s1.acknowledge(b);
  s1.read(5); // read, never acknowledged: must come again
  s1.close();
  const s2 = new Spool({ dir: d, maxBytes: 1 << 20, segmentBytes: 2000 });
  expect(s2.pendingBytes).toBe(18 * L);
  s2.append([line(30)]);
  expect(drain(s2)).toEqual([...lines.slice(12), line(30)]);
});

test("a torn last line (a crash mid-write) is skipped and counted; later lines go to a new segment and are read", () => {
  const d = dir();
  const s1 = new Spool({ dir: d, maxBytes: 1 << 20 });
  s1.append([line(1), line(2)]);
  s1.close();
  const seg = readdirSync(d).find((f) => f.endsWith(".seg"))!;
  appendFileSync(path.join(d, seg), '{"n":3,"pad":"xx'); // no newline: torn
  const s2 = new Spool({ dir: d, maxBytes: 1 << 20 });
  s2.append([line(4)]);
  expect(drain(s2)).toEqual([line(1), line(2), line(4)]);
  expect(s2.tornLines).toBe(1);
});

test("an unreadable cursor file restarts from the oldest segment (at least once)", () => {
  const d = dir();
  const s1 = new Spool({ dir: d, maxBytes: 1 << 20 });
  s1.append([line(1), line(2), line(3)]);
  s1.acknowledge(s1.read(1)!);
  s1.close();
  appendFileSync(path.join(d, "cursor"), "garbage");
  const s2 = new Spool({ dir: d, maxBytes: 1 << 20 });
  expect(drain(s2)).toEqual([line(1), line(2), line(3)]);
});
