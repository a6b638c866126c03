// The export spool: a bounded, append-only queue of lines on disk, so that
// events wait out an outage of the export target and survive a restart.
//
// 1. Segments: `<n>.seg` files of newline-terminated lines, numbered in
//    order; lines are appended to the newest one, which rolls over at
//    `segmentBytes`. A reopened spool always starts a fresh segment, so a
//    line torn by a crash is never continued by the next one.
// 2. Cursor: `cursor` holds the segment and byte offset of the first line
//    not yet acknowledged, rewritten atomically (write + rename) after each
//    acknowledged batch. Segments wholly before it are deleted.
// 3. Cap: the segments' bytes on disk never exceed `maxBytes`. A line that
//    does not fit is refused (never waited for): the caller counts it as
//    dropped and records the gap once there is room again.
//
// Synchronous file calls on purpose: each is one small write or read on the
// local disk, and the caller batches lines so there are a few per second.
import * as fs from "node:fs";
import * as path from "node:path";

export interface SpoolOptions {
  dir: string;
  /** Bytes of segment files kept at most; lines beyond are refused. */
  maxBytes: number;
  /** A segment is closed once it holds this many bytes (default: maxBytes / 8, at most 4 MiB). */
  segmentBytes?: number;
}

export interface SpoolPosition {
  segment: number;
  offset: number;
}

export interface SpoolBatch {
  lines: string[];
  /** Where the batch starts; also its stable identity (the same batch read again has the same start). */
  start: SpoolPosition;
  /** The position right after its last line: the cursor once acknowledged. */
  end: SpoolPosition;
}

const CURSOR_FILE = "cursor";
const SEGMENT = /^(\d{12})\.seg$/;
/** Lines longer than this are refused by append (a batch reads at most 8 of them). */
export const MAX_LINE_BYTES = 1024 * 1024;
const MAX_READ_BYTES = 8 * MAX_LINE_BYTES;

function segmentName(n: number): string {
  return `${String(n).padStart(12, "0")}.seg`;
}

export class Spool {
  readonly maxBytes: number;
  private readonly segmentBytes: number;
  /** Size of each segment file present, by number. */
  private readonly sizes = new Map<number, number>();
  private cursor: SpoolPosition;
  private writeSegment: number;
  private fd: number | undefined;
  private total = 0;
  private closed = false;
  /** Partial lines skipped (a crash or a failed write mid-line), for the caller to report. */
  tornLines = 0;

  constructor(private readonly opts: SpoolOptions) {
    this.maxBytes = opts.maxBytes;
    this.segmentBytes = opts.segmentBytes ?? Math.max(1, Math.min(4 * 1024 * 1024, Math.floor(opts.maxBytes / 8)));
    fs.mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
    const found = fs
      .readdirSync(opts.dir)
      .map((f) => SEGMENT.exec(f))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
    const saved = this.readCursor() ?? { segment: found[0] ?? 1, offset: 0 };
    for (const n of found) {
      if (n < saved.segment) {
        fs.rmSync(this.segmentPath(n), { force: true });
        continue;
      }
      const size = fs.statSync(this.segmentPath(n)).size;
      this.sizes.set(n, size);
      this.total += size;
    }
    // Never append to a segment from before: its last line may be torn.
    this.writeSegment = Math.max(saved.segment, (found.at(-1) ?? 0) + 1);
    this.cursor = this.sizes.has(saved.segment) ? saved : { segment: this.nextSegment(saved.segment) ?? this.writeSegment, offset: 0 };
  }

  /** Bytes of segment files on disk (read lines count until their segment is deleted): what the cap limits. */
  get bytes(): number {
    return this.total;
  }

  /** Bytes of lines not yet acknowledged: the queue's depth. */
  get pendingBytes(): number {
    return this.total - (this.sizes.has(this.cursor.segment) ? this.cursor.offset : 0);
  }

  /**
   * Appends lines (each without its newline) in order, stopping at the first
   * that does not fit under the cap (or is longer than MAX_LINE_BYTES);
   * returns how many were written. An I/O
   * error throws, after which the spool goes on in a fresh segment.
   */
  append(lines: readonly string[]): number {
    if (this.closed) return 0;
    let written = 0;
    let chunk: string[] = [];
    let chunkBytes = 0;
    const flush = () => {
      if (chunkBytes > 0) this.writeChunk(Buffer.from(chunk.join(""), "utf8"));
      chunk = [];
      chunkBytes = 0;
    };
    for (const line of lines) {
      const text = line + "\n";
      const size = Buffer.byteLength(text);
      if (size > MAX_LINE_BYTES || this.total + chunkBytes + size > this.maxBytes) break;
      const current = (this.sizes.get(this.writeSegment) ?? 0) + chunkBytes;
      if (current > 0 && current + size > this.segmentBytes) {
        flush();
        this.roll();
      }
      chunk.push(text);
      chunkBytes += size;
      written += 1;
    }
    flush();
    return written;
  }

