import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Credential } from "../../../app/policy/types.ts";
import { resolveSecret, secretEnvName } from "../../../app/credentials/resolve.ts";

function cred(name: string, secretFile?: string): Credential {
  return { type: "bearer_token", name, ref: `bearer_token.${name}`, settings: {}, secretFile, source: { file: "t.hcl", line: 1 } };
}
const store = (m: Record<string, string>) => ({ get: (n: string) => m[n] });

describe("secretEnvName", () => {
  test.each([
    ["gh-prod.token", "CLAWPATROL_SECRET_GH_PROD_TOKEN"],
    ["openai", "CLAWPATROL_SECRET_OPENAI"],
    ["Mixed_Case9", "CLAWPATROL_SECRET_MIXED_CASE9"],
    ["a b/c", "CLAWPATROL_SECRET_A_B_C"],
    ["straße", "CLAWPATROL_SECRET_STRA_E"],
    ["é😀x", "CLAWPATROL_SECRET___X"],
  ])("%s -> %s", (name, env) => {
    expect(secretEnvName(name)).toBe(env);
  });
});

describe("resolveSecret order", () => {
  const env = { CLAWPATROL_SECRET_GH_PROD_TOKEN: "from-env" };
  const st = store({ "gh-prod.token": "from-store" });
  const readFile = (p: string) => (p === "/s/gh" ? "from-file\n" : "");

  test("file wins over env and store; one trailing newline trimmed", () => {
    expect(resolveSecret(cred("gh-prod.token", "/s/gh"), { env, store: st, readFile })).toEqual({ ok: true, value: "from-file", source: "file" });
  });
  test("only one newline is trimmed (CRLF counts as one)", () => {
    expect(resolveSecret(cred("x", "/f"), { readFile: () => "v\r\n" })).toEqual({ ok: true, value: "v", source: "file" });
    const r = resolveSecret(cred("x", "/f"), { readFile: () => "v\n\n" });
    expect(r.ok).toBe(false); // "v\n" left: a line break is never a valid header secret
  });
  test("env wins over store", () => {
    expect(resolveSecret(cred("gh-prod.token"), { env, store: st })).toEqual({ ok: true, value: "from-env", source: "env" });
  });
  test("store last", () => {
    expect(resolveSecret(cred("gh-prod.token"), { env: {}, store: st })).toEqual({ ok: true, value: "from-store", source: "store" });
  });
  test("a real file on disk with the default reader", () => {
    const dir = mkdtempSync(join(tmpdir(), "cp-cred-"));
    const path = join(dir, "secret");
    writeFileSync(path, "disk-secret\n");
    expect(resolveSecret(cred("d", path), {})).toEqual({ ok: true, value: "disk-secret", source: "file" });
  });
});

describe("resolveSecret failures name the credential and the places, never a value", () => {
  test("missing everywhere", () => {
    const r = resolveSecret(cred("gh-prod.token"), { env: {}, store: store({ other: "leak-me" }) });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.reason).toContain("bearer_token.gh-prod.token");
    expect(r.reason).toContain("CLAWPATROL_SECRET_GH_PROD_TOKEN");
    expect(r.reason).toContain("secret store");
    expect(r.reason).not.toContain("leak-me");
  });
  test("missing with no sources given", () => {
    const r = resolveSecret(cred("x"), {});
    expect(r.ok).toBe(false);
  });
  test("a configured but unreadable file does not fall through to env", () => {
    const r = resolveSecret(cred("x", "/nonexistent/clawpatrol/secret"), { env: { CLAWPATROL_SECRET_X: "e" } });
    expect(r).toEqual({ ok: false, reason: expect.stringContaining("ENOENT") });
    if (!r.ok) expect(r.reason).toContain("/nonexistent/clawpatrol/secret");
  });
  test("a reader error message is not quoted (it could hold content)", () => {
    const r = resolveSecret(cred("x", "/f"), {
      readFile: () => {
        throw new Error("boom: the-secret-text");
      },
    });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).not.toContain("the-secret-text");
  });
  test.each([
    ["empty file", { readFile: () => "\n" }, "/f"],
    ["empty env", { env: { CLAWPATROL_SECRET_X: "" } }, undefined],
    ["empty store", { store: store({ x: "" }) }, undefined],
    ["env with a line break", { env: { CLAWPATROL_SECRET_X: "ab\ncd-leak" } }, undefined],
    ["store with NUL", { store: store({ x: "ab\0cd-leak" }) }, undefined],
  ] as const)("%s is not ok", (_label, sources, file) => {
    const r = resolveSecret(cred("x", file), sources);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.reason).toContain("bearer_token.x");
      expect(r.reason).not.toContain("leak");
    }
  });
});
