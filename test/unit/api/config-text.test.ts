// The config editor's pure parts: the line diff (checked against diff -u's
// numbering) and hiding secrets (hidden, put back, scrubbed from messages).
import { describe, expect, test } from "bun:test";
import { diffLines, unifiedDiff } from "../../../app/control/config/diff.ts";
import { maskSecrets, scrubHidden, unmaskSecrets } from "../../../app/control/config/secrets.ts";

describe("unifiedDiff", () => {
  const ten = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n";

  test("numbers hunks as diff -u does, with three lines of context", () => {
    expect(unifiedDiff("f", ten, ten.replace("c\n", "C\n") + "k\n")).toBe(
      ["--- f", "+++ f", "@@ -1,6 +1,6 @@", " a", " b", "-c", "+C", " d", " e", " f", "@@ -8,3 +8,4 @@", " h", " i", " j", "+k", ""].join("\n"),
    );
  });

  test("an empty side starts at 0; equal texts give nothing", () => {
    expect(unifiedDiff("f", "", "x\n")).toBe("--- f\n+++ f\n@@ -0,0 +1,1 @@\n+x\n");
    expect(unifiedDiff("f", "x\n", "")).toBe("--- f\n+++ f\n@@ -1,1 +0,0 @@\n-x\n");
    expect(unifiedDiff("f", ten, ten)).toBe("");
  });

  test("keeps the longest common lines in the middle", () => {
    const ops = diffLines("a\nx\nb\ny\nc\n", "a\nb\nz\nc\n").map((l) => `${l.op}${l.text}`);
    expect(ops).toEqual([" a", "-x", " b", "-y", "+z", " c"]);
  });
});

describe("secrets in the config", () => {
  const text = `human_approver "ops" {
  bot_token      = "xoxb-1"
  signing_secret = "s3cr3t-value"
  webhook_secret = "\${credential.x}"
  channel_id     = "C1"
}
llm_approver "judge" { api_key = "" }
`;

  test("literal values of secret attributes become markers; references and other values stay", () => {
    const m = maskSecrets(text);
    expect(m.hidden).toEqual(["xoxb-1", "s3cr3t-value"]);
    expect(m.text).toContain(`bot_token      = "<hidden 1>"`);
    expect(m.text).toContain(`signing_secret = "<hidden 2>"`);
    expect(m.text).toContain("${credential.x}");
    expect(m.text).toContain(`channel_id     = "C1"`);
    expect(m.text).toContain(`api_key = ""`);
  });

  test("markers go back to their values wherever the lines moved; a new literal replaces one", () => {
    const m = maskSecrets(text);
    const lines = m.text.split("\n");
    [lines[1], lines[2]] = [lines[2]!, lines[1]!];
    const back = unmaskSecrets(lines.join("\n").replace(`"<hidden 2>"`, `"<hidden 2>"`), m.hidden);
    expect(back).toEqual({ ok: true, text: (() => { const l = text.split("\n"); [l[1], l[2]] = [l[2]!, l[1]!]; return l.join("\n"); })() });
    const replaced = unmaskSecrets(m.text.replace(`"<hidden 1>"`, `"xoxb-2"`), m.hidden);
    expect(replaced.ok && replaced.text).toContain(`bot_token      = "xoxb-2"`);
  });

  test("an unknown marker is an error on its line", () => {
    expect(unmaskSecrets(`a = 1\nb = "<hidden 3>"\n`, ["x"])).toMatchObject({ ok: false, line: 2 });
  });

  test("scrubHidden takes values out of a message", () => {
    expect(scrubHidden("bad token s3cr3t-value here", ["xoxb-1", "s3cr3t-value"])).toBe("bad token <hidden 2> here");
  });
});
