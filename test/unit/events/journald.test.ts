// The journald native protocol against a real AF_UNIX datagram socket: a
// python3 receiver binds it (as journald would) and hands back each
// datagram's bytes, which are checked exactly and parsed as journald does.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { EventBus } from "../../../app/events/bus.ts";
import { Redactor } from "../../../app/events/redact.ts";
import { JournaldSink, humanEventSink, journalFields } from "../../../app/events/sinks/journald.ts";
import { StderrSink, formatEventLine } from "../../../app/events/sinks/stderr.ts";
import { JournalWriter, MAX_FIELD_BYTES, encodeJournalEntry, journalLogWriter, stderrIsJournal } from "../../../app/journal.ts";
import { setLogLevel, setLogWriter } from "../../../app/log.ts";
import { sampleEvent, tempDir } from "./fixtures.ts";

const RECEIVER = `
import base64, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("ready", flush=True)
while True:
    data = s.recv(1 << 20)
    print(base64.b64encode(data).decode(), flush=True)
`;

/** A bound datagram socket in a python3 process; `next()` is the next datagram received. */
class Receiver {
  private lines: string[] = [];
  private waiters: Array<(l: string) => void> = [];
  private constructor(
    readonly path: string,
    private readonly proc: ReturnType<typeof Bun.spawn<"ignore", "pipe", "inherit">>,
  ) {}

  static async start(socketPath: string): Promise<Receiver> {
    const proc = Bun.spawn(["python3", "-c", RECEIVER, socketPath], { stdin: "ignore", stdout: "pipe", stderr: "inherit" });
    const r = new Receiver(socketPath, proc);
    void r.pump();
    expect(await r.line()).toBe("ready");
    return r;
  }

  private async pump(): Promise<void> {
    let buf = "";
    const reader = this.proc.stdout.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buf += new TextDecoder().decode(value);
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        const l = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const w = this.waiters.shift();
        if (w) w(l);
        else this.lines.push(l);
      }
    }
  }

  private line(): Promise<string> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  async next(): Promise<Uint8Array> {
    return new Uint8Array(Buffer.from(await this.line(), "base64"));
  }

  stop(): void {
    this.proc.kill();
  }
}

/** journald's reading of a native datagram (systemd's server_process_native_message), for the checks. */
function parseNative(b: Uint8Array): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const dec = new TextDecoder();
  let at = 0;
  while (at < b.length) {
    const nl = b.indexOf(0x0a, at);
    if (nl < 0) throw new Error("entry does not end with a newline");
    const line = dec.decode(b.subarray(at, nl));
    const eq = line.indexOf("=");
    if (eq >= 0) {
      out.push([line.slice(0, eq), line.slice(eq + 1)]);
      at = nl + 1;
      continue;
    }
    const len = Number(new DataView(b.buffer, b.byteOffset + nl + 1, 8).getBigUint64(0, true));
    const start = nl + 9;
    out.push([line, dec.decode(b.subarray(start, start + len))]);
    if (b[start + len] !== 0x0a) throw new Error("binary field not followed by a newline");
    at = start + len + 1;
  }
  return out;
}

let t: ReturnType<typeof tempDir>;
let rx: Receiver;
beforeEach(async () => {
  t = tempDir("clawpatrol-journal-");
  rx = await Receiver.start(path.join(t.dir, "journal.sock"));
});
afterEach(() => {
  rx.stop();
  setLogWriter(undefined);
  t.cleanup();
});

