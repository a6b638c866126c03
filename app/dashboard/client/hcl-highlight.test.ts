// The config editor's colouring, without a browser: every piece classed as
// an operator reads it, and the text itself never changed.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import path from "node:path";
import { highlightHcl, type Piece } from "./hcl-highlight.ts";

const joined = (lines: Piece[][]) => lines.map((l) => l.map((p) => p.text).join("")).join("\n");
const classes = (l: Piece[]) => l.filter((p) => p.text.trim() !== "").map((p) => `${p.cls}:${p.text.trim()}`);

describe("highlightHcl", () => {
  test("block types, labels, attributes, strings, numbers, keywords and comments", () => {
    const [a, b, c, d] = highlightHcl(`rule "no-deletes" { # why\n  priority = 10\n  disabled = false\n  condition = "http.path == \\"/x\\""\n`);
    expect(classes(a!)).toEqual(["block:rule", 'string:"no-deletes"', "plain:{", "comment:# why"]);
    expect(classes(b!)).toEqual(["attr:priority", "plain:=", "number:10"]);
    expect(classes(c!)).toEqual(["attr:disabled", "plain:=", "keyword:false"]);
    expect(classes(d!)).toEqual(["attr:condition", "plain:=", 'string:"http.path == \\"/x\\""']);
  });

  test("block comments and heredocs carry over lines", () => {
    const lines = highlightHcl(`/* one\ntwo */ x = 1\nmsg = <<EOT\n  # not a comment\nEOT\ny = 2`);
    expect(classes(lines[0]!)).toEqual(["comment:/* one"]);
    expect(classes(lines[1]!)).toEqual(["comment:two */", "attr:x", "plain:=", "number:1"]);
    expect(classes(lines[3]!)).toEqual(["string:# not a comment"]);
    expect(classes(lines[4]!)).toEqual(["string:EOT"]);
    expect(classes(lines[5]!)).toEqual(["attr:y", "plain:=", "number:2"]);
  });

  test("references stay plain; the text is never changed (the whole example config)", () => {
    expect(classes(highlightHcl("  endpoint = https.api")[0]!)).toEqual(["attr:endpoint", "plain:= https.api"]);
    const example = readFileSync(path.join(import.meta.dir, "..", "..", "..", "config", "example.hcl"), "utf8");
    expect(joined(highlightHcl(example))).toBe(example);
    expect(joined(highlightHcl('a = "unterminated\nb = 1'))).toBe('a = "unterminated\nb = 1');
  });
});
