// The HTTP side of the explicit proxy: find the first request head, tell a
// CONNECT to host:port from a plain-HTTP request in absolute-form
// (`GET http://host/path`, forwarded as a forward proxy does), and pull the
// device token out of Proxy-Authorization. Pure; the listener does the I/O.
import { Http1Parser } from "../../endpoints/http1/parser.ts";
import { getHeader, type HeaderList } from "../../endpoints/http1/headers.ts";
import { formatIp, parseIpv6 } from "../ipaddr.ts";

export const MAX_CONNECT_HEAD = 16 * 1024;
const CRLFCRLF = Uint8Array.of(13, 10, 13, 10);

export type ConnectParse =
  | { kind: "need-more" }
  | { kind: "connect"; host: string; port: number; token?: string; rest: Uint8Array }
  /** A plain-HTTP request for `host:port`: `rest` is every byte read, the head included (the session parses it again). */
  | { kind: "forward"; host: string; port: number; token?: string; rest: Uint8Array }
  | { kind: "reject"; status: number; message: string };

/** The port of an `http://` URL without one. */
const HTTP_PORT = 80;

export function parseConnectHead(buf: Uint8Array): ConnectParse {
  const end = indexOf(buf, CRLFCRLF);
  if (end + 4 > MAX_CONNECT_HEAD) return { kind: "reject", status: 431, message: "request head too large" };
  if (end < 0) {
    return buf.length > MAX_CONNECT_HEAD
      ? { kind: "reject", status: 431, message: "request head too large" }
      : { kind: "need-more" };
  }
  const headLen = end + 4;
  const parser = new Http1Parser("request");
  const events = parser.push(buf.subarray(0, headLen));
  const first = events[0];
  if (!first || first.type !== "head") {
    const message = first && first.type === "error" ? first.message : "malformed request";
    return { kind: "reject", status: 400, message };
  }
  const head = first.head;
  if (!("method" in head)) return { kind: "reject", status: 400, message: "malformed request" };
  if (head.method !== "CONNECT") {
    const target = absoluteHttpTarget(head.target);
    if (!target) {
      return {
        kind: "reject",
        status: 405,
        message: "this proxy takes CONNECT host:port, or plain-HTTP requests in absolute-form (GET http://host/path)",
      };
    }
    const token = tokenFromProxyAuthorization(head.headers);
    const result: ConnectParse = { kind: "forward", host: target.host, port: target.port, rest: buf.slice() };
    if (token !== undefined) result.token = token;
    return result;
  }
  const authority = parseAuthority(head.target);
  if (!authority) return { kind: "reject", status: 400, message: "CONNECT target must be host:port" };
  const token = tokenFromProxyAuthorization(head.headers);
  const result: ConnectParse = { kind: "connect", host: authority.host, port: authority.port, rest: buf.slice(headLen) };
  if (token !== undefined) result.token = token;
  return result;
}

/** The host and port of an absolute-form `http://` target (RFC 9112 §3.2.2); undefined for anything else. */
export function absoluteHttpTarget(target: string): { host: string; port: number } | undefined {
  const m = /^http:\/\/([^/?#@]*)(?:[/?]|$)/i.exec(target);
  if (!m) return undefined;
  const authority = m[1]!;
  const withPort = parseAuthority(authority);
  if (withPort) return withPort;
  const host = authority.toLowerCase().replace(/\.$/, "");
  return /^[a-z0-9._-]+$/.test(host) ? { host, port: HTTP_PORT } : undefined;
}

/** `host:port` or `[v6]:port`, as in RFC 9110 §9.3.6 authority-form. */
export function parseAuthority(target: string): { host: string; port: number } | undefined {
  let host: string;
  let portText: string;
  if (target.startsWith("[")) {
    // Only an IPv6 literal belongs in brackets (RFC 3986 §3.2.2).
    const close = target.indexOf("]");
    if (close < 0 || target[close + 1] !== ":") return undefined;
    const v6 = parseIpv6(target.slice(1, close));
    if (!v6) return undefined;
    host = formatIp(v6);
    portText = target.slice(close + 2);
  } else {
    const colon = target.indexOf(":");
    if (colon <= 0 || target.indexOf(":", colon + 1) >= 0) return undefined;
    host = target.slice(0, colon).toLowerCase();
    portText = target.slice(colon + 1);
    if (!/^[a-z0-9._-]+$/.test(host)) return undefined;
  }
  if (!/^[0-9]{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port < 1 || port > 65535) return undefined;
  return { host, port };
}

/**
 * The device token travels as the password of Basic credentials (any user
 * name; curl's `-U device:TOKEN`), or as the user name when the password is
 * empty, or as a Bearer token.
 */
export function tokenFromProxyAuthorization(headers: HeaderList): string | undefined {
  const value = getHeader(headers, "proxy-authorization");
  if (!value) return undefined;
  const space = value.indexOf(" ");
  if (space < 0) return undefined;
  const scheme = value.slice(0, space).toLowerCase();
  const param = value.slice(space + 1).trim();
  if (scheme === "bearer") return param || undefined;
  if (scheme !== "basic") return undefined;
  let decoded: string;
  try {
    decoded = Buffer.from(param, "base64").toString("utf8");
  } catch {
    return undefined;
  }
  const colon = decoded.indexOf(":");
  if (colon < 0) return decoded || undefined;
  const user = decoded.slice(0, colon);
  const pass = decoded.slice(colon + 1);
  return pass || user || undefined;
}

function indexOf(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
