// What ACME keeps in the state directory, beside the CA (same practice: PEM
// files, private keys mode 0600, written to a temp file and renamed so a
// reader never sees half a file):
//   acme/account.key   the account's ES256 key (PKCS#8); losing it only
//                      means registering a new account
//   acme/dashboard.key the served certificate's key, written before
//   acme/dashboard.crt the chain the CA issued (leaf first)
import { mkdirSync, readFileSync } from "node:fs";
import { writeAtomically } from "../store/write-atomically.ts";
import path from "node:path";
import nodeTls from "node:tls";
import { canonicalLeafName } from "../tls/leaf.ts";
import { P256_KEY_ALGORITHM, privateKeyToPem, x509 } from "../tls/pki.ts";
import { publicJwk, type JwsSigner } from "./jws.ts";

export const ACME_DIR = "acme";
export const ACCOUNT_KEY_FILE = "account.key";
export const ACME_CERT_FILE = "dashboard.crt";
export const ACME_KEY_FILE = "dashboard.key";

export function acmeDir(stateDir: string): string {
  return path.join(stateDir, ACME_DIR);
}

/** The account key on disk, or a new one written there. */
export async function loadOrCreateAccountKey(stateDir: string): Promise<JwsSigner> {
  const file = path.join(acmeDir(stateDir), ACCOUNT_KEY_FILE);
  let pem: string | undefined;
  try {
    pem = readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  if (pem === undefined) {
    const keys = await crypto.subtle.generateKey(P256_KEY_ALGORITHM, true, ["sign", "verify"]);
    mkdirSync(acmeDir(stateDir), { recursive: true, mode: 0o700 });
    writeAtomically(file, await privateKeyToPem(keys.privateKey), 0o600);
    return { privateKey: keys.privateKey, jwk: await publicJwk(keys.publicKey) };
  }
  const privateKey = await crypto.subtle.importKey("pkcs8", x509.PemConverter.decodeFirst(pem), P256_KEY_ALGORITHM, true, ["sign"]);
  // The public half from the private JWK (d dropped): WebCrypto has no direct derivation.
  const { d: _d, key_ops: _ops, ...pub } = await crypto.subtle.exportKey("jwk", privateKey);
  const publicKey = await crypto.subtle.importKey("jwk", { ...pub, ext: true }, P256_KEY_ALGORITHM, true, ["verify"]);
  return { privateKey, jwk: await publicJwk(publicKey) };
}

export interface AcmeCertificate {
  certPem: string;
  keyPem: string;
  names: string[];
  notBefore: number;
  notAfter: number;
  issuer: string;
}

/** Reads and checks a chain and its key: parses, the key matches the leaf. Throws otherwise. */
export function inspectPair(certPem: string, keyPem: string): AcmeCertificate {
  nodeTls.createSecureContext({ cert: certPem, key: keyPem }); // throws on a key that is not the leaf's
  const leaf = new x509.X509Certificate(certPem);
  const san = leaf.getExtension(x509.SubjectAlternativeNameExtension);
  const names = (san?.names.items ?? []).filter((n) => n.type === "dns").map((n) => canonicalLeafName(n.value) ?? n.value);
  return { certPem, keyPem, names, notBefore: leaf.notBefore.getTime(), notAfter: leaf.notAfter.getTime(), issuer: leaf.issuer };
}

/** The certificate an ACME CA issued earlier, when it is still usable for `host` at `now`; undefined otherwise. */
export function loadAcmeCertificate(stateDir: string, host: string, now: number): AcmeCertificate | undefined {
  let c: AcmeCertificate;
  try {
    c = inspectPair(readFileSync(path.join(acmeDir(stateDir), ACME_CERT_FILE), "utf8"), readFileSync(path.join(acmeDir(stateDir), ACME_KEY_FILE), "utf8"));
  } catch {
    return undefined; // none yet, or a damaged pair: a new one is ordered
  }
  if (!c.names.includes(host) || now >= c.notAfter || now < c.notBefore) return undefined;
  return c;
}

/** Key first: a crash between the renames leaves a pair whose key does not match, which inspectPair refuses. */
export function saveAcmeCertificate(stateDir: string, certPem: string, keyPem: string): void {
  mkdirSync(acmeDir(stateDir), { recursive: true, mode: 0o700 });
  writeAtomically(path.join(acmeDir(stateDir), ACME_KEY_FILE), keyPem, 0o600);
  writeAtomically(path.join(acmeDir(stateDir), ACME_CERT_FILE), certPem, 0o644);
}
