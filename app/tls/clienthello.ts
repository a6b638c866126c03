// The ClientHello peek: what the dispatcher reads from the first bytes of a
// TCP flow before it decides whether to intercept, splice or refuse. Pure:
// bytes in, a verdict out; no I/O, no clock, never throws.
//
//   1. Sniff the first record header: not 0x16 (handshake) with a 3.x
//      version means "not TLS", so the caller can relay at once.
//   2. Walk TLSPlaintext records (RFC 8446 §5.1), gathering the handshake
//      fragments until the ClientHello message they carry is complete. A
//      buffer cut anywhere before that is "need-more".
//   3. Parse the ClientHello (RFC 8446 §4.1.2) through a bounds-checked
//      cursor: every length is checked against its container.
//   4. Read the three extensions the gateway decides on: server_name
//      (RFC 6066 §3), ALPN (RFC 7301 §3.1), supported_versions (RFC 8446
//      §4.2.1). Every other extension is skipped, but still framed.
//
// Decisions the callers rely on:
// - A server_name that is not a plausible DNS name (NUL, spaces, non-ASCII,
//   empty labels, over-long) is an "error", not "no SNI": treating garbage
//   as absent would let a client dodge host rules by sending a name the
//   upstream reads differently from us. Fail closed.
// - The name is lower-cased and one trailing dot removed, so policy sees the
//   canonical form (`API.GitHub.com.` → `api.github.com`).
// - SSLv2-compatible hellos (first byte 0x80) are "not-tls".
// - A record that carries bytes after the ClientHello is an "error": a
//   client must wait for the server's reply before sending more handshake.
// - GREASE values (RFC 8701) are returned as sent; callers filter them.

import { ByteCursor } from "./bytes.ts";

export type ClientHelloResult =
  | { kind: "need-more" }
  | {
      kind: "hello";
      /** The host_name from server_name, lower-cased; absent when the client sent none. */
      sni?: string;
      /** ALPN protocol ids in the client's order; empty when the extension is absent. */
      alpn: string[];
      legacyVersion: number;
      /** From supported_versions, as sent (GREASE included); empty when absent. */
      supportedVersions: number[];
      /** Bytes consumed: every record that holds part of the ClientHello. */
      length: number;
    }
  | { kind: "not-tls" }
  | { kind: "error"; reason: string };

export type ClientHello = Extract<ClientHelloResult, { kind: "hello" }>;

/** Upper bound on the records holding one ClientHello (post-quantum hellos are ~2 KiB). */
export const MAX_CLIENT_HELLO_BYTES = 64 * 1024;

// RFC 8446 §5.1 TLSPlaintext
const RECORD_HEADER_LENGTH = 5;
const MAX_PLAINTEXT_FRAGMENT = 2 ** 14;
const ContentType = { handshake: 22 } as const;
// RFC 8446 §4 Handshake
const HANDSHAKE_HEADER_LENGTH = 4;
const HandshakeType = { client_hello: 1 } as const;
const RANDOM_LENGTH = 32;
const MAX_LEGACY_SESSION_ID = 32;
// Extension code points (IANA "TLS ExtensionType Values")
const ExtensionType = {
  server_name: 0,
  application_layer_protocol_negotiation: 16,
  supported_versions: 43,
} as const;
// RFC 6066 §3 NameType
const NameType = { host_name: 0 } as const;
// RFC 1035 §2.3.4
const MAX_HOST_NAME = 253;
const MAX_LABEL = 63;

const NEED_MORE: ClientHelloResult = Object.freeze({ kind: "need-more" });
const NOT_TLS: ClientHelloResult = Object.freeze({ kind: "not-tls" });

function fail(reason: string): ClientHelloResult {
  return { kind: "error", reason };
}

/** SSL 3.0 … TLS 1.3 all put 3 in the major byte; minor above 4 does not exist. */
function isPlausibleVersion(major: number, minor: number): boolean {
  return major === 3 && minor <= 4;
}

