import { describe, expect, test } from "bun:test";
import { REDACTED, Redactor, buildPatterns } from "../../../app/events/redact.ts";
import type { GatewayEvent } from "../../../app/events/types.ts";
import { formatLogLine } from "../../../app/log.ts";
import { sampleEvent } from "./fixtures.ts";

const GH = "ghp_16C7e42F292c6912E7710c838347Ae178B4a";
const OPENAI = "sk-proj-abcdefghijklmnop";

function stringFields(e: GatewayEvent): string[] {
  return Object.values(e).filter((v): v is string => typeof v === "string");
}

describe("Redactor.redactText", () => {
  test("replaces every occurrence of every secret", () => {
    const r = new Redactor(() => [GH, OPENAI]);
    expect(r.redactText(`a ${GH} b ${OPENAI} c ${GH}`)).toBe(`a ${REDACTED} b ${REDACTED} c ${REDACTED}`);
  });

  test("returns the very same string when nothing matches or there are no secrets", () => {
    const s = "GET /repos/x nothing secret here";
    expect(new Redactor(() => [GH]).redactText(s)).toBe(s);
    expect(new Redactor(() => []).redactText(s)).toBe(s);
  });

  test("ignores values shorter than 4 characters", () => {
    const r = new Redactor(() => ["abc", "", "x"]);
    expect(r.redactText("abc x abcabc")).toBe("abc x abcabc");
  });

  test("overlapping secrets leave no fragment of either", () => {
    const r = new Redactor(() => ["abcdef12", "ef12ghij"]);
    expect(r.redactText("<abcdef12ghij>")).toBe(`<${REDACTED}>`);
    // one contains the other
    const r2 = new Redactor(() => ["secret-value", "secret"]);
    expect(r2.redactText("x secret-value y secret z")).toBe(`x ${REDACTED} y ${REDACTED} z`);
    // self-overlap
    const r3 = new Redactor(() => ["aaaa"]);
    expect(r3.redactText("baaaaab")).toBe(`b${REDACTED}b`);
  });

  test("catches a user:pass secret in its Basic (base64) form", () => {
    const basic = "deploy:hunter2-very-secret";
    const r = new Redactor(() => [basic]);
    const header = `Authorization: Basic ${Buffer.from(basic).toString("base64")}`;
    const out = r.redactText(header);
    expect(out).toContain(REDACTED);
    expect(out).not.toContain(Buffer.from(basic).toString("base64").slice(0, -2));
  });

  test("catches a password-only secret inside base64(user:pass) for any user alignment", () => {
    const password = "hunter2-very-secret";
    const r = new Redactor(() => [password]);
    for (const user of ["a", "ab", "abc", "deploy", "someone-else"]) {
      const b64 = Buffer.from(`${user}:${password}`).toString("base64");
      const out = r.redactText(`Basic ${b64}`);
      expect(out).toContain(REDACTED);
      // Whatever survives decodes to at most a short, harmless edge of the password.
      const left = out.replace("Basic ", "").split(REDACTED).join("").length;
      expect(left).toBeLessThan(b64.length - 16);
    }
  });

  test("catches the JSON-escaped form of a secret with quotes or backslashes", () => {
    const tricky = 'pa"ss\\word-1234';
    const r = new Redactor(() => [tricky]);
    const line = formatLogLine("info", "upstream said", { body: `token=${tricky}` });
    expect(line).toContain(JSON.stringify(tricky).slice(1, -1));
    expect(r.redactText(line)).not.toContain("ss\\\\word");
    expect(r.redactText(line)).toContain(REDACTED);
  });

  test("a secret in a whole log line is redacted", () => {
    const r = new Redactor(() => [GH]);
    const line = formatLogLine("error", `upstream echoed ${GH}`, { header: `Bearer ${GH}`, n: 1 });
    const out = r.redactText(line);
    expect(out).not.toContain(GH);
    expect(out).toBe(`ERROR upstream echoed ${REDACTED} header="Bearer ${REDACTED}" n=1`);
  });
});

