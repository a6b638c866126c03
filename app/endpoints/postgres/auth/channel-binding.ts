// tls-server-end-point channel binding data (RFC 5929 §4.1): the hash of the
// server certificate's DER, with the hash function of the certificate's
// signature algorithm, except that MD5 and SHA-1 are replaced by SHA-256.
// Like PostgreSQL 15 (be_tls_get_certificate_hash), a certificate whose
// signature algorithm names no single hash (RSASSA-PSS, Ed25519, Ed448) has
// no binding data: the function returns null and the caller cannot use
// SCRAM-SHA-256-PLUS with that server.

import { createHash } from "node:crypto";

/** Signature algorithm OIDs (dotted) -> the hash RFC 5929 says to use. */
const SIGNATURE_HASH: Record<string, "sha224" | "sha256" | "sha384" | "sha512"> = {
  "1.2.840.113549.1.1.4": "sha256", // md5WithRSAEncryption -> SHA-256
  "1.2.840.113549.1.1.5": "sha256", // sha1WithRSAEncryption -> SHA-256
  // SHA-224 stays SHA-224: RFC 5929 replaces only MD5 and SHA-1, and so does PostgreSQL
  "1.2.840.113549.1.1.14": "sha224",
  "1.2.840.10045.4.3.1": "sha224",
  "1.2.840.113549.1.1.11": "sha256",
  "1.2.840.113549.1.1.12": "sha384",
  "1.2.840.113549.1.1.13": "sha512",
  "1.2.840.10045.4.1": "sha256", // ecdsa-with-SHA1 -> SHA-256
  "1.2.840.10045.4.3.2": "sha256",
  "1.2.840.10045.4.3.3": "sha384",
  "1.2.840.10045.4.3.4": "sha512",
  "1.2.840.10040.4.3": "sha256", // dsa-with-sha1 -> SHA-256
  "2.16.840.1.101.3.4.3.2": "sha256", // dsa-with-sha256
};

/** A minimal DER reader: tag, length, and where the content starts. */
function readTlv(der: Uint8Array, at: number): { tag: number; start: number; end: number } | null {
  if (at + 2 > der.length) return null;
  const tag = der[at]!;
  let len = der[at + 1]!;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > der.length) return null;
    len = 0;
    for (let k = 0; k < n; k++) len = len * 256 + der[start + k]!;
    start += n;
  }
  const end = start + len;
  return end > der.length ? null : { tag, start, end };
}

function oidToString(bytes: Uint8Array): string {
  const parts: number[] = [];
  let v = 0;
  for (let k = 0; k < bytes.length; k++) {
    v = v * 128 + (bytes[k]! & 0x7f);
    if ((bytes[k]! & 0x80) === 0) {
      if (parts.length === 0) parts.push(v < 80 ? Math.floor(v / 40) : 2, v < 80 ? v % 40 : v - 80);
      else parts.push(v);
      v = 0;
    }
  }
  return parts.join(".");
}

/** The signatureAlgorithm OID of an X.509 certificate (DER), or null if unreadable. */
export function certificateSignatureOid(der: Uint8Array): string | null {
  const cert = readTlv(der, 0);
  if (cert === null || cert.tag !== 0x30) return null;
  const tbs = readTlv(der, cert.start);
  if (tbs === null || tbs.tag !== 0x30) return null;
  const alg = readTlv(der, tbs.end);
  if (alg === null || alg.tag !== 0x30) return null;
  const oid = readTlv(der, alg.start);
  if (oid === null || oid.tag !== 0x06) return null;
  return oidToString(der.subarray(oid.start, oid.end));
}

/** RFC 5929 tls-server-end-point data for a server certificate (DER), or null when it has none. */
export function tlsServerEndPoint(der: Uint8Array): Uint8Array | null {
  const oid = certificateSignatureOid(der);
  if (oid === null) return null;
  const hash = SIGNATURE_HASH[oid];
  if (hash === undefined) return null;
  return new Uint8Array(createHash(hash).update(der).digest());
}
