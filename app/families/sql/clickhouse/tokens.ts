// ClickHouse SQL text -> tokens, as ClickHouse's own lexer (Lexer.cpp) splits
// them: whitespace and comments (`--` to end of line, `/* */`) skipped;
// 'strings' and "quoted" / `quoted` identifiers with backslash escapes and
// doubled quotes; bare words; numbers; punctuation. Anything the lexer here
// does not know (an unterminated quote or comment, `$` heredocs, `#` comments,
// a NUL) is an error: the extractor then leaves every facet unknown.

export type TokenKind = "word" | "quoted" | "string" | "number" | "punct";

export interface Token {
  kind: TokenKind;
  /** The value: a word as written, a quoted identifier or string unescaped, a number or punctuation as written. */
  text: string;
  /** Offsets in the source text: [start, end). */
  start: number;
  end: number;
}

export class LexError extends Error {}

/** Punctuation and operators, longest first so `<=` is not read as `<`. */
const PUNCT = ["->", "<=", ">=", "!=", "<>", "==", "||", "::", "(", ")", "[", "]", ",", ";", ".", "=", "<", ">", "+", "-", "*", "/", "%", "?", ":", "{", "}"];

// ASCII only outside quotes: ClickHouse reads non-ASCII bytes by rules (Unicode spaces, word bytes) that changed across versions.
const WORD_START = /[A-Za-z_]/;
const WORD_PART = /[A-Za-z0-9_$]/;

/** Escapes ClickHouse reads inside quotes (readQuotedString); others keep the character after the backslash. */
const ESCAPES: Record<string, string> = { b: "\b", f: "\f", n: "\n", r: "\r", t: "\t", "0": "\0", a: "\x07", v: "\v", e: "\x1b" };

function readQuoted(text: string, start: number, quote: string): { value: string; end: number } {
  let value = "";
  let i = start + 1;
  while (i < text.length) {
    const c = text[i]!;
    if (c === "\\") {
      if (i + 1 >= text.length) break;
      const n = text[i + 1]!;
      // \xHH and other forms: not read here, so not judged.
      if (n === "x") throw new LexError("a \\x escape in a quoted token");
      value += ESCAPES[n] ?? n;
      i += 2;
      continue;
    }
    if (c === quote) {
      if (text[i + 1] === quote) {
        value += quote;
        i += 2;
        continue;
      }
      return { value, end: i + 1 };
    }
    value += c;
    i++;
  }
  throw new LexError(`an unterminated ${quote} quote`);
}

/**
 * The tokens of `text`. `stopAfter`, when given, sees each token as it is
 * read and may end the lexing there (the rest, such as an INSERT's inline
 * data, is then never read as SQL).
 */
export function tokenize(text: string, stopAfter?: (t: Token) => boolean): Token[] {
  const out: Token[] = [];
  const push = (t: Token): boolean => {
    out.push(t);
    return stopAfter !== undefined && stopAfter(t);
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === " " || c === "\t" || c === "\n" || c === "\r" || c === "\f" || c === "\v") {
      i++;
      continue;
    }
    if (c === "-" && text[i + 1] === "-") {
      const nl = text.indexOf("\n", i);
      i = nl < 0 ? text.length : nl + 1;
      continue;
    }
    if (c === "/" && text[i + 1] === "*") {
      const close = text.indexOf("*/", i + 2);
      if (close < 0) throw new LexError("an unterminated comment");
      // ClickHouse does not nest comments; a nested opener would be read differently elsewhere: refuse it.
      if (text.slice(i + 2, close).includes("/*")) throw new LexError("a nested comment");
      i = close + 2;
      continue;
    }
    if (c === "'" || c === '"' || c === "`") {
      const q = readQuoted(text, i, c);
      const stop = push({ kind: c === "'" ? "string" : "quoted", text: q.value, start: i, end: q.end });
      i = q.end;
      if (stop) return out;
      continue;
    }
    if (c >= "0" && c <= "9") {
      const m = /^(0x[0-9a-fA-F]+|0b[01]+|[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?)/.exec(text.slice(i, i + 400));
      const len = m ? m[0].length : 1;
      // A number glued to a word (`1abc`) is not something this lexer reads.
      if (i + len < text.length && WORD_PART.test(text[i + len]!)) throw new LexError("a number followed by a letter");
      const stop = push({ kind: "number", text: text.slice(i, i + len), start: i, end: i + len });
      i += len;
      if (stop) return out;
      continue;
    }
    if (WORD_START.test(c)) {
      let j = i + 1;
      while (j < text.length && WORD_PART.test(text[j]!)) j++;
      const stop = push({ kind: "word", text: text.slice(i, j), start: i, end: j });
      i = j;
      if (stop) return out;
      continue;
    }
    const p = PUNCT.find((s) => text.startsWith(s, i));
    if (p === undefined) throw new LexError(`an unexpected character ${JSON.stringify(c)}`);
    const stop = push({ kind: "punct", text: p, start: i, end: i + p.length });
    i += p.length;
    if (stop) return out;
  }
  return out;
}
