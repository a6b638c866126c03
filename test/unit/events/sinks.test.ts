import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import * as fs from "node:fs";
import * as path from "node:path";
import { JsonlSink } from "../../../app/events/sinks/jsonl.ts";
import { ActionsSink } from "../../../app/events/sinks/sqlite.ts";
import { StderrSink, bytes, duration, formatEventLine } from "../../../app/events/sinks/stderr.ts";
import { setLogWriter } from "../../../app/log.ts";
import type { GatewayEvent } from "../../../app/events/types.ts";
import { queryActions } from "../../../app/store/actions.ts";
import { openStateDb } from "../../../app/store/db.ts";
import { sampleEvent, tempDir } from "./fixtures.ts";

let t: ReturnType<typeof tempDir>;
let logs: string[];
beforeEach(() => {
  t = tempDir();
  logs = [];
  setLogWriter((line) => logs.push(line));
});
afterEach(() => {
  setLogWriter(undefined);
  t.cleanup();
});

const DAY = 86_400_000;

/** Poll rather than sleep a fixed time: the shared CI cores may be busy. */
async function waitFor(cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await Bun.sleep(5);
  }
}
const count = (db: Database) => (db.query("SELECT count(*) AS n FROM actions").get() as { n: number }).n;

describe("ActionsSink", () => {
  let db: Database;
  beforeEach(() => {
    db = openStateDb(t.dir);
  });
  afterEach(() => db.close());

  test("buffers until the flush interval, then writes the batch", async () => {
    const sink = new ActionsSink(db, { retentionDays: 30, flushMs: 20 });
    sink.write(sampleEvent({ flowId: "a" }));
    sink.write(sampleEvent({ flowId: "b" }));
    expect(count(db)).toBe(0);
    expect(sink.pending).toBe(2);
    await waitFor(() => count(db) === 2);
    expect(sink.pending).toBe(0);
    expect(queryActions(db, { limit: 10 }).map((r) => r.flowId)).toEqual(["b", "a"]);
    sink.close();
  });

  test("flushes at once when the batch is full, in one transaction", () => {
    const sink = new ActionsSink(db, { retentionDays: 30, maxBatch: 500, flushMs: 60_000 });
    for (let i = 0; i < 499; i++) sink.write(sampleEvent({ flowId: String(i) }));
    expect(count(db)).toBe(0);
    sink.write(sampleEvent({ flowId: "499" }));
    expect(count(db)).toBe(500);
    expect(sink.pending).toBe(0);

    // All or nothing: one bad row in the middle leaves no part of the batch behind.
    db.run("CREATE TRIGGER block BEFORE INSERT ON actions WHEN NEW.flow_id = 'b300' BEGIN SELECT RAISE(ABORT, 'x'); END");
    for (let i = 0; i < 500; i++) sink.write(sampleEvent({ flowId: `b${i}` }));
    expect(count(db)).toBe(500);
    expect(sink.pending).toBe(500);
    db.run("DROP TRIGGER block");
    sink.close();
    expect(count(db)).toBe(1000);
  });

  test("close flushes what is buffered and ignores later writes", () => {
    const sink = new ActionsSink(db, { retentionDays: 30, flushMs: 60_000 });
    sink.write(sampleEvent());
    sink.close();
    expect(count(db)).toBe(1);
    sink.write(sampleEvent());
    sink.flush();
    expect(count(db)).toBe(1);
  });

  test("a failed flush keeps the batch in order and retries", () => {
    const sink = new ActionsSink(db, { retentionDays: 30, flushMs: 60_000 });
    db.run("CREATE TRIGGER block BEFORE INSERT ON actions BEGIN SELECT RAISE(ABORT, 'blocked'); END");
    sink.write(sampleEvent({ flowId: "1" }));
    expect(sink.flush()).toBe(0);
    expect(sink.flush()).toBe(0);
    sink.write(sampleEvent({ flowId: "2" }));
    expect(sink.pending).toBe(2);
    expect(logs.filter((l) => l.includes("insert failed"))).toHaveLength(1);
    // A full batch does not retry inline while failing (the timer does).
    const small = new ActionsSink(db, { retentionDays: 30, flushMs: 60_000, maxBatch: 2 });
    let attempts = 0;
    const realTransaction = db.transaction.bind(db);
    db.transaction = ((fn: () => void) => {
      attempts++;
      return realTransaction(fn);
    }) as typeof db.transaction;
    small.write(sampleEvent({ flowId: "s1" }));
    small.write(sampleEvent({ flowId: "s2" })); // inline flush fails
    small.write(sampleEvent({ flowId: "s3" }));
    small.write(sampleEvent({ flowId: "s4" }));
    expect(small.pending).toBe(4);
    expect(attempts).toBe(1);
    db.transaction = realTransaction;
    db.run("DROP TRIGGER block");
    small.close();
    db.run("DELETE FROM actions");
    expect(sink.flush()).toBe(2);
    expect(queryActions(db, { limit: 10 }).map((r) => r.flowId)).toEqual(["2", "1"]);
    expect(logs.at(-1)).toContain("recovered");
    sink.close();
  });

  test("bounds the buffer while failing, dropping the oldest", () => {
    const sink = new ActionsSink(db, { retentionDays: 30, flushMs: 60_000, maxBuffered: 3, maxBatch: 100 });
    db.run("CREATE TRIGGER block BEFORE INSERT ON actions BEGIN SELECT RAISE(ABORT, 'blocked'); END");
    sink.write(sampleEvent({ flowId: "0" }));
    sink.flush(); // fails: now in retry mode
    for (let i = 1; i < 5; i++) sink.write(sampleEvent({ flowId: String(i) }));
    expect(sink.pending).toBe(3);
    db.run("DROP TRIGGER block");
    sink.flush();
    expect(queryActions(db, { limit: 10 }).map((r) => r.flowId)).toEqual(["4", "3", "2"]);
    sink.close();
  });

  test("prune deletes rows older than the retention by the injected clock", () => {
    let now = Date.UTC(2025, 2, 1);
    const sink = new ActionsSink(db, { retentionDays: 7, now: () => now, flushMs: 60_000 });
    for (const daysAgo of [10, 8, 7.5, 6, 1, 0]) {
      sink.write(sampleEvent({ flowId: `d${daysAgo}`, time: new Date(now - daysAgo * DAY).toISOString() }));
    }
    sink.flush();
    expect(sink.prune()).toBe(3);
    expect(queryActions(db, { limit: 10 }).map((r) => r.flowId)).toEqual(["d0", "d1", "d6"]);
    now += 2 * DAY;
    expect(sink.prune()).toBe(1);
    expect(sink.prune()).toBe(0);
    sink.close();
    db.run("CREATE TRIGGER block BEFORE DELETE ON actions BEGIN SELECT RAISE(ABORT, 'locked'); END");
    now += 30 * DAY;
    expect(sink.prune()).toBe(0);
    expect(logs.at(-1)).toContain("prune failed");
  });
});