describe("native protocol", () => {
  test("plain fields are KEY=value lines, exactly", async () => {
    const w = new JournalWriter(rx.path);
    expect(w.send([["MESSAGE", "hello journal"], ["PRIORITY", "6"], ["CLAWPATROL_RULE", "no-deletes"]])).toEqual({ ok: true });
    expect(new TextDecoder().decode(await rx.next())).toBe("MESSAGE=hello journal\nPRIORITY=6\nCLAWPATROL_RULE=no-deletes\n");
    w.close();
  });

  test("a value with a newline goes in the length-prefixed binary form", async () => {
    const w = new JournalWriter(rx.path);
    w.send([["MESSAGE", "config rejected:\n  a.hcl:3: bad"], ["PRIORITY", "3"]]);
    const got = await rx.next();
    const value = new TextEncoder().encode("config rejected:\n  a.hcl:3: bad");
    const len = new Uint8Array(8);
    new DataView(len.buffer).setBigUint64(0, BigInt(value.length), true);
    const want = Buffer.concat([Buffer.from("MESSAGE\n"), len, value, Buffer.from("\nPRIORITY=3\n")]);
    expect(Buffer.from(got).equals(want)).toBe(true);
    expect(parseNative(got)).toEqual([
      ["MESSAGE", "config rejected:\n  a.hcl:3: bad"],
      ["PRIORITY", "3"],
    ]);
    w.close();
  });

  test("an over-long value is cut at a UTF-8 boundary; a bad field name is refused", () => {
    const long = "é".repeat(MAX_FIELD_BYTES);
    const [[, v]] = parseNative(encodeJournalEntry([["CLAWPATROL_PATH", long]])) as [[string, string]];
    expect(new TextEncoder().encode(v).length).toBeLessThanOrEqual(MAX_FIELD_BYTES);
    expect(v.endsWith("é…")).toBe(true);
    expect(() => encodeJournalEntry([["lower", "x"]])).toThrow(/invalid journal field name/);
    expect(() => encodeJournalEntry([["_TRUSTED", "x"]])).toThrow(/invalid journal field name/);
  });

  test("a send to a missing socket fails with the reason, and the log writer falls back to stderr once-noted", () => {
    const w = new JournalWriter(path.join(t.dir, "absent.sock"));
    const r = w.send([["MESSAGE", "x"]]);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(/No such file or directory/);
    const lines: string[] = [];
    const write = journalLogWriter(w, "clawpatrol-gateway", (l) => lines.push(l));
    write("INFO one", "info");
    write("INFO two", "info");
    expect(lines.filter((l) => l.startsWith("WARN journald native protocol failed"))).toHaveLength(1);
    expect(lines.slice(-2)).toEqual(["INFO one", "INFO two"]);
    w.close();
  });

  test("log lines carry PRIORITY from the level and the identifier", async () => {
    const w = new JournalWriter(rx.path);
    const write = journalLogWriter(w, "clawpatrol-gateway", () => {
      throw new Error("no fallback expected");
    });
    write("WARN state_dir changes take effect on restart", "warn");
    expect(parseNative(await rx.next())).toEqual([
      ["MESSAGE", "WARN state_dir changes take effect on restart"],
      ["PRIORITY", "4"],
      ["SYSLOG_IDENTIFIER", "clawpatrol-gateway"],
    ]);
    write("ERROR flow failed", "error");
    expect(parseNative(await rx.next())).toContainEqual(["PRIORITY", "3"]);
    w.close();
  });
});

