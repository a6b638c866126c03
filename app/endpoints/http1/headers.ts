// HTTP/1.1 header lists keep wire order and the sender's case, so a request
// the gateway forwards looks like the one the agent sent except for the
// slots the gateway owns (credentials, hop-by-hop headers).
//
// Names compare case-insensitively (RFC 9110 §5.1). The helpers mutate the
// list in place where the name says so (set/remove) and return new lists
// otherwise (stripHopByHop), so a parsed head can be edited cheaply.

/** Header name/value pairs in wire order; names in their original case. */
export type HeaderList = [name: string, value: string][];

// tchar (RFC 9110 §5.6.2): "!#$%&'*+-.^_`|~" / DIGIT / ALPHA.
const TCHAR = new Uint8Array(128);
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;
for (const ch of "!#$%&'*+-.^_`|~") TCHAR[ch.charCodeAt(0)] = 1;

/** True when `s` is a non-empty RFC 9110 token (method, field name, coding). */
export function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 128 || TCHAR[c] === 0) return false;
  }
  return true;
}

/**
 * True when `s` may stand as a field value (RFC 9110 §5.5): VCHAR, SP, HTAB
 * and obs-text, no CR/LF/NUL or other controls, no leading/trailing
 * whitespace. Characters above 0xFF cannot be sent in latin1 and are refused.
 */
export function isFieldValue(s: string): boolean {
  const n = s.length;
  if (n === 0) return true;
  const first = s.charCodeAt(0);
  const last = s.charCodeAt(n - 1);
  if (first === 0x20 || first === 0x09 || last === 0x20 || last === 0x09) return false;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f || c > 0xff) return false;
  }
  return true;
}

function sameName(a: string, lower: string): boolean {
  return a.length === lower.length && (a === lower || a.toLowerCase() === lower);
}

/** The first value of `name`, or undefined. */
export function getHeader(h: HeaderList, name: string): string | undefined {
  const lower = name.toLowerCase();
  for (const [n, v] of h) if (sameName(n, lower)) return v;
  return undefined;
}

/** Every value of `name`, in wire order. */
export function getHeaderAll(h: HeaderList, name: string): string[] {
  const lower = name.toLowerCase();
  const out: string[] = [];
  for (const [n, v] of h) if (sameName(n, lower)) out.push(v);
  return out;
}

/**
 * Replace every field named `name` with one field `name: value`, at the
 * position of the first one (appended when absent). Mutates `h`.
 */
export function setHeader(h: HeaderList, name: string, value: string): void {
  const lower = name.toLowerCase();
  let at = -1;
  let w = 0;
  for (let r = 0; r < h.length; r++) {
    const f = h[r]!;
    if (sameName(f[0], lower)) {
      if (at >= 0) continue;
      at = w;
    }
    h[w++] = f;
  }
  h.length = w;
  if (at < 0) h.push([name, value]);
  else h[at] = [name, value];
}

/** Remove every field named `name`. Mutates `h`; returns how many went. */
export function removeHeader(h: HeaderList, name: string): number {
  const lower = name.toLowerCase();
  let w = 0;
  for (let r = 0; r < h.length; r++) {
    const f = h[r]!;
    if (!sameName(f[0], lower)) h[w++] = f;
  }
  const removed = h.length - w;
  h.length = w;
  return removed;
}

/**
 * The comma-separated list elements of every `name` field (RFC 9110 §5.6.1),
 * trimmed and lower-cased, empty elements dropped. For token lists such as
 * Connection, Transfer-Encoding, Upgrade (protocol names keep their case
 * only for display; comparison is case-insensitive).
 */
export function headerTokens(h: HeaderList, name: string): string[] {
  const lower = name.toLowerCase();
  const out: string[] = [];
  for (const [n, v] of h) {
    if (!sameName(n, lower)) continue;
    for (const part of v.split(",")) {
      const t = part.trim().toLowerCase();
      if (t.length > 0) out.push(t);
    }
  }
  return out;
}

/** True when a `name` field lists `token` (e.g. Connection: keep-alive, Upgrade). */
export function hasToken(h: HeaderList, name: string, token: string): boolean {
  const t = token.toLowerCase();
  const lower = name.toLowerCase();
  for (const [n, v] of h) {
    if (!sameName(n, lower)) continue;
    // Fast path for the common single-token value.
    if (v.length === t.length && v.toLowerCase() === t) return true;
    for (const part of v.split(",")) if (part.trim().toLowerCase() === t) return true;
  }
  return false;
}

/**
 * Hop-by-hop fields (RFC 9110 §7.6.1) plus Proxy-Connection, which some
 * clients still send. A proxy never forwards them; the fields the Connection
 * header names are hop-by-hop too.
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authorization",
  "proxy-authenticate",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

export interface StripOptions {
  /**
   * Keep `Upgrade` and re-emit `Connection: Upgrade` (dropping the other
   * Connection options), so a WebSocket handshake survives the hop.
   */
  keepUpgrade?: boolean;
}

/**
 * A copy of `h` without hop-by-hop fields or the fields the Connection
 * header names. With `keepUpgrade`, the Upgrade field stays and Connection
 * becomes exactly `Upgrade` at the position of the first Connection field.
 */
export function stripHopByHop(h: HeaderList, opts: StripOptions = {}): HeaderList {
  // The options Connection names: usually none or one (keep-alive, close),
  // searched as a list; a long list (a hostile head) as a Set.
  const tokens = headerTokens(h, "connection");
  const tokenSet = tokens.length > 8 ? new Set(tokens) : undefined;
  const named = (name: string) => (tokenSet ? tokenSet.has(name) : tokens.includes(name));
  const keepUpgrade = opts.keepUpgrade === true;
  const out: HeaderList = [];
  let connectionPlaced = false;
  for (const f of h) {
    const lower = f[0].toLowerCase();
    if (keepUpgrade) {
      if (lower === "upgrade") {
        out.push([f[0], f[1]]);
        continue;
      }
      if (lower === "connection") {
        if (!connectionPlaced) out.push([f[0], "Upgrade"]);
        connectionPlaced = true;
        continue;
      }
    }
    if (HOP_BY_HOP.has(lower) || named(lower)) continue;
    out.push([f[0], f[1]]);
  }
  return out;
}
