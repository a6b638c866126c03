// CLI tables carry agent-controlled text (paths, SQL statements): it must not
// reach the operator's terminal as escape sequences, newlines or bidi overrides.
import { expect, test } from "bun:test";
import { formatTable, terminalSafe } from "../../../app/control/cli.ts";

test("control characters and bidi overrides are escaped; ordinary text (and non-ASCII) is kept", () => {
  expect(terminalSafe("sql app@db: DELETE FROM users\x1b[2J\n\u202eevil")).toBe("sql app@db: DELETE FROM users\\u001b[2J\\u000a\\u202eevil");
  expect(terminalSafe("select 'ünï' from t -- ok")).toBe("select 'ünï' from t -- ok");
  const table = formatTable(["ID", "REQUEST"], [["1", terminalSafe("a\nb\rc\u0085d")]]);
  expect(table.split("\n")).toHaveLength(2);
  expect(table).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
});
