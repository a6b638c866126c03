// SCRAM-SHA-256 client side (RFC 5802, RFC 7677), as PostgreSQL speaks it:
//   1. client-first  = gs2-header + "n=" user + ",r=" client-nonce
//      (PostgreSQL ignores the SCRAM user name, so the gateway sends "n=,"
//      and the real user travels in the StartupMessage);
//   2. server-first  = "r=" nonce ",s=" salt ",i=" iterations, where nonce
//      starts with our nonce; checked strictly like libpq;
//   3. client-final  = "c=" base64(gs2-header + channel binding data)
//      ",r=" nonce ",p=" base64(ClientKey XOR HMAC(StoredKey, AuthMessage));
//   4. server-final  = "v=" base64(HMAC(ServerKey, AuthMessage)), compared in
//      constant time: a server that cannot prove it knows the password is
//      refused; "e=" is the server's refusal.
//
// SaltedPassword (PBKDF2, `iterations` rounds of HMAC-SHA-256) is the
// expensive step (4096 rounds ≈ a few ms) and blocks the event loop, so
// results are kept in a small LRU keyed by (salt, iterations, SHA-256 of
// the password): a server's salt per role is stable, so reconnections skip
// it. `maxIterations` bounds the work a hostile server can demand.

import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from "node:crypto";
import { saslprepPassword } from "./saslprep.ts";

export const SCRAM_SHA_256 = "SCRAM-SHA-256";
export const SCRAM_SHA_256_PLUS = "SCRAM-SHA-256-PLUS";
/** PostgreSQL 16 allows up to INT_MAX; 1M rounds is ~0.5 s of CPU here, once per (salt, password). */
export const DEFAULT_MAX_ITERATIONS = 1_000_000;

/**
 * GS2 header: "n,," the client does not support channel binding (no TLS);
 * "y,," it does, but the server did not offer -PLUS (lets a server that
 * does offer it detect a downgrade); "p=tls-server-end-point,," it binds.
 */
export type ChannelBindingFlag = "n" | "y" | "p";

export function gs2Header(flag: ChannelBindingFlag): string {
  return flag === "p" ? "p=tls-server-end-point,," : `${flag},,`;
}

/** 18 random bytes in base64, like libpq's SCRAM_RAW_NONCE_LEN. */
export function randomNonce(): string {
  return randomBytes(18).toString("base64");
}

/** RFC 5802 saslname: "=" and "," escaped. */
function saslName(user: string): string {
  return user.replaceAll("=", "=3D").replaceAll(",", "=2C");
}

export interface ClientFirst {
  /** The whole client-first-message (what SASLInitialResponse carries). */
  message: string;
  /** client-first-message-bare (part of the AuthMessage). */
  bare: string;
  clientNonce: string;
  header: string;
}

export function clientFirstMessage(flag: ChannelBindingFlag, clientNonce: string, user = ""): ClientFirst {
  const header = gs2Header(flag);
  const bare = `n=${saslName(user)},r=${clientNonce}`;
  return { message: header + bare, bare, clientNonce, header };
}