export function parseClientHello(buf: Uint8Array): ClientHelloResult {
  // 1. Sniff on as few bytes as we have, so non-TLS is relayed at once.
  if (buf.length === 0) return NEED_MORE;
  if (buf[0] !== ContentType.handshake) return NOT_TLS;
  if (buf.length >= 2 && buf[1] !== 3) return NOT_TLS;
  if (buf.length >= 3 && !isPlausibleVersion(buf[1]!, buf[2]!)) return NOT_TLS;

  // 2. Gather handshake fragments record by record.
  const fragments: Uint8Array[] = [];
  let gathered = 0;
  let messageLength: number | null = null; // header + body, once the header is in
  let offset = 0;
  for (;;) {
    if (buf.length - offset < RECORD_HEADER_LENGTH) return NEED_MORE;
    const contentType = buf[offset]!;
    const recordLength = (buf[offset + 3]! << 8) | buf[offset + 4]!;
    if (contentType !== ContentType.handshake) {
      return fail(`record of content type ${contentType} inside the ClientHello`);
    }
    if (!isPlausibleVersion(buf[offset + 1]!, buf[offset + 2]!)) return fail("implausible record version");
    // RFC 8446 §5.1: zero-length handshake fragments MUST NOT be sent.
    if (recordLength === 0) return fail("empty handshake record");
    if (recordLength > MAX_PLAINTEXT_FRAGMENT) return fail("record longer than 2^14 bytes");
    const recordEnd = offset + RECORD_HEADER_LENGTH + recordLength;
    if (recordEnd > MAX_CLIENT_HELLO_BYTES) return fail(`ClientHello exceeds ${MAX_CLIENT_HELLO_BYTES} bytes`);

    const gatheredBefore = gathered;
    const fragment = buf.subarray(offset + RECORD_HEADER_LENGTH, Math.min(recordEnd, buf.length));
    fragments.push(fragment);
    gathered += fragment.length;

    if (messageLength === null && gathered >= 1) {
      const head = joinPrefix(fragments, HANDSHAKE_HEADER_LENGTH);
      if (head[0] !== HandshakeType.client_hello) {
        return fail(`first handshake message is type ${head[0]}, not ClientHello`);
      }
      if (head.length === HANDSHAKE_HEADER_LENGTH) {
        messageLength = HANDSHAKE_HEADER_LENGTH + ((head[1]! << 16) | (head[2]! << 8) | head[3]!);
        if (messageLength > MAX_CLIENT_HELLO_BYTES) return fail(`ClientHello exceeds ${MAX_CLIENT_HELLO_BYTES} bytes`);
      }
    }
    if (messageLength !== null && gatheredBefore + recordLength > messageLength) {
      return fail("record carries bytes after the ClientHello");
    }
    if (buf.length < recordEnd) return NEED_MORE;
    if (messageLength !== null && gathered === messageLength) {
      const message = fragments.length === 1 ? fragment : concat(fragments, gathered);
      return parseClientHelloBody(message.subarray(HANDSHAKE_HEADER_LENGTH), recordEnd);
    }
    offset = recordEnd;
  }
}

// 3. The ClientHello body.
function parseClientHelloBody(body: Uint8Array, length: number): ClientHelloResult {
  const c = ByteCursor.over(body);
  const legacyVersion = c.u16();
  if (legacyVersion === null || legacyVersion >> 8 !== 3) return fail("implausible legacy_version");
  if (!c.skip(RANDOM_LENGTH)) return fail("truncated random");
  const sessionId = c.vector(1);
  if (sessionId === null || sessionId.remaining > MAX_LEGACY_SESSION_ID) return fail("bad legacy_session_id");
  const cipherSuites = c.vector(2);
  if (cipherSuites === null || cipherSuites.remaining < 2 || cipherSuites.remaining % 2 !== 0) {
    return fail("bad cipher_suites");
  }
  const compression = c.vector(1);
  if (compression === null || compression.remaining < 1) return fail("bad legacy_compression_methods");

  const hello: ClientHello = { kind: "hello", alpn: [], legacyVersion, supportedVersions: [], length };
  // Hellos from before extensions existed simply end here.
  if (c.atEnd) return hello;
  const extensions = c.vector(2);
  if (extensions === null || !c.atEnd) return fail("extensions do not fill the ClientHello");

  // 4. The extensions we decide on.
  const seen = new Set<number>();
  while (!extensions.atEnd) {
    const type = extensions.u16();
    const data = extensions.vector(2);
    if (type === null || data === null) return fail("extension overruns the extension block");
    // RFC 8446 §4.2: no extension type may appear twice.
    if (seen.has(type)) return fail(`duplicate extension ${type}`);
    seen.add(type);
    switch (type) {
      case ExtensionType.server_name: {
        const sni = parseServerName(data);
        if (typeof sni !== "string") return sni;
        hello.sni = sni;
        break;
      }
      case ExtensionType.application_layer_protocol_negotiation: {
        const alpn = parseAlpn(data);
        if (!Array.isArray(alpn)) return alpn;
        hello.alpn = alpn;
        break;
      }
      case ExtensionType.supported_versions: {
        const versions = parseSupportedVersions(data);
        if (!Array.isArray(versions)) return versions;
        hello.supportedVersions = versions;
        break;
      }
    }
  }
  return hello;
}