describe("JsonlSink", () => {
  test("one JSON object per line, file 0600, flushed on close", () => {
    const file = path.join(t.dir, "log", "events.jsonl");
    const sink = new JsonlSink(file, { flushMs: 60_000 });
    const events = [sampleEvent({ flowId: "a" }), sampleEvent({ flowId: "b", path: "/with\nnewline" })];
    for (const e of events) sink.write(e);
    expect(fs.existsSync(file)).toBe(false);
    sink.close();
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const lines = fs.readFileSync(file, "utf8").split("\n");
    expect(lines.at(-1)).toBe("");
    expect(lines.slice(0, -1).map((l) => JSON.parse(l))).toEqual(events);
  });

  test("flushes periodically", async () => {
    const file = path.join(t.dir, "events.jsonl");
    const sink = new JsonlSink(file, { flushMs: 20 });
    sink.write(sampleEvent());
    expect(fs.existsSync(file)).toBe(false);
    await waitFor(() => fs.existsSync(file));
    expect(fs.readFileSync(file, "utf8").trim().split("\n")).toHaveLength(1);
    sink.close();
  });

  test("flushes when the buffer is large", () => {
    const file = path.join(t.dir, "events.jsonl");
    const sink = new JsonlSink(file, { flushMs: 60_000, maxBufferBytes: 1000 });
    for (let i = 0; i < 5; i++) sink.write(sampleEvent());
    expect(fs.existsSync(file)).toBe(true);
    sink.close();
    expect(fs.readFileSync(file, "utf8").trim().split("\n")).toHaveLength(5);
  });

  test("appends to an existing file and survives rotation and removal", () => {
    const file = path.join(t.dir, "events.jsonl");
    const sink = new JsonlSink(file, { flushMs: 60_000 });
    sink.write(sampleEvent({ flowId: "1" }));
    sink.flush();
    fs.renameSync(file, file + ".1"); // logrotate
    sink.write(sampleEvent({ flowId: "2" }));
    sink.flush();
    fs.rmSync(file);
    sink.write(sampleEvent({ flowId: "3" }));
    sink.flush();
    sink.write(sampleEvent({ flowId: "4" }));
    sink.close();
    const ids = (f: string) =>
      fs
        .readFileSync(f, "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l).flowId);
    expect(ids(file + ".1")).toEqual(["1"]);
    expect(ids(file)).toEqual(["3", "4"]);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  });

  test("a write error is logged once and does not throw", () => {
    const dir = path.join(t.dir, "events.jsonl");
    fs.mkdirSync(dir); // a directory where the file should be
    const sink = new JsonlSink(dir, { flushMs: 60_000 });
    sink.write(sampleEvent());
    expect(() => sink.flush()).not.toThrow();
    sink.write(sampleEvent());
    sink.close();
    expect(logs.filter((l) => l.includes("jsonl sink: write failed"))).toHaveLength(1);
  });
});

describe("StderrSink", () => {
  const utc = { utc: true };

  test("allow line", () => {
    expect(formatEventLine(sampleEvent(), utc)).toBe(
      "10:31:02 allow laptop GET api.github.com/repos/x 200 12ms rule=read-only cred=github_token.gh",
    );
  });

  test("an LLM call's line names the model, tokens in/out and the cost (a ? when no price matched)", () => {
    const usage = { provider: "anthropic" as const, model: "claude-sonnet-4-5", inputTokens: 100, cacheReadTokens: 20, cacheWriteTokens: 0, outputTokens: 50, complete: true, usd: 0.0012 };
    expect(formatEventLine(sampleEvent({ usage }), utc)).toEndWith("cred=github_token.gh llm=claude-sonnet-4-5 tokens=120/50 $0.0012");
    expect(formatEventLine(sampleEvent({ usage: { ...usage, unpriced: true } }), utc)).toEndWith(" $0.0012?");
  });

  test("deny line carries the reason quoted", () => {
    const e = sampleEvent({
      method: "DELETE",
      status: 403,
      durationMs: 3,
      rule: "no-deletes",
      verdict: "deny",
      reason: "no deletes on main",
      credential: undefined,
    });
    expect(formatEventLine(e, utc)).toBe(
      '10:31:02 deny laptop DELETE api.github.com/repos/x 403 3ms rule=no-deletes "no deletes on main"',
    );
  });

  test("relay line shows bytes each way and duration", () => {
    const { endpoint, method, path: _p, status, rule, credential, ...base } = sampleEvent();
    const e = { ...base, kind: "connection" as const, host: "10.0.0.5", port: 22, bytesUp: 1200, bytesDown: 3400, durationMs: 2100, verdict: "relay", reason: "no endpoint" };
    expect(formatEventLine(e, utc)).toBe("10:31:02 relay laptop 10.0.0.5:22 ↑1.2kB ↓3.4kB 2.1s");
    expect(formatEventLine({ ...e, host: "2001:db8::1", port: 443 }, utc)).toContain(" [2001:db8::1]:443 ");
  });

  test("non-443 ports are shown; control characters from the agent are escaped", () => {
    const line = formatEventLine(sampleEvent({ port: 8443, path: "/a b\x1b[31m\n\u202eevil" }), utc);
    expect(line).toContain("api.github.com:8443/a%20b\\u001b[31m\\u000a\\u202eevil 200");
    expect(line).not.toMatch(/[\x00-\x1f\u202e]/);
  });

  test("an sql statement: endpoint, database, verb, tables, rows and sqlstate as tokens, the statement quoted at the end", () => {
    const sql = (action: Record<string, unknown>, over: Partial<GatewayEvent> = {}) =>
      formatEventLine(
        sampleEvent({ kind: "sql", family: "sql", endpoint: "postgres.db", host: "db.internal", port: 5432, method: "DELETE", path: "x", status: undefined, credential: "postgres_password.app", summary: "delete public.users", action, ...over }),
        utc,
      );
    const base = { database: "app", user: "agent", verb: "delete", tables: ["public.users", "orders"], functions: [], statement: "DELETE FROM public.users\n  WHERE id = 7" };
    expect(sql({ ...base, rows: 1 }, { verdict: "allow", rule: "writes-ok" })).toBe(
      '10:31:02 allow laptop postgres.db db=app delete public.users,orders rows=1 12ms rule=writes-ok cred=postgres_password.app sql="DELETE FROM public.users WHERE id = 7"',
    );
    expect(sql({ ...base, sqlstate: "42501" }, { verdict: "deny", rule: "no-writes", reason: "read-only" })).toBe(
      '10:31:02 deny laptop postgres.db db=app delete public.users,orders sqlstate=42501 12ms rule=no-writes cred=postgres_password.app "read-only" sql="DELETE FROM public.users WHERE id = 7"',
    );
    // Unparsed: no verb or tables known; agent text cannot paint the terminal.
    const line = sql({ database: "a b", verb: null, tables: null, statement: "selec \x1b[31m\u202eevil" }, { verdict: "deny", rule: "r", reason: "x" });
    expect(line).toContain("postgres.db db=a%20b unparsed 12ms");
    expect(line).toContain('sql="selec \\u001b[31m\\u202eevil"');
    expect(line).not.toMatch(/[\x00-\x1f\u202e]/);
  });

  test("writes one line per event to the injected writer, local time by default", () => {
    const out: string[] = [];
    const sink = new StderrSink((s) => out.push(s));
    const e = sampleEvent();
    sink.write(e);
    const d = new Date(e.time);
    const hh = [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
    expect(out).toEqual([`${hh} allow laptop GET api.github.com/repos/x 200 12ms rule=read-only cred=github_token.gh\n`]);
  });

  test("units", () => {
    expect(bytes(0)).toBe("0B");
    expect(bytes(999)).toBe("999B");
    expect(bytes(1234)).toBe("1.2kB");
    expect(bytes(3_400_000)).toBe("3.4MB");
    expect(bytes(5e12)).toBe("5000.0GB");
    expect(duration(0.4)).toBe("0ms");
    expect(duration(999)).toBe("999ms");
    expect(duration(2100)).toBe("2.1s");
    expect(duration(125_000)).toBe("2m05s");
  });
});
