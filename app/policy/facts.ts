// A parsed HTTP request -> the HttpFacts that CEL conditions see as `http.*`.
import type { HeaderList } from "../endpoints/http1/headers.ts";
import type { HttpFacts } from "./types.ts";
import { normalizeHost } from "./host.ts";
import { normalisePath } from "../endpoints/http1/target.ts";

const decoder = new TextDecoder("utf-8", { fatal: false });

/**
 * @param target the request target: origin-form (`/path?q`) or absolute-form (`https://host/path?q`).
 * @param body the body up to the inspection limit, if the handler buffered it.
 * @param bodyTruncated whether the body went on past what was buffered.
 */
export function httpFactsFromRequest(
  method: string,
  host: string,
  target: string,
  headers: HeaderList,
  body?: Uint8Array,
  bodyTruncated = false,
  /** `http` for plain HTTP (the explicit proxy's absolute-form requests, port 80 in the tunnel). */
  scheme: "http" | "https" = "https",
): HttpFacts {
  const { path: rawPath, query } = splitTarget(target);
  // Rules judge the normalised path (the form the gateway forwards); a path
  // that cannot be normalised is refused before any rule runs, so seeing it
  // here means a caller outside the intercept path: judge it as sent.
  const normal = normalisePath(rawPath);
  const path = normal.ok ? normal.path : rawPath;
  // Null-prototype records: a header or parameter named `__proto__` is just a key.
  const joined: Record<string, string> = Object.create(null);
  for (const [name, value] of headers) {
    const key = name.toLowerCase();
    const prior = joined[key];
    joined[key] = prior === undefined ? value : `${prior}, ${value}`;
  }
  const text = body && body.length > 0 ? decoder.decode(body) : "";
  return {
    scheme,
    method: method.toUpperCase(),
    host: normalizeHost(host),
    path,
    rawPath,
    query,
    headers: joined,
    body: text,
    bodyJson: bodyTruncated ? null : parseJsonBody(text, joined["content-type"]),
    bodyTruncated,
  };
}

function splitTarget(target: string): { path: string; query: Record<string, string> } {
  let rest = target;
  // absolute-form (proxies): drop scheme and authority.
  const scheme = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i.exec(rest);
  if (scheme) rest = rest.slice(scheme[0].length);
  const hash = rest.indexOf("#");
  if (hash >= 0) rest = rest.slice(0, hash);
  const q = rest.indexOf("?");
  const path = (q >= 0 ? rest.slice(0, q) : rest) || "/";
  const query: Record<string, string> = Object.create(null);
  if (q >= 0) {
    for (const [k, v] of new URLSearchParams(rest.slice(q + 1))) if (!(k in query)) query[k] = v;
  }
  return { path, query };
}

/** JSON only when the content type says so or the text looks like an object or array. */
function parseJsonBody(text: string, contentType: string | undefined): unknown {
  if (text === "") return null;
  const declared = contentType !== undefined && /\bjson\b|\+json/i.test(contentType);
  const first = text.trimStart()[0];
  if (!declared && first !== "{" && first !== "[") return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