describe("JournaldSink", () => {
  test("an event becomes MESSAGE (the stderr line) plus CLAWPATROL_* fields", async () => {
    const sink = new JournaldSink(new JournalWriter(rx.path));
    const e = sampleEvent({ verdict: "deny", status: 403, rule: "no-deletes", method: "DELETE", reason: "deleting needs a human", approvers: "dashboard", durationMs: 3.4 });
    sink.write(e);
    const fields = new Map(parseNative(await rx.next()));
    expect(fields.get("MESSAGE")).toBe(formatEventLine(e));
    expect(Object.fromEntries(fields)).toMatchObject({
      PRIORITY: "5",
      SYSLOG_IDENTIFIER: "clawpatrol-gateway",
      CLAWPATROL_EVENT: "http",
      CLAWPATROL_VERDICT: "deny",
      CLAWPATROL_DEVICE: "laptop",
      CLAWPATROL_PROFILE: "dev",
      CLAWPATROL_RULE: "no-deletes",
      CLAWPATROL_ENDPOINT: "https.github",
      CLAWPATROL_HOST: "api.github.com",
      CLAWPATROL_PORT: "443",
      CLAWPATROL_METHOD: "DELETE",
      CLAWPATROL_PATH: "/repos/x",
      CLAWPATROL_STATUS: "403",
      CLAWPATROL_CREDENTIAL: "github_token.gh",
      CLAWPATROL_APPROVER: "dashboard",
      CLAWPATROL_REASON: "deleting needs a human",
      CLAWPATROL_LATENCY_MS: "3",
    });
    sink.close();
  });

  test("a connection event leaves the HTTP fields out; allow is PRIORITY 6", () => {
    const e = sampleEvent({ kind: "connection", verdict: "relay", method: undefined, path: undefined, status: undefined, rule: undefined, endpoint: undefined, credential: undefined });
    const keys = journalFields(e).map(([k]) => k);
    expect(keys).not.toContain("CLAWPATROL_METHOD");
    expect(keys).not.toContain("CLAWPATROL_STATUS");
    expect(keys).not.toContain("CLAWPATROL_RULE");
    expect(journalFields(e)).toContainEqual(["PRIORITY", "6"]);
    expect(journalFields(e)).toContainEqual(["CLAWPATROL_EVENT", "connection"]);
  });

  test("an agent-chosen path with a newline stays one field (binary form)", async () => {
    const sink = new JournaldSink(new JournalWriter(rx.path));
    sink.write(sampleEvent({ path: "/x\nCLAWPATROL_VERDICT=allow" }));
    const got = parseNative(await rx.next());
    expect(got.filter(([k]) => k === "CLAWPATROL_VERDICT")).toEqual([["CLAWPATROL_VERDICT", "allow"]]);
    expect(got).toContainEqual(["CLAWPATROL_PATH", "/x\nCLAWPATROL_VERDICT=allow"]);
    sink.close();
  });

  test("a secret in the request (path, reason, detail, credential ref) reaches no field: the bus redacts first", async () => {
    const secret = "ghp_journal_secret_value_0123456789";
    const basic = Buffer.from(`user:${secret}`).toString("base64");
    const bus = new EventBus(new Redactor(() => [secret]));
    bus.addSink(new JournaldSink(new JournalWriter(rx.path)));
    bus.publish(
      sampleEvent({
        path: `/repos/x?access_token=${secret}`,
        reason: `upstream echoed Authorization: Bearer ${secret}`,
        detail: `Authorization: Basic ${basic}`,
        credential: `github_token.${secret}`,
        device: `laptop-${secret}`,
      }),
    );
    const raw = Buffer.from(await rx.next());
    expect(raw.includes(secret)).toBe(false);
    expect(raw.includes(basic)).toBe(false);
    const fields = new Map(parseNative(raw));
    expect(fields.get("CLAWPATROL_PATH")).toBe("/repos/x?access_token=[REDACTED]");
    expect(fields.get("CLAWPATROL_CREDENTIAL")).toBe("github_token.[REDACTED]");
    await bus.close();
  });

  test("when the socket goes away, events fall back to their stderr line, noted once", () => {
    const lines: string[] = [];
    const logs: string[] = [];
    setLogWriter((l) => logs.push(l));
    setLogLevel("info"); // tests in the same process may have left another level
    const sink = new JournaldSink(new JournalWriter(path.join(t.dir, "gone.sock")), {
      fallback: (e) => new StderrSink((s) => lines.push(s)).write(e),
    });
    sink.write(sampleEvent({ flowId: "a" }));
    sink.write(sampleEvent({ flowId: "b" }));
    expect(lines).toEqual([formatEventLine(sampleEvent()) + "\n", formatEventLine(sampleEvent()) + "\n"]);
    expect(logs.filter((l) => l.includes("journald native protocol failed"))).toHaveLength(1);
  });
});

describe("choosing the journal", () => {
  // A child whose stderr is a file: JOURNAL_STREAM naming that file's
  // dev:inode says "journal", any other value (an inherited variable) does not.
  async function childSees(journalStream: (st: fs.BigIntStats) => string): Promise<string> {
    const errFile = path.join(t.dir, "stderr");
    const fd = fs.openSync(errFile, "w");
    const st = fs.fstatSync(fd, { bigint: true });
    const script = `const m = await import(${JSON.stringify(path.resolve("app/journal.ts"))}); console.log(String(m.stderrIsJournal()));`;
    const p = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: fd, env: { ...process.env, JOURNAL_STREAM: journalStream(st) } });
    const out = (await new Response(p.stdout).text()).trim();
    await p.exited;
    fs.closeSync(fd);
    return out;
  }

  test("JOURNAL_STREAM must name this process's stderr", async () => {
    expect(await childSees((st) => `${st.dev}:${st.ino}`)).toBe("true");
    expect(await childSees((st) => `${st.dev}:${st.ino + 1n}`)).toBe("false");
    expect(await childSees(() => "garbage")).toBe("false");
  });

  test("without JOURNAL_STREAM the human sink is the stderr one", () => {
    expect(stderrIsJournal({})).toBe(false);
    expect(humanEventSink({})).toBeInstanceOf(StderrSink);
  });
});
