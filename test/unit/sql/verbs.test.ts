// Every statement kind of the parser's grammar has a verb in the table, and an
// unknown kind gets the documented fallback instead of an exception.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fallbackVerb, KNOWN_STATEMENT_KINDS, verbOf } from "../../../app/families/sql/verbs.ts";

test("the table names every *Stmt node of libpg-query's types", () => {
  const types = readFileSync(path.join(import.meta.dir, "../../../node_modules/@pgsql/types/types.d.ts"), "utf8");
  const kinds = [...types.matchAll(/^export interface (\w+Stmt) \{/gm)].map((m) => m[1] ?? "");
  expect(kinds.length).toBeGreaterThan(100);
  const missing = kinds.filter((k) => k !== "RawStmt" && !KNOWN_STATEMENT_KINDS.includes(k));
  expect(missing).toEqual([]);
});

test.each([
  ["CreateFooStmt", "create"],
  ["AlterBarBazStmt", "alter"],
  ["WaitStmt", "wait"],
  ["weird", "weird"],
])("an unknown kind %s falls back to its first word: %s", (kind, verb) => {
  expect(fallbackVerb(kind)).toBe(verb);
  expect(verbOf(kind, {})).toBe(verb);
});
