// A TLS server for the boot test's proxy checks, with a CA of its own (made
// by the app's CA code). Answers `upstream-ok auth=none|injected|other`:
// `injected` when Authorization is `Bearer $SMOKE_SECRET` (the gateway masks
// an echoed secret on the way back, so the server compares, not echoes).
// usage: SMOKE_SECRET=... bun upstream.ts DIR PORT HOSTNAME [BIND]
// (writes DIR/ca.crt, then DIR/ready; BIND defaults to 127.0.0.1)
import { writeFileSync } from "node:fs";
import path from "node:path";
import { loadOrCreateCA } from "../../../app/tls/ca.ts";
import { ECDSA_SHA256, P256_KEY_ALGORITHM, privateKeyToPem, randomSerialHex, x509 } from "../../../app/tls/pki.ts";

const [dir, portText, host, bind = "127.0.0.1"] = process.argv.slice(2);
if (!dir || !portText || !host) throw new Error("usage: upstream.ts DIR PORT HOSTNAME");
const ca = await loadOrCreateCA(dir, { commonName: "smoke upstream CA" });
const keys = await crypto.subtle.generateKey(P256_KEY_ALGORITHM, true, ["sign", "verify"]);
const now = Date.now();
const cert = await x509.X509CertificateGenerator.create({
  serialNumber: randomSerialHex(),
  subject: [{ CN: [host] }],
  issuer: ca.certificate.subjectName,
  notBefore: new Date(now - 3_600_000),
  notAfter: new Date(now + 86_400_000),
  signingAlgorithm: ECDSA_SHA256,
  publicKey: keys.publicKey,
  signingKey: ca.privateKey,
  extensions: [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    new x509.SubjectAlternativeNameExtension([{ type: "dns", value: host }]),
    new x509.AuthorityKeyIdentifierExtension(ca.keyIdentifier),
  ],
});
Bun.serve({
  hostname: bind,
  port: Number(portText),
  tls: { cert: `${cert.toString("pem")}\n${ca.certPem}`, key: await privateKeyToPem(keys.privateKey) },
  fetch(req) {
    const auth = req.headers.get("authorization");
    const secret = process.env.SMOKE_SECRET;
    const verdict = auth === null ? "none" : secret && auth === `Bearer ${secret}` ? "injected" : "other";
    return new Response(`upstream-ok auth=${verdict}\n`);
  },
});
writeFileSync(path.join(dir, "ready"), "1\n");
