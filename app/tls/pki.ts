// The one place @peculiar/x509 is set up: it needs reflect-metadata loaded
// before it and a WebCrypto provider (Bun's global `crypto`). Import x509
// from here, never from the package directly, so the order always holds.
import "reflect-metadata";
import { isIP } from "node:net";
import * as x509 from "@peculiar/x509";
import type { CertificateAuthority } from "./ca.ts";

x509.cryptoProvider.set(crypto);

export { x509 };

export const P256_KEY_ALGORITHM: EcKeyGenParams & EcKeyImportParams = { name: "ECDSA", namedCurve: "P-256" };
export const ECDSA_SHA256: EcdsaParams = { name: "ECDSA", hash: "SHA-256" };

/** A random 16-byte serial (RFC 5280 §4.1.2.2), kept positive and minimal in DER. */
export function randomSerialHex(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0]! & 0x7f) | 0x40; // top bit clear (positive), next set (no leading zero)
  return Buffer.from(bytes).toString("hex");
}

export async function privateKeyToPem(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await crypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

export interface ServerCertificateSpec {
  ca: CertificateAuthority;
  /** DNS names and IP literals, canonical; the first that is not an IP is the CN. */
  names: readonly string[];
  /** Extra subject attributes after the CN (e.g. O). */
  subjectExtra?: Record<string, string[]>[];
  notBefore: Date;
  notAfter: Date;
  publicKey: CryptoKey;
  subjectKeyIdentifier: x509.SubjectKeyIdentifierExtension;
}

/** A TLS server certificate the CA signs for `names` (SANs), as the interception leaves and the dashboard's are. */
export function issueServerCertificate(s: ServerCertificateSpec): Promise<x509.X509Certificate> {
  if (s.names.length === 0) throw new TypeError("a server certificate needs at least one name");
  return x509.X509CertificateGenerator.create({
    serialNumber: randomSerialHex(),
    subject: [{ CN: [s.names.find((n) => isIP(n) === 0) ?? s.names[0]!] }, ...(s.subjectExtra ?? [])],
    issuer: s.ca.certificate.subjectName,
    notBefore: s.notBefore,
    notAfter: s.notAfter,
    signingAlgorithm: ECDSA_SHA256,
    publicKey: s.publicKey,
    signingKey: s.ca.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(s.names.map((n) => (isIP(n) ? { type: "ip" as const, value: n } : { type: "dns" as const, value: n }))),
      new x509.AuthorityKeyIdentifierExtension(s.ca.keyIdentifier),
      s.subjectKeyIdentifier,
    ],
  });
}
