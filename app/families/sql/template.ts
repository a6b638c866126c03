// A text's literal template: the text with every numeric literal turned into
// `0` and every plain string literal into `''`, all else kept byte for byte.
// Texts that differ only in such literals (pgbench -M simple, an ORM that
// inlines its values) share a template, so the facts of one, when they cannot
// depend on literal values, serve the others without a parse (index.ts says
// which results qualify).
//
// The scan is deliberately narrow: anything whose lexing it cannot be sure of
// gives no template at all (the text is then parsed like any other): comments,
// dollar quotes and `$` other than a `$1` parameter, backslashes, prefixed
// strings (E'', B'', X'', N'', U&''), numbers touching a letter, a dot or an
// underscore (1e5, 0x1F, 1_000, .5, t.1), control characters, an unclosed quote.

/** Identifier characters: a literal next to one is not a literal we understand. */
function isIdentChar(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x5f || c === 0x24 || c >= 0x80;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

const QUOTE = 0x27; // '
const DOUBLE_QUOTE = 0x22; // "
const BACKSLASH = 0x5c;
const DOLLAR = 0x24;
const DOT = 0x2e;
const AMPERSAND = 0x26;
const MINUS = 0x2d;
const SLASH = 0x2f;
const STAR = 0x2a;

/** The literal template of `text`, or undefined when the text holds anything the scan does not vouch for. */
export function literalTemplate(text: string): string | undefined {
  const n = text.length;
  let out = "";
  let copiedTo = 0;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    const prev = i > 0 ? text.charCodeAt(i - 1) : 0x20;
    if (c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return undefined;
    if (c === BACKSLASH) return undefined;
    if ((c === MINUS && text.charCodeAt(i + 1) === MINUS) || (c === SLASH && text.charCodeAt(i + 1) === STAR)) return undefined;
    if (c === QUOTE) {
      if (isIdentChar(prev) || prev === AMPERSAND) return undefined;
      let j = i + 1;
      for (;;) {
        if (j >= n) return undefined;
        const d = text.charCodeAt(j);
        if (d === BACKSLASH || (d < 0x20 && d !== 0x09 && d !== 0x0a && d !== 0x0d)) return undefined;
        if (d === QUOTE) {
          if (text.charCodeAt(j + 1) === QUOTE) {
            j += 2;
            continue;
          }
          break;
        }
        j++;
      }
      out += text.slice(copiedTo, i) + "''";
      i = j + 1;
      copiedTo = i;
      continue;
    }
    if (c === DOUBLE_QUOTE) {
      // A quoted identifier: kept as written (its "" escapes are two quotes in a row).
      const close = text.indexOf('"', i + 1);
      if (close < 0) return undefined;
      for (let k = i + 1; k < close; k++) {
        const d = text.charCodeAt(k);
        if (d < 0x20 && d !== 0x09 && d !== 0x0a && d !== 0x0d) return undefined;
      }
      i = close + 1;
      continue;
    }
    if (c === DOLLAR) {
      // Only a parameter ($1) outside an identifier; dollar quotes hide text.
      if (isIdentChar(prev) || !isDigit(text.charCodeAt(i + 1))) return undefined;
      i++;
      while (i < n && isDigit(text.charCodeAt(i))) i++;
      if (i < n && (isIdentChar(text.charCodeAt(i)) || text.charCodeAt(i) === DOT)) return undefined;
      continue;
    }
    if (isDigit(c) && !isIdentChar(prev)) {
      if (prev === DOT) return undefined;
      let j = i;
      while (j < n && isDigit(text.charCodeAt(j))) j++;
      if (text.charCodeAt(j) === DOT) {
        j++;
        while (j < n && isDigit(text.charCodeAt(j))) j++;
      }
      if (j < n && (isIdentChar(text.charCodeAt(j)) || text.charCodeAt(j) === DOT)) return undefined;
      out += text.slice(copiedTo, i) + "0";
      i = j;
      copiedTo = i;
      continue;
    }
    i++;
  }
  return out + text.slice(copiedTo);
}
