// A process that records events through QueuedActionsSink and stops on
// SIGTERM the way the gateway does (close, then exit), for
// sqlite-queue.test.ts. Prints "ready" once its events are accepted.
//
//   bun test/unit/events/sqlite-queue-child.ts STATE_DIR COUNT
import * as path from "node:path";
import { QueuedActionsSink } from "../../../app/events/sinks/sqlite-queue.ts";
import { openStateDb, STATE_DB_FILE } from "../../../app/store/db.ts";
import { sampleEvent } from "./fixtures.ts";

const [dir, count] = process.argv.slice(2);
if (!dir || !count) process.exit(2);
const db = openStateDb(dir);
// Handed over only at close: the events wait on the main thread until the signal.
const sink = new QueuedActionsSink({ file: path.join(dir, STATE_DB_FILE), retentionDays: 30, maxBatch: 1_000_000, flushMs: 3_600_000 });
for (let i = 0; i < Number(count); i++) sink.write(sampleEvent({ flowId: `e${i}` }));
process.on("SIGTERM", () => {
  void sink.close().then(() => {
    db.close();
    process.exit(0);
  });
});
process.stdout.write("ready\n");
// Nothing else keeps this process alive: the sink's worker and timer are unref'd.
setInterval(() => {}, 1000);
