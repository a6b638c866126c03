// Small helpers the credential plugins share: writing one header slot,
// building placeholders, and listing the echo forms of a secret. Private to
// app/credentials (the gateway-wide header helpers live in endpoints/http1).
import type { HeaderList } from "../endpoints/http1/headers.ts";

// CR, LF and NUL in a header value would let a secret split the request
// (header injection). resolveSecret already refuses such values; this is the
// last line of defence, so hitting it is an impossible state and throws.
const FORBIDDEN_IN_VALUE = /[\r\n\0]/;

/** The first value of header `name` (case-insensitive), or undefined. */
export function firstHeader(headers: HeaderList, name: string): string | undefined {
  const lower = name.toLowerCase();
  for (const [n, v] of headers) if (n.toLowerCase() === lower) return v;
  return undefined;
}

/**
 * Make `value` the one and only value of header `name`: the first header of
 * that name (any case) keeps its position and spelling and takes the value,
 * later duplicates are removed; when absent it is appended as `name`.
 */
export function setHeaderSlot(headers: HeaderList, name: string, value: string): void {
  if (FORBIDDEN_IN_VALUE.test(value)) throw new Error(`refusing to write a line break or NUL into header ${name}`);
  const lower = name.toLowerCase();
  let found = false;
  let w = 0;
  for (let r = 0; r < headers.length; r++) {
    const h = headers[r]!;
    if (h[0].toLowerCase() === lower) {
      if (found) continue; // a duplicate: drop it
      found = true;
      headers[w++] = [h[0], value];
    } else {
      headers[w++] = h;
    }
  }
  headers.length = w;
  if (!found) headers.push([name, value]);
}

/**
 * `<prefix><name>` with the name reduced to characters every slot accepts
 * unquoted (token68 for Authorization, cookie-octet, URL-unreserved), so a
 * placeholder never needs escaping wherever the agent puts it.
 */
export function placeholderFor(prefix: string, name: string): string {
  return prefix + name.replace(/[^A-Za-z0-9._~-]/g, "_");
}

export function base64(text: string): string {
  return Buffer.from(text, "utf8").toString("base64");
}

/**
 * The strings that reveal `values` when echoed: each value as is, URL-encoded
 * (an echoed request URL), JSON-escaped (an echoed request in a JSON error)
 * and base64-encoded inside whatever surrounds it (an echoed header encoded
 * whole), deduplicated, empty strings dropped.
 */
export function echoForms(...values: string[]): string[] {
  const out = new Set<string>();
  for (const v of values) {
    if (v === "") continue;
    out.add(v);
    out.add(encodeURIComponent(v));
    out.add(JSON.stringify(v).slice(1, -1));
    for (const core of base64Cores(v)) out.add(core);
  }
  return [...out];
}

/** Shorter base64 cores than this would mask unrelated text. */
const MIN_BASE64_CORE = 12;

/**
 * The base64 characters that encode `value` wherever it sits in a longer
 * string: for each of the three byte alignments, the characters that
 * depend on the value's bytes alone (standard and URL-safe alphabets).
 */
export function base64Cores(value: string): string[] {
  const bytes = Buffer.from(value, "utf8");
  const out: string[] = [];
  for (let lead = 0; lead < 3; lead++) {
    // `lead` bytes before the value: the first group mixes them in unless lead is 0.
    const skip = lead === 0 ? 0 : 3 - lead;
    const whole = Math.floor((bytes.length - skip) / 3) * 3;
    if (whole <= 0) continue;
    const core = bytes.subarray(skip, skip + whole).toString("base64");
    if (core.length < MIN_BASE64_CORE) continue;
    out.push(core, core.replace(/\+/g, "-").replace(/\//g, "_"));
  }
  return [...new Set(out)];
}
