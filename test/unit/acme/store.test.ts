// What ACME keeps in the state directory: the account key survives a
// restart (same JWK, so the same account), key files are 0600, and only a
// pair that matches, names the host and is within its validity is served.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { certificateRequest } from "../../../app/acme/csr.ts";
import { ACCOUNT_KEY_FILE, ACME_CERT_FILE, ACME_KEY_FILE, acmeDir, loadAcmeCertificate, loadOrCreateAccountKey, saveAcmeCertificate } from "../../../app/acme/store.ts";
import { loadOrCreateCA } from "../../../app/tls/ca.ts";
import { issueServerCertificate, x509 } from "../../../app/tls/pki.ts";

const HOUR = 3600_000;
const made: string[] = [];
const stateDir = () => {
  const d = mkdtempSync(path.join(os.tmpdir(), "clawpatrol-acme-store-"));
  made.push(d);
  return d;
};
afterAll(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

/** A chain for `names` over the CSR's key, signed by a throwaway CA (what an ACME CA returns, in shape). */
async function issued(dir: string, names: string[], notBefore: number, notAfter: number) {
  const { csrDer, keyPem } = await certificateRequest(names);
  const csr = new x509.Pkcs10CertificateRequest(csrDer);
  const ca = await loadOrCreateCA(path.join(dir, "ca"));
  const publicKey = await csr.publicKey.export();
  const leaf = await issueServerCertificate({ ca, names, notBefore: new Date(notBefore), notAfter: new Date(notAfter), publicKey, subjectKeyIdentifier: await x509.SubjectKeyIdentifierExtension.create(publicKey) });
  return { certPem: `${leaf.toString("pem")}\n${ca.certPem}`, keyPem, csr };
}

test("the account key is created once, 0600, and loads back as the same JWK", async () => {
  const dir = stateDir();
  const a = await loadOrCreateAccountKey(dir);
  expect(statSync(path.join(acmeDir(dir), ACCOUNT_KEY_FILE)).mode & 0o777).toBe(0o600);
  expect(statSync(acmeDir(dir)).mode & 0o777).toBe(0o700);
  const b = await loadOrCreateAccountKey(dir);
  expect(b.jwk).toEqual(a.jwk);
});

test("the CSR names the host as CN and dNSName", async () => {
  const { csrDer } = await certificateRequest(["gw.example.com"]);
  const csr = new x509.Pkcs10CertificateRequest(csrDer);
  expect(csr.subject).toBe("CN=gw.example.com");
  // By OID: a CSR's extensions come from its extensionRequest attribute, which the class lookup does not match.
  const san = csr.getExtension("2.5.29.17") as x509.SubjectAlternativeNameExtension;
  expect(san.names.items.map((n) => [n.type, n.value])).toEqual([["dns", "gw.example.com"]]);
  expect(await csr.verify()).toBe(true);
});

test("a saved pair is served while valid for the host; not for another host, before or after its validity", async () => {
  const dir = stateDir();
  const now = Date.now();
  const c = await issued(dir, ["gw.example.com"], now - HOUR, now + HOUR);
  saveAcmeCertificate(dir, c.certPem, c.keyPem);
  expect(statSync(path.join(acmeDir(dir), ACME_KEY_FILE)).mode & 0o777).toBe(0o600);
  const got = loadAcmeCertificate(dir, "gw.example.com", now);
  expect(got?.names).toEqual(["gw.example.com"]);
  expect(got?.notAfter).toBe(Math.floor((now + HOUR) / 1000) * 1000);
  expect(loadAcmeCertificate(dir, "other.example.com", now)).toBeUndefined();
  expect(loadAcmeCertificate(dir, "gw.example.com", now + 2 * HOUR)).toBeUndefined();
  expect(loadAcmeCertificate(dir, "gw.example.com", now - 2 * HOUR)).toBeUndefined();
});

test("a key that is not the certificate's (a crash between the two renames) is not served", async () => {
  const dir = stateDir();
  const now = Date.now();
  const c = await issued(dir, ["gw.example.com"], now - HOUR, now + HOUR);
  const other = await certificateRequest(["gw.example.com"]);
  saveAcmeCertificate(dir, c.certPem, other.keyPem);
  expect(loadAcmeCertificate(dir, "gw.example.com", now)).toBeUndefined();
  writeFileSync(path.join(acmeDir(dir), ACME_CERT_FILE), "garbage");
  expect(loadAcmeCertificate(dir, "gw.example.com", now)).toBeUndefined();
  expect(readFileSync(path.join(acmeDir(dir), ACME_KEY_FILE), "utf8")).toContain("PRIVATE KEY");
});
