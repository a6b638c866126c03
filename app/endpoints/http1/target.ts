// Request-target and Host syntax shared by the gateway's judge and its
// rules: what `http.path` means is decided here, once.

/** A Host field value (or absolute-form authority): reg-name [ ":" port ], lower-cased. */
export function parseHostField(value: string): { name: string; port?: number } | undefined {
  const m = /^([A-Za-z0-9._~!$&'()*+,;=%-]+)(?::([0-9]{0,5}))?$/.exec(value);
  if (!m) return undefined; // userinfo ("@"), brackets, spaces, empty
  const name = m[1]!.toLowerCase().replace(/\.$/, "");
  if (name === "" || name.includes("%")) return undefined;
  if (m[2] === undefined || m[2] === "") return { name };
  const port = Number(m[2]);
  return port > 0 && port < 65536 ? { name, port } : undefined;
}

const UNRESERVED = /[A-Za-z0-9\-._~]/;

/**
 * RFC 3986 normalisation of an origin-form path, or a refusal when the
 * target is ambiguous between implementations:
 * - percent-encoded unreserved characters are decoded, other escapes get
 *   upper-case hex (§6.2.2.1-2); a malformed escape is refused;
 * - repeated slashes collapse to one (nginx's merge_slashes; others would
 *   serve `//x` and `/x` alike or not, so rules judge the one form we send);
 * - dot-segments (also `%2e`), encoded `/` or `\`, a backslash, NUL and
 *   bytes beyond ASCII are refused: servers disagree on what they mean.
 */
export function normalisePath(raw: string): { ok: true; path: string } | { ok: false; reason: string } {
  if (!raw.startsWith("/")) return { ok: false, reason: "path does not start with /" };
  if (isNormalPath(raw)) return { ok: true, path: raw };
  let out = "";
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    const code = c.charCodeAt(0);
    if (c === "\\") return { ok: false, reason: "backslash in the path" };
    if (code < 0x21 || code > 0x7e) return { ok: false, reason: "non-ASCII byte in the path" };
    if (c !== "%") {
      out += c;
      continue;
    }
    const hex = raw.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return { ok: false, reason: "malformed percent-encoding in the path" };
    const byte = parseInt(hex, 16);
    const ch = String.fromCharCode(byte);
    if (ch === "/" || ch === "\\") return { ok: false, reason: "encoded slash or backslash in the path" };
    if (byte === 0) return { ok: false, reason: "encoded NUL in the path" };
    out += UNRESERVED.test(ch) ? ch : "%" + hex.toUpperCase();
    i += 2;
  }
  out = out.replace(/\/{2,}/g, "/");
  for (const seg of out.split("/")) {
    if (seg === "." || seg === "..") return { ok: false, reason: "dot-segment in the path" };
  }
  return { ok: true, path: out };
}

/**
 * The common case, checked without building a copy: printable ASCII with no
 * escape, no backslash, no repeated slash and no segment starting with a
 * dot. Such a path is already in the form the loop above would produce.
 */
function isNormalPath(raw: string): boolean {
  let prev = 0;
  for (let i = 0; i < raw.length; i++) {
    const code = raw.charCodeAt(i);
    if (code < 0x21 || code > 0x7e || code === 0x25 /* % */ || code === 0x5c /* \ */) return false;
    if (code === 0x2f /* / */ && prev === 0x2f) return false;
    if (code === 0x2e /* . */ && prev === 0x2f) return false;
    prev = code;
  }
  return true;
}