/** RFC 6066 §3: ServerNameList server_name_list<1..2^16-1>. */
function parseServerName(data: ByteCursor): string | ClientHelloResult {
  const list = data.vector(2);
  if (list === null || !data.atEnd || list.atEnd) return fail("bad server_name list");
  let hostName: string | null = null;
  while (!list.atEnd) {
    const nameType = list.u8();
    const name = list.vector(2);
    if (nameType === null || name === null || name.atEnd) return fail("bad server_name entry");
    // Only host_name is defined; other types are skipped, as RFC 6066 allows.
    if (nameType !== NameType.host_name) continue;
    if (hostName !== null) return fail("more than one host_name in server_name");
    hostName = canonicalHostName(name.bytes(name.remaining)!);
    if (hostName === null) return fail("server_name is not a valid host name");
  }
  return hostName ?? fail("server_name without a host_name");
}

/**
 * The canonical form of an SNI host name: lower case, no trailing dot;
 * null unless it is LDH labels (plus `_`, seen in the wild) of 1–63 bytes,
 * 253 bytes at most in all.
 */
export function canonicalHostName(bytes: Uint8Array): string | null {
  let end = bytes.length;
  if (end > 0 && bytes[end - 1] === 0x2e) end--; // one trailing dot
  if (end === 0 || end > MAX_HOST_NAME) return null;
  let out = "";
  let labelLength = 0;
  for (let i = 0; i < end; i++) {
    let b = bytes[i]!;
    if (b === 0x2e) {
      if (labelLength === 0) return null;
      labelLength = 0;
    } else {
      if (b >= 0x41 && b <= 0x5a) b += 0x20; // A-Z → a-z
      const isLdh = (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b === 0x2d || b === 0x5f;
      if (!isLdh) return null;
      if (++labelLength > MAX_LABEL) return null;
    }
    out += String.fromCharCode(b);
  }
  return labelLength === 0 ? null : out;
}

/** RFC 7301 §3.1: ProtocolName protocol_name_list<2..2^16-1>, each <1..2^8-1>. */
function parseAlpn(data: ByteCursor): string[] | ClientHelloResult {
  const list = data.vector(2);
  if (list === null || !data.atEnd || list.atEnd) return fail("bad ALPN list");
  const protocols: string[] = [];
  while (!list.atEnd) {
    const name = list.vector(1);
    if (name === null || name.atEnd) return fail("bad ALPN protocol name");
    // Protocol ids are opaque bytes; latin1 keeps every one distinct.
    protocols.push(String.fromCharCode(...name.bytes(name.remaining)!));
  }
  return protocols;
}

/** RFC 8446 §4.2.1: ProtocolVersion versions<2..254> in a ClientHello. */
function parseSupportedVersions(data: ByteCursor): number[] | ClientHelloResult {
  const list = data.vector(1);
  if (list === null || !data.atEnd || list.remaining < 2 || list.remaining % 2 !== 0) {
    return fail("bad supported_versions");
  }
  const versions: number[] = [];
  while (!list.atEnd) versions.push(list.u16()!);
  return versions;
}

/** The first `n` handshake bytes gathered so far (fewer if fewer arrived). */
function joinPrefix(fragments: Uint8Array[], n: number): Uint8Array {
  const first = fragments[0]!;
  if (first.length >= n || fragments.length === 1) return first.subarray(0, n);
  const total = Math.min(
    n,
    fragments.reduce((sum, f) => sum + f.length, 0),
  );
  return concat(fragments, total);
}

/** The first `total` bytes of the fragments, copied into one array. */
function concat(fragments: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const f of fragments) {
    if (at >= total) break;
    const take = Math.min(f.length, total - at);
    out.set(f.subarray(0, take), at);
    at += take;
  }
  return out;
}
