// End to end over the event path: a secret stored in the SecretStore and
// set in every string field of an event reaches no sink, no file and no log
// line, including one set by "another process" after the bus started.
import { afterEach, beforeEach, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { EventBus } from "../../../app/events/bus.ts";
import { Redactor } from "../../../app/events/redact.ts";
import { JsonlSink } from "../../../app/events/sinks/jsonl.ts";
import { ActionsSink } from "../../../app/events/sinks/sqlite.ts";
import { StderrSink } from "../../../app/events/sinks/stderr.ts";
import type { GatewayEvent } from "../../../app/events/types.ts";
import { log, setLogRedactor, setLogWriter } from "../../../app/log.ts";
import { openStateDb } from "../../../app/store/db.ts";
import { SecretStore } from "../../../app/store/secrets.ts";
import { sampleEvent, tempDir } from "./fixtures.ts";

let t: ReturnType<typeof tempDir>;
beforeEach(() => {
  t = tempDir();
});
afterEach(() => {
  setLogWriter(undefined);
  setLogRedactor((s) => s);
  t.cleanup();
});

function poisoned(secret: string): GatewayEvent {
  const e = sampleEvent({ detail: "d" });
  const out: Record<string, unknown> = { ...e };
  for (const [k, v] of Object.entries(e)) if (typeof v === "string") out[k] = `${v}:${secret}`;
  return out as unknown as GatewayEvent;
}

test("no stored secret reaches any sink or the log", async () => {
  const db = openStateDb(t.dir);
  const secrets = new SecretStore(db, t.dir);
  secrets.set("gh", "ghp_first_secret_value_123456");
  const redactor = new Redactor(() => secrets.values(), { version: () => secrets.version() });
  const logLines: string[] = [];
  setLogWriter((l) => logLines.push(l));
  setLogRedactor((s) => redactor.redactText(s));

  const bus = new EventBus(redactor);
  const stderr: string[] = [];
  const jsonl = path.join(t.dir, "events.jsonl");
  bus.addSink(new ActionsSink(db, { retentionDays: 30 }));
  bus.addSink(new JsonlSink(jsonl));
  bus.addSink(new StderrSink((s) => stderr.push(s)));
  const live: string[] = [];
  bus.subscribe((e) => live.push(JSON.stringify(e)));

  bus.publish(poisoned("ghp_first_secret_value_123456"));
  log.error("upstream echoed", { header: "Bearer ghp_first_secret_value_123456" });

  // The CLI sets a second secret from its own connection.
  const cli = openStateDb(t.dir);
  new SecretStore(cli, t.dir).set("openai", "sk-second-secret-value-987");
  cli.close();
  bus.publish(poisoned("sk-second-secret-value-987"));
  log.warn("sk-second-secret-value-987");

  await bus.close();
  db.run("PRAGMA wal_checkpoint(TRUNCATE)");
  db.close();

  const everything = [
    ...fs.readdirSync(t.dir).map((f) => fs.readFileSync(path.join(t.dir, f)).toString("latin1")),
    stderr.join(""),
    live.join(""),
    logLines.join("\n"),
  ].join("\n");
  for (const secret of ["ghp_first_secret_value_123456", "sk-second-secret-value-987"]) {
    expect(everything).not.toContain(secret);
  }
  expect(fs.readFileSync(jsonl, "utf8").trim().split("\n")).toHaveLength(2);
  expect(stderr).toHaveLength(2);
  expect(logLines).toHaveLength(2);
  expect(everything).toContain("[REDACTED]");
});
