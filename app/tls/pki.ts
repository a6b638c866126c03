// The one place @peculiar/x509 is set up: it needs reflect-metadata loaded
// before it and a WebCrypto provider (Bun's global `crypto`). Import x509
// from here, never from the package directly, so the order always holds.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";

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
