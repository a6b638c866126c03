// The thread that writes events into the `actions` table, so the gateway's
// event loop never waits on SQLite (8–13 µs an event, a 500-row flush a
// few ms in one block, longer while the disk is busy or the database is
// locked). It owns its own connection to the state database and an
// ActionsSink (batching, retry on a failed flush); the main thread's
// QueuedActionsSink (sqlite-queue.ts) hands it JSON batches.
//
// Protocol (postMessage both ways):
//   in:  open {file, retentionDays} | batch {json: GatewayEvent[] as JSON} | prune | close
//   out: written {rows} after each committed flush | log {level, msg, fields} | closed {lost}
import { Database } from "bun:sqlite";
import type { LogFields, LogLevel } from "../../log.ts";
import type { GatewayEvent } from "../types.ts";
import { ActionsSink } from "./sqlite.ts";

export type WorkerIn =
  | { type: "open"; file: string; retentionDays: number }
  | { type: "batch"; json: string }
  | { type: "prune" }
  | { type: "close" };

export type WorkerOut =
  | { type: "written"; rows: number }
  | { type: "log"; level: LogLevel; msg: string; fields: Record<string, string | number> }
  | { type: "closed"; lost: number };

declare const self: Worker;

const send = (m: WorkerOut): void => self.postMessage(m);

/** Log fields as plain values (an Error does not survive postMessage as itself). */
function plain(fields: LogFields): Record<string, string | number> {
  const out: Record<string, string | number> = {};
  for (const [k, v] of Object.entries(fields)) out[k] = typeof v === "number" ? v : v instanceof Error ? v.message : String(v);
  return out;
}

let db: Database | undefined;
let sink: ActionsSink | undefined;

self.onmessage = (ev: MessageEvent<WorkerIn>) => {
  const m = ev.data;
  switch (m.type) {
    case "open":
      // The main thread opened and migrated the database already.
      db = new Database(m.file, { strict: true });
      db.run("PRAGMA busy_timeout = 5000");
      db.run("PRAGMA synchronous = NORMAL");
      sink = new ActionsSink(db, {
        retentionDays: m.retentionDays,
        // The main thread bounds what is outstanding; nothing is dropped here.
        maxBuffered: Number.MAX_SAFE_INTEGER,
        onFlushed: (rows) => send({ type: "written", rows }),
        log: (level, msg, fields) => send({ type: "log", level, msg, fields: plain(fields) }),
      });
      break;
    case "batch": {
      if (!sink) return;
      // The sink commits 500 events or 200 ms' worth in one transaction (fewer
      // WAL page writes than a commit per handed-over batch) and retries a failed one.
      for (const e of JSON.parse(m.json) as GatewayEvent[]) sink.write(e);
      break;
    }
    case "prune":
      sink?.prune();
      break;
    case "close": {
      let lost = 0;
      if (sink) {
        sink.close();
        lost = sink.pending;
      }
      db?.close();
      send({ type: "closed", lost });
      break;
    }
  }
};
