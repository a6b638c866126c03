import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { scanHcl } from "../../../app/policy/hcl/scan.ts";
import { loadPolicy } from "../../../app/policy/load.ts";
import { tempDir } from "./helpers.ts";

describe("scanHcl", () => {
  test("finds blocks, labels and attribute lines through strings, heredocs and comments", () => {
    const src = [
      "schema_version = 1 # a comment with { braces",
      "/* block comment",
      "   rule \"fake\" { } */",
      'rule "r1" {',
      '  condition = "a { b } ${x} \\" }"',
      "  reason = <<-EOT",
      "    } not the end {",
      "    EOT",
      "  list = [",
      '    "x", // comment ]',
      "  ]",
      "  obj = { a = 1 }",
      "}",
      'gateway { proxy { listen = "x" } }',
      "endpoint https \"b\" {",
      "}",
    ].join("\n");
    const body = scanHcl(src);
    expect(body.attributes).toEqual([{ name: "schema_version", line: 1 }]);
    expect(body.blocks.map((b) => [b.type, b.labels, b.line])).toEqual([
      ["rule", ["r1"], 4],
      ["gateway", [], 14],
      ["endpoint", ["https", "b"], 15],
    ]);
    expect(body.blocks[0]!.attributes).toEqual([
      { name: "condition", line: 5 },
      { name: "reason", line: 6 },
      { name: "list", line: 9 },
      { name: "obj", line: 12 },
    ]);
    expect(body.blocks[1]!.blocks[0]).toMatchObject({ type: "proxy", line: 14, attributes: [{ name: "listen", line: 14 }] });
  });

  test("never throws on garbage", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (s) => {
        scanHcl(s);
      }),
      { numRuns: 500 },
    );
  });
});

describe("loadPolicy on mangled configs", () => {
  test("a cut or corrupted example answers with a value, never a crash", async () => {
    const example = readFileSync(join(import.meta.dir, "../../../config/example.hcl"), "utf8");
    const dir = tempDir();
    const file = join(dir, "g.hcl");
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: example.length }), fc.string({ maxLength: 12 }), async (cut, junk) => {
        writeFileSync(file, example.slice(0, cut) + junk + example.slice(cut + junk.length));
        const result = await loadPolicy(file, { env: {} });
        if (!result.ok) {
          expect(result.errors.length).toBeGreaterThan(0);
          for (const e of result.errors) {
            expect(e.file).toBe(file);
            expect(e.line).toBeGreaterThanOrEqual(1);
          }
        }
      }),
      { numRuns: 60 },
    );
  });
});