export interface ServerFirst {
  message: string;
  nonce: string;
  salt: Uint8Array;
  iterations: number;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** Printable ASCII except ',' (RFC 5802 "printable"). */
const NONCE = /^[\x21-\x2b\x2d-\x7e]+$/;

/** Parses and checks server-first-message; a string says what is wrong. */
export function parseServerFirst(message: string, clientNonce: string, maxIterations = DEFAULT_MAX_ITERATIONS): ServerFirst | string {
  const parts = message.split(",");
  if (parts.length !== 3) return `server-first-message has ${parts.length} attributes, expected r, s, i`;
  const [r, s, i] = parts as [string, string, string];
  if (!r.startsWith("r=") || !s.startsWith("s=") || !i.startsWith("i=")) return "server-first-message attributes out of order";
  const nonce = r.slice(2);
  if (!NONCE.test(nonce)) return "server nonce has invalid characters";
  if (!nonce.startsWith(clientNonce) || nonce.length <= clientNonce.length) return "server nonce does not extend the client nonce";
  const saltText = s.slice(2);
  if (saltText.length === 0 || !BASE64.test(saltText)) return "salt is not base64";
  const salt = new Uint8Array(Buffer.from(saltText, "base64"));
  if (salt.length === 0) return "empty salt";
  const iText = i.slice(2);
  if (!/^[1-9][0-9]{0,9}$/.test(iText)) return "invalid iteration count";
  const iterations = Number(iText);
  if (iterations > maxIterations) return `iteration count ${iterations} over the limit ${maxIterations}`;
  return { message, nonce, salt, iterations };
}

const saltedCache = new Map<string, Uint8Array>();
const SALTED_CACHE_MAX = 64;

/** Hi(Normalize(password), salt, i) of RFC 5802, with PostgreSQL's SASLprep. */
export function saltedPassword(password: string, salt: Uint8Array, iterations: number): Uint8Array {
  const prepared = saslprepPassword(password);
  const key = `${iterations}:${Buffer.from(salt).toString("base64")}:${createHash("sha256").update(prepared).digest("base64")}`;
  const hit = saltedCache.get(key);
  if (hit !== undefined) {
    saltedCache.delete(key);
    saltedCache.set(key, hit);
    return hit;
  }
  const out = new Uint8Array(pbkdf2Sync(prepared, salt, iterations, 32, "sha256"));
  saltedCache.set(key, out);
  if (saltedCache.size > SALTED_CACHE_MAX) saltedCache.delete(saltedCache.keys().next().value!);
  return out;
}

function hmac(key: Uint8Array, text: string): Buffer {
  return createHmac("sha256", key).update(text).digest();
}

export interface ClientFinal {
  /** client-final-message (what SASLResponse carries). */
  message: string;
  /** The ServerSignature a genuine server must send back. */
  expectedServerSignature: Uint8Array;
}

/**
 * client-final-message for `first` and `server`; `bindingData` is the
 * tls-server-end-point hash when the header is "p".
 */
export function clientFinalMessage(
  password: string,
  first: ClientFirst,
  server: ServerFirst,
  bindingData: Uint8Array = new Uint8Array(),
): ClientFinal {
  const cbind = Buffer.concat([Buffer.from(first.header, "utf8"), bindingData]).toString("base64");
  const withoutProof = `c=${cbind},r=${server.nonce}`;
  const authMessage = `${first.bare},${server.message},${withoutProof}`;
  const salted = saltedPassword(password, server.salt, server.iterations);
  const clientKey = hmac(salted, "Client Key");
  const storedKey = createHash("sha256").update(clientKey).digest();
  const clientSignature = createHmac("sha256", storedKey).update(authMessage).digest();
  const proof = Buffer.alloc(clientKey.length);
  for (let k = 0; k < proof.length; k++) proof[k] = clientKey[k]! ^ clientSignature[k]!;
  const serverKey = hmac(salted, "Server Key");
  const serverSignature = createHmac("sha256", serverKey).update(authMessage).digest();
  return { message: `${withoutProof},p=${proof.toString("base64")}`, expectedServerSignature: new Uint8Array(serverSignature) };
}

/** Checks server-final-message: "ok", or what is wrong (an "e=" refusal, a bad or missing signature). */
export function verifyServerFinal(message: string, expected: Uint8Array): "ok" | string {
  if (message.startsWith("e=")) return `server refused: ${message.slice(2)}`;
  if (!message.startsWith("v=") || message.includes(",")) return "server-final-message is malformed";
  const text = message.slice(2);
  if (!BASE64.test(text)) return "server signature is not base64";
  const got = Buffer.from(text, "base64");
  if (got.length !== expected.length || !timingSafeEqual(got, expected)) return "server signature does not match: the server did not prove it knows the password";
  return "ok";
}
