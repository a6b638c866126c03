// The secrets and identifiers of the device-code flow (RFC 8628's shape):
//  - the user code: 8 characters a human reads out and types, from an
//    alphabet without look-alikes (no 0/O, 1/I), shown as `ABCD-EFGH`;
//  - the device code: 32 random bytes the device polls with, stored hashed;
//  - the device's WireGuard public key: 32 bytes of standard base64.
import { createHash, randomBytes } from "node:crypto";

/** 32 symbols, so one random byte & 31 picks one without bias. */
export const USER_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
export const USER_CODE_LENGTH = 8;

export function newUserCode(random: (n: number) => Uint8Array = randomBytes): string {
  const bytes = random(USER_CODE_LENGTH);
  let out = "";
  for (const b of bytes) out += USER_CODE_ALPHABET[b & 31];
  return out;
}

/** `ABCDEFGH` → `ABCD-EFGH`. */
export function formatUserCode(code: string): string {
  return `${code.slice(0, 4)}-${code.slice(4)}`;
}

/**
 * What an operator typed → the stored form (`ABCDEFGH`), or undefined when it
 * cannot be a code. Case, spaces and dashes are forgiven.
 */
export function normalizeUserCode(input: string): string | undefined {
  const s = input.toUpperCase().replace(/[\s-]/g, "");
  if (s.length !== USER_CODE_LENGTH) return undefined;
  for (const c of s) if (!USER_CODE_ALPHABET.includes(c)) return undefined;
  return s;
}

export function newDeviceCode(): string {
  return randomBytes(32).toString("base64url");
}

export function hashDeviceCode(deviceCode: string): string {
  return createHash("sha256").update(deviceCode, "utf8").digest("hex");
}

const DEVICE_CODE_RE = /^[A-Za-z0-9_-]{43}$/;
export function plausibleDeviceCode(s: unknown): s is string {
  return typeof s === "string" && DEVICE_CODE_RE.test(s);
}

// 32 bytes → 44 characters: 42 free, one of the 16 that leave the last two
// bits zero, and one pad.
const WG_KEY_RE = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

/** A WireGuard (X25519) public key as `wg pubkey` prints it; rejects the all-zero key. */
export function validWireguardPublicKey(s: unknown): s is string {
  if (typeof s !== "string" || !WG_KEY_RE.test(s)) return false;
  const bytes = Buffer.from(s, "base64");
  return bytes.length === 32 && bytes.some((b) => b !== 0);
}
