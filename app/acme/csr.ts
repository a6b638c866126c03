// A fresh P-256 key and the PKCS#10 request that finalizes an order
// (RFC 8555 §7.4): the names as subjectAltName dNSNames, the first as CN.
import { ECDSA_SHA256, P256_KEY_ALGORITHM, privateKeyToPem, x509 } from "../tls/pki.ts";

export async function certificateRequest(names: string[]): Promise<{ csrDer: Uint8Array<ArrayBuffer>; keyPem: string }> {
  if (names.length === 0) throw new TypeError("a certificate request needs a name");
  const keys = await crypto.subtle.generateKey(P256_KEY_ALGORITHM, true, ["sign", "verify"]);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: [{ CN: [names[0]!] }],
    keys,
    signingAlgorithm: ECDSA_SHA256,
    extensions: [new x509.SubjectAlternativeNameExtension(names.map((value) => ({ type: "dns" as const, value })))],
  });
  return { csrDer: new Uint8Array(csr.rawData), keyPem: await privateKeyToPem(keys.privateKey) };
}
