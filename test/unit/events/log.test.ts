import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { formatLogLine, log, setLogLevel, setLogRedactor, setLogWriter } from "../../../app/log.ts";
import { Redactor } from "../../../app/events/redact.ts";

let lines: [string, string][];
beforeEach(() => {
  lines = [];
  setLogWriter((line, level) => lines.push([level, line]));
  setLogLevel("info");
});
afterEach(() => {
  setLogWriter(undefined);
  setLogRedactor((s) => s);
  setLogLevel("info");
});

describe("log", () => {
  test("one line: LEVEL msg key=value", () => {
    log.info("listening", { addr: "127.0.0.1:3128", tls: true, n: 3 });
    expect(lines).toEqual([["info", "INFO listening addr=127.0.0.1:3128 tls=true n=3"]]);
  });

  test("quotes values that would not split back, renders errors and objects", () => {
    expect(formatLogLine("warn", "x", { a: "two words", b: 'q"', c: "k=v", d: new Error("boom"), e: { z: 1 }, f: null, g: undefined })).toBe(
      'WARN x a="two words" b="q\\"" c="k=v" d=boom e={"z":1} f=null',
    );
  });

  test("newlines never split a record", () => {
    log.error("line1\nline2", { body: "a\nb" });
    expect(lines[0]![1]).toBe('ERROR line1\\nline2 body="a\\nb"');
  });

  test("level threshold", () => {
    log.debug("hidden");
    log.warn("shown");
    setLogLevel("debug");
    log.debug("now shown");
    setLogLevel("error");
    log.warn("hidden again");
    expect(lines.map((l) => l[1])).toEqual(["WARN shown", "DEBUG now shown"]);
  });

  test("the redactor applies to the whole line", () => {
    const secret = "xoxb-1234-abcdefgh";
    const r = new Redactor(() => [secret]);
    setLogRedactor((s) => r.redactText(s));
    log.warn(`upstream echoed ${secret}`, { header: `Bearer ${secret}` });
    expect(lines[0]![1]).toBe('WARN upstream echoed [REDACTED] header="Bearer [REDACTED]"');
  });

  test("a failing redactor withholds the line rather than leak it", () => {
    setLogRedactor(() => {
      throw new Error("no");
    });
    log.info("secret-ish");
    expect(lines[0]![1]).toBe("INFO log line withheld: redactor failed");
  });

  test("a throwing writer does not throw into the caller", () => {
    setLogWriter(() => {
      throw new Error("EPIPE");
    });
    expect(() => log.error("x")).not.toThrow();
  });

  test("CLAWPATROL_LOG_LEVEL sets the default", () => {
    const res = Bun.spawnSync(
      [process.execPath, "-e", `import { log } from ${JSON.stringify(import.meta.dir + "/../../../app/log.ts")}; log.debug("dbg"); log.info("inf");`],
      { env: { ...process.env, CLAWPATROL_LOG_LEVEL: "debug" } },
    );
    expect(res.stderr.toString()).toBe("DEBUG dbg\nINFO inf\n");
    const res2 = Bun.spawnSync(
      [process.execPath, "-e", `import { log } from ${JSON.stringify(import.meta.dir + "/../../../app/log.ts")}; log.info("inf"); log.warn("w");`],
      { env: { ...process.env, CLAWPATROL_LOG_LEVEL: "warn" } },
    );
    expect(res2.stderr.toString()).toBe("WARN w\n");
  });
});
