// What an intercepted request must look like before any rule judges it.
// Sans-IO: a parsed request head in, either the request's canonical form
// (method, normalised path, the target to forward) or a refusal out.
//
// 1. Method: only the methods a rule can reason about, compared
//    case-sensitively (RFC 9110 §9.1). CONNECT and TRACE get 405 (a tunnel
//    inside the tunnel would carry bytes no rule saw; TRACE reflects the
//    request, injected credential included); anything else, `get` too, 501.
// 2. Host: exactly one `Host`, a plain name with an optional port (no
//    userinfo, no brackets), naming the TLS server name; else 400/421.
// 3. Target: origin-form; absolute-form only for this same authority (turned
//    into origin-form); `*` only with OPTIONS. Anything else 400/421.
// 4. Path: normalised (see normalisePath) so rules judge what the upstream
//    acts on, and forwarded in that form; ambiguous paths are refused (400).
// 5. Connection may not name a field the gateway relies on (Host, the
//    framing fields, credential slots): refused with 400.
// 6. Upgrade: only to WebSocket (400 otherwise): after an h2c upgrade the
//    agent would send requests no rule sees. A kubernetes endpoint also
//    takes SPDY/3.1 (kubectl exec's older upgrade: one judged exec's streams).
import type { RequestHead } from "../http1/parser.ts";
import { getHeaderAll, headerTokens } from "../http1/headers.ts";
import { normalisePath, parseHostField } from "../http1/target.ts";
import type { Credential } from "../../policy/types.ts";
import { pluginFor } from "../../credentials/plugin.ts";

/** Methods forwarded from an intercepted session. */
export const FORWARDED_METHODS: ReadonlySet<string> = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

/** Header names no Connection option may name: the gateway judges and writes them. */
const PROTECTED_FIELDS: ReadonlySet<string> = new Set([
  "host",
  "content-length",
  "transfer-encoding",
  "authorization",
  "proxy-authorization",
  "cookie",
]);

export interface RequestShape {
  /** Normalised path, what rules see as `http.path`. */
  path: string;
  /** The path exactly as sent, `http.raw_path`. */
  rawPath: string;
  /** The request target forwarded upstream (origin-form, normalised path, query as sent). */
  target: string;
}

export type ShapeResult = ({ ok: true } & RequestShape) | { ok: false; status: 400 | 405 | 421 | 501; reason: string };

const refuse = (status: 400 | 405 | 421 | 501, reason: string): ShapeResult => ({ ok: false, status, reason });

/**
 * Checks a request head against the session's TLS server name. `slotHeaders`
 * are the credential slots (lower-case) a Connection option must not name.
 */
export function checkRequestShape(head: RequestHead, sni: string, slotHeaders: Iterable<string> = [], upgrades: readonly string[] = ["websocket"]): ShapeResult {
  const { method } = head;
  if (method === "CONNECT" || method === "TRACE") return refuse(405, `method ${method} is not forwarded on an intercepted connection`);
  if (!FORWARDED_METHODS.has(method)) return refuse(501, `method ${JSON.stringify(method)} is not supported`);

  const hosts = getHeaderAll(head.headers, "host");
  if (hosts.length !== 1) return refuse(400, hosts.length === 0 ? "missing Host header" : "more than one Host header");
  const host = parseHostField(hosts[0]!);
  if (!host) return refuse(400, "malformed Host header");
  if (host.name !== sni) return refuse(421, "Host header does not match the TLS server name");

  if (head.upgrade !== undefined && !upgrades.includes(head.upgrade.trim().toLowerCase())) {
    return refuse(400, `upgrade to ${JSON.stringify(head.upgrade)} is not bridged`);
  }

  // Most requests name nothing but keep-alive or close, or send no Connection at all.
  const named = headerTokens(head.headers, "connection");
  if (named.length > 0) {
    const slots = new Set([...slotHeaders].map((s) => s.toLowerCase()));
    for (const n of named) {
      if (PROTECTED_FIELDS.has(n) || slots.has(n)) return refuse(400, `Connection names ${n}`);
    }
  }

  let target = head.target;
  if (target === "*") {
    return method === "OPTIONS" ? { ok: true, path: "*", rawPath: "*", target: "*" } : refuse(400, "asterisk-form target outside OPTIONS");
  }
  if (!target.startsWith("/")) {
    const abs = /^https?:\/\/([^/?#]*)/i.exec(target);
    if (!abs) return refuse(400, "request target is neither origin-form nor absolute-form");
    const authority = parseHostField(abs[1]!);
    if (!authority) return refuse(400, "malformed authority in the request target");
    if (authority.name !== sni) return refuse(421, "request target names another authority");
    target = target.slice(abs[0].length);
    if (!target.startsWith("/")) target = "/" + target;
  }
  if (target.includes("#")) return refuse(400, "fragment in the request target");
  const q = target.indexOf("?");
  const rawPath = q >= 0 ? target.slice(0, q) : target;
  const query = q >= 0 ? target.slice(q) : "";
  const norm = normalisePath(rawPath);
  if (!norm.ok) return refuse(400, norm.reason);
  return { ok: true, path: norm.path, rawPath, target: norm.path + query };
}


/** Slots by credential: a policy's credentials stay the same objects until the next load. */
const slotsOf = new WeakMap<Credential, readonly string[]>();

/** The header names (lower-case) a credential writes, found by injecting into an empty request. */
export function credentialSlots(cred: Credential): readonly string[] {
  let slots = slotsOf.get(cred);
  if (!slots) {
    const probe = { method: "GET", target: "/", headers: [] as [string, string][] };
    pluginFor(cred.type).inject(probe, "x", cred);
    slots = probe.headers.map(([n]) => n.toLowerCase());
    slotsOf.set(cred, slots);
  }
  return slots;
}
