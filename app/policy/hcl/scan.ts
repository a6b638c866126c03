// A structural scanner for HCL source: it finds where each block and
// attribute is declared, in order. hcl2json gives values but no positions
// and sorts keys, so declaration order and FILE:LINE come from here.
//
// It only needs to understand HCL's skeleton: block headers
// (`type "label" ident {`), attributes (`name = expr`), and enough of
// expressions (strings, templates, heredocs, comments, brackets) to find
// where one ends. It is run after hcl2json accepted the file, and it never
// throws on input it does not understand: it skips a character and goes on.

export interface ScannedAttribute {
  name: string;
  line: number;
}

export interface ScannedBlock {
  type: string;
  labels: string[];
  line: number;
  attributes: ScannedAttribute[];
  blocks: ScannedBlock[];
}

export interface ScannedBody {
  attributes: ScannedAttribute[];
  blocks: ScannedBlock[];
}

const IDENT_START = /[A-Za-z_]/;
const IDENT_PART = /[A-Za-z0-9_-]/;

export function scanHcl(text: string): ScannedBody {
  return new Scanner(text).body(false);
}

class Scanner {
  private i = 0;
  private readonly lineStarts: number[] = [0];

  constructor(private readonly s: string) {
    for (let k = 0; k < s.length; k++) if (s[k] === "\n") this.lineStarts.push(k + 1);
  }

  /** 1-based line of a character offset. */
  private lineAt(offset: number): number {
    let lo = 0;
    let hi = this.lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.lineStarts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  }

  body(inBlock: boolean): ScannedBody {
    const out: ScannedBody = { attributes: [], blocks: [] };
    while (this.i < this.s.length) {
      this.skipTrivia(true);
      const c = this.s[this.i];
      if (c === undefined) break;
      if (c === "}") {
        this.i++;
        if (inBlock) return out;
        continue;
      }
      if (!IDENT_START.test(c)) {
        this.i++;
        continue;
      }
      const start = this.i;
      const name = this.ident();
      this.skipTrivia(false);
      if (this.s[this.i] === "=" && this.s[this.i + 1] !== "=") {
        this.i++;
        out.attributes.push({ name, line: this.lineAt(start) });
        this.skipExpression();
        continue;
      }
      const labels: string[] = [];
      while (this.i < this.s.length) {
        const d = this.s[this.i]!;
        if (d === '"') labels.push(this.stringLiteral());
        else if (IDENT_START.test(d)) labels.push(this.ident());
        else break;
        this.skipTrivia(false);
      }
      if (this.s[this.i] === "{") {
        this.i++;
        const inner = this.body(true);
        out.blocks.push({ type: name, labels, line: this.lineAt(start), ...inner });
      }
    }
    return out;
  }

  private ident(): string {
    const start = this.i;
    while (this.i < this.s.length && IDENT_PART.test(this.s[this.i]!)) this.i++;
    return this.s.slice(start, this.i);
  }

  /** Skips spaces and comments; newlines too when `newlines` is set. */
  private skipTrivia(newlines: boolean): void {
    while (this.i < this.s.length) {
      const c = this.s[this.i]!;
      if (c === " " || c === "\t" || c === "\r" || (newlines && c === "\n")) this.i++;
      else if (c === "#" || (c === "/" && this.s[this.i + 1] === "/")) this.skipToEol();
      else if (c === "/" && this.s[this.i + 1] === "*") {
        const end = this.s.indexOf("*/", this.i + 2);
        this.i = end < 0 ? this.s.length : end + 2;
      } else break;
    }
  }

  private skipToEol(): void {
    const end = this.s.indexOf("\n", this.i);
    this.i = end < 0 ? this.s.length : end;
  }

  /** Reads a quoted string starting at `"`; returns its (lightly unescaped) text. */
  private stringLiteral(): string {
    this.i++;
    let out = "";
    while (this.i < this.s.length) {
      const c = this.s[this.i]!;
      if (c === "\\") {
        out += this.s[this.i + 1] ?? "";
        this.i += 2;
      } else if (c === '"') {
        this.i++;
        return out;
      } else if ((c === "$" || c === "%") && this.s[this.i + 1] === "{") {
        const start = this.i;
        this.i += 2;
        this.skipBalanced();
        out += this.s.slice(start, this.i);
      } else if (c === "\n") {
        return out;
      } else {
        out += c;
        this.i++;
      }
    }
    return out;
  }

  /** Skips a template interpolation body up to and including its closing `}`. */
  private skipBalanced(): void {
    let depth = 1;
    while (this.i < this.s.length && depth > 0) {
      const c = this.s[this.i]!;
      if (c === '"') this.stringLiteral();
      else {
        if (c === "{") depth++;
        else if (c === "}") depth--;
        this.i++;
      }
    }
  }

  private skipHeredoc(): void {
    // <<EOT or <<-EOT, then lines until one that is only the marker.
    this.i += 2;
    if (this.s[this.i] === "-") this.i++;
    const marker = this.ident();
    this.skipToEol();
    while (this.i < this.s.length) {
      this.i++;
      const end = this.s.indexOf("\n", this.i);
      const lineEnd = end < 0 ? this.s.length : end;
      const done = this.s.slice(this.i, lineEnd).trim() === marker;
      this.i = lineEnd;
      if (done) return;
    }
  }

  /** Skips an attribute's expression: up to a newline (or a `}` closing the block) outside brackets. */
  private skipExpression(): void {
    let depth = 0;
    while (this.i < this.s.length) {
      const c = this.s[this.i]!;
      if (c === "\n" && depth === 0) return;
      if (c === "}" && depth === 0) return;
      if (c === '"') this.stringLiteral();
      else if (c === "<" && this.s[this.i + 1] === "<" && /[-A-Za-z_]/.test(this.s[this.i + 2] ?? "")) this.skipHeredoc();
      else if (c === "#" || (c === "/" && this.s[this.i + 1] === "/")) this.skipToEol();
      else if (c === "/" && this.s[this.i + 1] === "*") this.skipTrivia(false);
      else {
        if (c === "(" || c === "[" || c === "{") depth++;
        else if (c === ")" || c === "]" || c === "}") depth--;
        this.i++;
      }
    }
  }
}