describe("Redactor.redactEvent", () => {
  test("redacts the secret in every string field", () => {
    const r = new Redactor(() => [GH]);
    const e = sampleEvent();
    for (const [k, v] of Object.entries(e)) {
      if (typeof v !== "string") continue;
      const dirty = { ...e, [k]: `${v}-${GH}` } as GatewayEvent;
      const clean = r.redactEvent(dirty);
      expect(stringFields(clean).join("\n")).not.toContain(GH);
      expect((clean as unknown as Record<string, string>)[k]).toBe(`${v}-${REDACTED}`);
    }
    const all = r.redactEvent({ ...e, detail: `d ${GH}`, path: `/x?t=${GH}`, reason: GH, host: GH });
    expect(JSON.stringify(all)).not.toContain(GH);
  });

  test("does not mutate the input; returns it unchanged when clean", () => {
    const r = new Redactor(() => [GH]);
    const e = sampleEvent({ path: `/q?k=${GH}` });
    const out = r.redactEvent(e);
    expect(e.path).toBe(`/q?k=${GH}`);
    expect(out.path).toBe(`/q?k=${REDACTED}`);
    const clean = sampleEvent();
    expect(r.redactEvent(clean)).toBe(clean);
  });

  test("multiple secrets across fields", () => {
    const r = new Redactor(() => [GH, OPENAI]);
    const out = r.redactEvent(sampleEvent({ path: `/${GH}`, detail: `${OPENAI} and ${GH}` }));
    expect(out.path).toBe(`/${REDACTED}`);
    expect(out.detail).toBe(`${REDACTED} and ${REDACTED}`);
  });
});

describe("Redactor.redactEvent: the structured action", () => {
  test("strings anywhere in the action are redacted (values, list items, nested objects, keys); nothing matched, the same object", () => {
    const r = new Redactor(() => [GH]);
    const action = { statement: `select '${GH}'`, tables: ["public.t", `x${GH}`], nested: { [GH]: 1, ok: true }, rows: 3 };
    const e = r.redactEvent({ ...sampleEvent(), action });
    expect(JSON.stringify(e.action)).not.toContain(GH);
    expect(e.action).toEqual({ statement: `select '${REDACTED}'`, tables: ["public.t", `x${REDACTED}`], nested: { [REDACTED]: 1, ok: true }, rows: 3 });
    expect(action.statement).toContain(GH);
    const clean = { ...sampleEvent(), action: { verb: "select", tables: ["a"] } };
    expect(r.redactEvent(clean).action).toBe(clean.action);
  });

  test("a secret in one place only is found wherever it is (a nested key, a list item, a top-level field)", () => {
    const r = new Redactor(() => [GH]);
    const key = r.redactEvent({ ...sampleEvent(), action: { nested: { deeper: { [GH]: 1 } } } });
    expect(JSON.stringify(key)).not.toContain(GH);
    const item = r.redactEvent({ ...sampleEvent(), action: { lists: [[1, [`a${GH}b`]]] } });
    expect(JSON.stringify(item)).not.toContain(GH);
    const field = r.redactEvent({ ...sampleEvent(), summary: GH });
    expect(field.summary).toBe(REDACTED);
  });
});

describe("pattern refresh", () => {
  test("with a version: recomputed only when the version changes", () => {
    let values = ["first-secret"];
    let version = 1;
    let calls = 0;
    const r = new Redactor(
      () => {
        calls++;
        return values;
      },
      { version: () => version },
    );
    expect(r.redactText("first-secret")).toBe(REDACTED);
    r.redactText("x");
    r.redactText("y");
    expect(calls).toBe(1);
    values = ["second-secret"];
    expect(r.redactText("second-secret")).toBe("second-secret"); // version unchanged
    version = 2;
    expect(r.redactText("second-secret")).toBe(REDACTED);
    expect(r.redactText("first-secret")).toBe("first-secret");
    expect(calls).toBe(2);
  });

  test("without a version: at most once per refresh interval of the injected clock", () => {
    let now = 0;
    let values = ["first-secret"];
    let calls = 0;
    const r = new Redactor(
      () => {
        calls++;
        return values;
      },
      { now: () => now, refreshMs: 1000 },
    );
    r.redactText("a");
    values = ["second-secret"];
    now = 999;
    expect(r.redactText("second-secret")).toBe("second-secret");
    now = 1000;
    expect(r.redactText("second-secret")).toBe(REDACTED);
    expect(calls).toBe(2);
    values = ["third-secret"];
    r.refresh();
    expect(r.redactText("third-secret")).toBe(REDACTED);
  });

  test("buildPatterns dedupes and orders longest first", () => {
    const p = buildPatterns(["abcd", "abcd", "abcdefgh"]);
    expect(p.filter((x) => x === "abcd")).toHaveLength(1);
    for (let i = 1; i < p.length; i++) expect(p[i - 1]!.length).toBeGreaterThanOrEqual(p[i]!.length);
  });
});
