// What the feed and the request detail show of an sql event, without a browser.
import { describe, expect, test } from "bun:test";
import { isSql, searchText, sqlLine, sqlResult, sqlView, statementLine } from "./families.ts";

const sqlEvent = (action: Record<string, unknown> | undefined, over: Record<string, unknown> = {}) => ({
  kind: "sql" as const,
  family: "sql" as const,
  method: "DELETE",
  path: "DELETE FROM public.users WHERE id = 7",
  host: "db.internal",
  endpoint: "postgres.db",
  summary: "delete public.users",
  action,
  ...over,
});

describe("sqlView", () => {
  test("reads the recorded action: database, user, verb, tables, functions, statement, rows, sqlstate", () => {
    const v = sqlView(
      sqlEvent({ database: "app", user: "agent", verb: "delete", tables: ["public.users"], functions: ["now"], statement: "DELETE FROM public.users WHERE id = 7", rows: 1 }),
    );
    expect(v).toEqual({ database: "app", user: "agent", verb: "delete", parsed: true, tables: ["public.users"], functions: ["now"], statement: "DELETE FROM public.users WHERE id = 7", rows: 1 });
    expect(sqlLine(v!)).toBe("app: delete public.users");
    expect(sqlResult(v!)).toBe("1 row");
  });

  test("an http event is not sql; an unparsed statement has no verb or tables; a failed one shows its SQLSTATE", () => {
    expect(sqlView({ kind: "http", method: "GET", path: "/x", action: { method: "GET" } })).toBeUndefined();
    expect(isSql({ kind: "http" })).toBe(false);
    const unparsed = sqlView(sqlEvent({ database: "app", user: "agent", verb: null, tables: null, functions: null, statement: "selec oops", sqlstate: "42501" }))!;
    expect(unparsed).toMatchObject({ verb: "unparsed", parsed: false, tables: [], statement: "selec oops", sqlstate: "42501" });
    expect(sqlResult(unparsed)).toBe("42501");
    expect(sqlResult({ ...unparsed, sqlstate: undefined, rows: 3 })).toBe("3 rows");
    expect(sqlResult({ ...unparsed, sqlstate: undefined })).toBe("—");
  });

  test("an event without an action (older rows) falls back to its path; junk in the action is ignored", () => {
    expect(sqlView(sqlEvent(undefined))).toMatchObject({ database: "?", verb: "unparsed", statement: "DELETE FROM public.users WHERE id = 7" });
    expect(sqlView(sqlEvent({ database: 5, tables: ["a", 3, null], rows: "7" }))).toMatchObject({ database: "?", tables: ["a"] });
    expect(sqlView(sqlEvent({ database: 5, rows: "7" }))!.rows).toBeUndefined();
  });
});

describe("statementLine and searchText", () => {
  test("a statement is folded to one line and cut", () => {
    expect(statementLine("SELECT *\n  FROM users\n\tWHERE a = 1")).toBe("SELECT * FROM users WHERE a = 1");
    expect(statementLine("x".repeat(300), 10)).toBe(`${"x".repeat(9)}…`);
  });

  test("the search box finds sql events by statement, database, summary and endpoint; http by host, path and rule", () => {
    const e = { ...sqlEvent({ database: "billing", statement: "DELETE FROM public.users WHERE id = 7" }), rule: "no-writes" };
    for (const q of ["billing", "delete from public.users", "postgres.db", "no-writes", "db.internal"]) expect({ q, hit: searchText(e).includes(q) }).toEqual({ q, hit: true });
    const http = { kind: "http" as const, host: "api.test", path: "/echo", rule: "r", method: "GET" };
    expect(searchText(http)).toBe("api.test/echo r");
  });
});
