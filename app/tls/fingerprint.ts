// The CA fingerprint an operator hands to devices for first contact: the
// SHA-256 of the CA certificate's DER, written as `openssl x509 -noout
// -fingerprint -sha256` prints it (upper-case hex pairs joined by colons).
// Devices and install.sh compare it before trusting anything the gateway says.
import { createHash } from "node:crypto";

/** DER bytes of the first PEM certificate in `pem`; throws when there is none. */
export function certificateDer(pem: string): Buffer {
  const m = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(pem);
  if (!m) throw new TypeError("no PEM certificate found");
  return Buffer.from(m[1]!.replace(/\s+/g, ""), "base64");
}

/** Lower-case hex SHA-256 of the certificate's DER (the form `sha256sum` compares). */
export function certificateSha256Hex(pem: string): string {
  return createHash("sha256").update(certificateDer(pem)).digest("hex");
}

/** `AB:CD:…` — the form shown to operators. */
export function caFingerprint(pem: string): string {
  return formatFingerprint(certificateSha256Hex(pem));
}

export function formatFingerprint(hex: string): string {
  return hex.toUpperCase().match(/../g)!.join(":");
}

/**
 * Accepts what an operator may paste: `AB:CD:…`, `abcd…`, or openssl's whole
 * line (`sha256 Fingerprint=AB:…`). Returns 64 lower-case hex digits, or
 * null when it is not a SHA-256 fingerprint.
 */
export function parseFingerprint(input: string): string | null {
  const value = input.trim().replace(/^sha-?256\s*fingerprint\s*=\s*/i, "");
  const hex = value.replace(/[:\s]/g, "").toLowerCase();
  return /^[0-9a-f]{64}$/.test(hex) ? hex : null;
}