  /** Up to `maxLines` unread lines from the cursor on (across segments), or undefined when there are none. */
  read(maxLines: number): SpoolBatch | undefined {
    const lines: string[] = [];
    let start: SpoolPosition | undefined;
    let pos = { ...this.cursor };
    let budget = MAX_READ_BYTES;
    while (lines.length < maxLines && budget > 0) {
      const size = this.sizes.get(pos.segment);
      if (size === undefined) break; // the write segment, not created yet
      if (pos.offset < size) {
        const got = this.readLines(pos, size, maxLines - lines.length, budget);
        if (got.lines.length > 0) {
          start ??= { ...pos };
          lines.push(...got.lines);
          pos = { segment: pos.segment, offset: pos.offset + got.consumed };
          budget -= got.consumed;
          continue;
        }
        // Only a partial line left. In the write segment that cannot be (lines are written whole).
        if (pos.segment === this.writeSegment || lines.length > 0) break;
        this.tornLines += 1;
      } else if (pos.segment === this.writeSegment) {
        break;
      }
      pos = { segment: this.nextSegment(pos.segment) ?? this.writeSegment, offset: 0 };
      // Nothing collected yet: the segment behind is read (or torn) and can go now.
      if (lines.length === 0) this.moveCursor(pos);
    }
    return start ? { lines, start, end: pos } : undefined;
  }

  /** The batch reached its target: its lines are never read again. */
  acknowledge(batch: SpoolBatch): void {
    const end = batch.end;
    if (end.segment < this.cursor.segment || (end.segment === this.cursor.segment && end.offset <= this.cursor.offset)) return;
    const size = this.sizes.get(end.segment) ?? 0;
    // A closed segment read to its end goes at once.
    if (end.offset >= size && end.segment !== this.writeSegment) this.moveCursor({ segment: this.nextSegment(end.segment) ?? this.writeSegment, offset: 0 });
    else this.moveCursor(end);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }

  /** The cursor is saved before the segments behind it are deleted, so a crash between the two loses nothing. */
  private moveCursor(to: SpoolPosition): void {
    this.cursor = { ...to };
    this.writeCursor();
    for (const [n, size] of [...this.sizes]) {
      if (n >= to.segment) continue;
      fs.rmSync(this.segmentPath(n), { force: true });
      this.total -= size;
      this.sizes.delete(n);
    }
  }

  private writeChunk(data: Buffer): void {
    if (this.fd === undefined) {
      this.fd = fs.openSync(this.segmentPath(this.writeSegment), "a", 0o600);
      if (!this.sizes.has(this.writeSegment)) this.sizes.set(this.writeSegment, 0);
    }
    let done = 0;
    try {
      while (done < data.length) done += fs.writeSync(this.fd, data, done, data.length - done);
    } catch (err) {
      // Part of a line may be on disk: it stays the torn tail of a closed segment.
      this.grow(this.writeSegment, done);
      this.roll();
      throw err;
    }
    this.grow(this.writeSegment, done);
  }

  private readLines(pos: SpoolPosition, size: number, maxLines: number, maxBytes: number): { lines: string[]; consumed: number } {
    const want = Math.min(size - pos.offset, maxBytes);
    const buf = Buffer.allocUnsafe(want);
    const fd = fs.openSync(this.segmentPath(pos.segment), "r");
    let got = 0;
    try {
      while (got < want) {
        const n = fs.readSync(fd, buf, got, want - got, pos.offset + got);
        if (n === 0) break;
        got += n;
      }
    } finally {
      fs.closeSync(fd);
    }
    const lines: string[] = [];
    let start = 0;
    while (lines.length < maxLines) {
      const nl = buf.indexOf(0x0a, start);
      if (nl === -1 || nl >= got) break;
      lines.push(buf.toString("utf8", start, nl));
      start = nl + 1;
    }
    return { lines, consumed: start };
  }

  private nextSegment(after: number): number | undefined {
    let best: number | undefined;
    for (const n of this.sizes.keys()) if (n > after && (best === undefined || n < best)) best = n;
    return best;
  }

  private roll(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
    this.writeSegment += 1;
  }

  private grow(segment: number, bytes: number): void {
    this.sizes.set(segment, (this.sizes.get(segment) ?? 0) + bytes);
    this.total += bytes;
  }

  private segmentPath(n: number): string {
    return path.join(this.opts.dir, segmentName(n));
  }

  private readCursor(): SpoolPosition | undefined {
    try {
      const v = JSON.parse(fs.readFileSync(path.join(this.opts.dir, CURSOR_FILE), "utf8")) as Partial<SpoolPosition>;
      const { segment, offset } = v;
      if (Number.isSafeInteger(segment) && Number.isSafeInteger(offset) && segment! >= 0 && offset! >= 0) return { segment: segment!, offset: offset! };
    } catch {
      // No cursor (a new spool) or an unreadable one: start at the oldest segment (at-least-once).
    }
    return undefined;
  }

  private writeCursor(): void {
    const file = path.join(this.opts.dir, CURSOR_FILE);
    fs.writeFileSync(file + ".tmp", JSON.stringify(this.cursor), { mode: 0o600 });
    fs.renameSync(file + ".tmp", file);
  }
}
