// Events as JSON lines appended to a file (0600). Lines are buffered and
// appended every ~200 ms (or at 64 KiB) and on close. Every flush opens the
// path afresh with O_APPEND, so when logrotate moves or removes the file
// the next flush simply creates a new one; a few opens per second cost
// nothing next to the writes themselves.
import * as fs from "node:fs";
import * as path from "node:path";
import { log } from "../../log.ts";
import type { EventSink, GatewayEvent } from "../types.ts";
import { eventJson } from "../json.ts";

export interface JsonlSinkOptions {
  flushMs?: number;
  /** Flush at once when this many bytes are buffered (default 64 KiB). */
  maxBufferBytes?: number;
}

export class JsonlSink implements EventSink {
  private lines: string[] = [];
  private bytes = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly flushMs: number;
  private readonly maxBufferBytes: number;
  private failing = false;
  private closed = false;

  constructor(
    readonly file: string,
    opts: JsonlSinkOptions = {},
  ) {
    this.flushMs = opts.flushMs ?? 200;
    this.maxBufferBytes = opts.maxBufferBytes ?? 64 * 1024;
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  }

  write(event: GatewayEvent): void {
    if (this.closed) return;
    const line = eventJson(event) + "\n";
    this.lines.push(line);
    this.bytes += line.length;
    if (this.bytes >= this.maxBufferBytes) this.flush();
    else this.schedule();
  }

  flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.lines.length === 0) return;
    const data = this.lines.join("");
    this.lines = [];
    this.bytes = 0;
    try {
      fs.appendFileSync(this.file, data, { mode: 0o600 });
      this.failing = false;
    } catch (err) {
      // A line file is a convenience copy (the database is the record);
      // drop the batch rather than grow without bound.
      if (!this.failing) log.error("jsonl sink: write failed; events dropped", { file: this.file, error: err });
      this.failing = true;
    }
  }

  close(): void {
    this.flush();
    this.closed = true;
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, this.flushMs);
    this.timer.unref?.();
  }
}
