// Simple HCL syntax colouring for the config editor: text in, one list of
// classed pieces per line out (no DOM, so it is tested without a browser).
// It knows comments (#, //, /* */ across lines), strings with escapes,
// heredocs (<<EOF, <<-EOF), numbers, true/false/null, block types (a name at
// the start of a line followed by a label or `{`) and attribute names (a
// name followed by `=`). Anything else is plain. It never changes the text:
// the pieces of a line joined are the line.

export type TokenClass = "comment" | "string" | "number" | "keyword" | "block" | "attr" | "plain";
export interface Piece {
  cls: TokenClass;
  text: string;
}

type Carry = { inComment: boolean; heredoc: string | undefined };

function line(text: string, carry: Carry): Piece[] {
  const out: Piece[] = [];
  // Only the line's first token can name a block or an attribute.
  let seenToken = false;
  const push = (cls: TokenClass, t: string) => {
    if (t === "") return;
    if (cls !== "comment" && t.trim() !== "") seenToken = true;
    const last = out.at(-1);
    if (last && last.cls === cls) last.text += t;
    else out.push({ cls, text: t });
  };
  if (carry.heredoc !== undefined) {
    if (text.trim() === carry.heredoc) carry.heredoc = undefined;
    push("string", text);
    return out;
  }
  let i = 0;
  while (i < text.length) {
    if (carry.inComment) {
      const end = text.indexOf("*/", i);
      const stop = end === -1 ? text.length : end + 2;
      push("comment", text.slice(i, stop));
      i = stop;
      if (end !== -1) carry.inComment = false;
      continue;
    }
    const c = text[i]!;
    const rest = text.slice(i);
    if (c === "#" || rest.startsWith("//")) {
      push("comment", rest);
      break;
    }
    if (rest.startsWith("/*")) {
      carry.inComment = true;
      push("comment", "/*");
      i += 2;
      continue;
    }
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      push("string", text.slice(i, Math.min(text.length, j + 1)));
      i = j + 1;
      continue;
    }
    const heredoc = /^<<-?([A-Za-z_][A-Za-z0-9_]*)\s*$/.exec(rest);
    if (heredoc) {
      carry.heredoc = heredoc[1]!;
      push("string", rest);
      break;
    }
    const word = /^[A-Za-z_][A-Za-z0-9_.-]*/.exec(rest);
    if (word) {
      const w = word[0];
      const next = /^\s*(==|=|"|\{)?/.exec(text.slice(i + w.length))![1];
      const cls: TokenClass =
        w === "true" || w === "false" || w === "null"
          ? "keyword"
          : !seenToken && next === "="
            ? "attr"
            : !seenToken && (next === '"' || next === "{")
              ? "block"
              : "plain";
      push(cls, w);
      i += w.length;
      continue;
    }
    const num = /^\d+(\.\d+)?([eE][+-]?\d+)?/.exec(rest);
    if (num && !/[A-Za-z0-9_]/.test(text[i - 1] ?? "")) {
      push("number", num[0]);
      i += num[0].length;
      continue;
    }
    push("plain", c);
    i++;
  }
  return out;
}

/** One list of pieces per line of the text (a trailing newline gives a last empty line). */
export function highlightHcl(text: string): Piece[][] {
  const carry: Carry = { inComment: false, heredoc: undefined };
  return text.split("\n").map((l) => line(l, carry));
}
