// Golden error files: each golden/NAME.hcl (or directory golden/NAME/) must
// produce exactly the FILE:LINE lines in golden/NAME.errors.
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { formatConfigError, loadPolicy } from "../../../app/policy/load.ts";

const dir = join(import.meta.dir, "golden");
const cases = readdirSync(dir)
  .filter((n) => n.endsWith(".errors"))
  .map((n) => n.slice(0, -".errors".length))
  .sort();

describe("golden config errors", () => {
  test("there are golden cases", () => {
    expect(cases.length).toBeGreaterThanOrEqual(10);
  });

  for (const name of cases) {
    test(name, async () => {
      const entries = readdirSync(dir);
      const path = entries.includes(`${name}.hcl`) ? join(dir, `${name}.hcl`) : join(dir, name);
      const result = await loadPolicy(path, { env: {} });
      expect(result.ok).toBe(false);
      const got = result.ok ? [] : result.errors.map((e) => formatConfigError(e).replaceAll(`${dir}/`, ""));
      const want = readFileSync(join(dir, `${name}.errors`), "utf8").trimEnd().split("\n");
      expect(got).toEqual(want);
    });
  }
});
