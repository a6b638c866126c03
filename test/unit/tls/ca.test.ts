import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { CaFileError, loadOrCreateCA, type CertificateAuthority } from "../../../app/tls/ca.ts";
import { x509 } from "../../../app/tls/pki.ts";

const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);
const DAY = 24 * 60 * 60 * 1000;
const hasOpenssl = spawnSync("openssl", ["version"]).status === 0;

let root: string;
beforeAll(() => {
  root = mkdtempSync(path.join(os.tmpdir(), "clawpatrol-ca-"));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

let dirs = 0;
const freshDir = () => path.join(root, `state-${++dirs}`, "nested");
const mode = (file: string) => statSync(file).mode & 0o777;

async function expectCaFileError(promise: Promise<unknown>, file: string, problem: RegExp): Promise<void> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(CaFileError);
  expect((error as CaFileError).file).toBe(file);
  expect((error as CaFileError).message).toContain(file);
  expect((error as CaFileError).message).toMatch(problem);
}

describe("first start creates the CA", () => {
  let dir: string;
  let ca: CertificateAuthority;
  beforeAll(async () => {
    dir = freshDir();
    ca = await loadOrCreateCA(dir, { now: () => NOW, commonName: "clawpatrol CA (test-host)" });
  });

  test("files and directory get their modes; no temp files are left", () => {
    expect(mode(dir)).toBe(0o700);
    expect(mode(path.join(dir, "ca.key"))).toBe(0o600);
    expect(mode(path.join(dir, "ca.crt"))).toBe(0o644);
    expect(readdirSync(dir).sort()).toEqual(["ca.crt", "ca.key"]);
  });

  test("ca.crt holds certPem; ca.key is a PKCS#8 PEM", () => {
    expect(readFileSync(path.join(dir, "ca.crt"), "utf8")).toBe(ca.certPem);
    const keyPem = readFileSync(path.join(dir, "ca.key"), "utf8");
    expect(keyPem).toStartWith("-----BEGIN PRIVATE KEY-----");
  });

  test("a self-signed P-256 CA with the asked-for name, constraints and validity", async () => {
    const cert = new x509.X509Certificate(ca.certPem);
    expect(cert.subject).toBe("CN=clawpatrol CA (test-host), O=clawpatrol");
    expect(cert.issuer).toBe(cert.subject);
    expect(await cert.verify({ publicKey: cert.publicKey, signatureOnly: true })).toBe(true);
    expect(cert.publicKey.algorithm).toMatchObject({ name: "ECDSA", namedCurve: "P-256" });

    const constraints = cert.getExtension(x509.BasicConstraintsExtension)!;
    expect(constraints.ca).toBe(true);
    expect(constraints.critical).toBe(true);
    const usages = cert.getExtension(x509.KeyUsagesExtension)!;
    expect(usages.usages).toBe(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    expect(usages.critical).toBe(true);
    expect(cert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId).toBe(ca.keyIdentifier);

    expect(cert.notBefore.getTime()).toBe(NOW - 60 * 60 * 1000);
    expect(cert.notAfter.getTime()).toBe(NOW + 3650 * DAY);
    // Positive 16-byte serial.
    expect(cert.serialNumber).toMatch(/^[0-7][0-9a-f]{31}$/);
  });

  test("the default common name names this host", async () => {
    const other = await loadOrCreateCA(freshDir());
    expect(other.certificate.subject).toBe(`CN=clawpatrol CA (${os.hostname()}), O=clawpatrol`);
  });

  test.skipIf(!hasOpenssl)("openssl reads it as a critical CA:TRUE with certificate and CRL signing", () => {
    const out = spawnSync("openssl", ["x509", "-noout", "-text", "-in", path.join(dir, "ca.crt")], { encoding: "utf8" });
    expect(out.status).toBe(0);
    expect(out.stdout).toMatch(/Basic Constraints: critical\s+CA:TRUE/);
    expect(out.stdout).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(out.stdout).toContain("NIST CURVE: P-256");
    const key = spawnSync("openssl", ["pkey", "-noout", "-in", path.join(dir, "ca.key")]);
    expect(key.status).toBe(0);
  });

  test("a later start loads the same CA, and its key signs for the same public key", async () => {
    const again = await loadOrCreateCA(dir, { now: () => NOW + DAY });
    expect(again.certPem).toBe(ca.certPem);
    expect(again.keyIdentifier).toBe(ca.keyIdentifier);
    const message = new TextEncoder().encode("probe");
    const alg = { name: "ECDSA", hash: "SHA-256" };
    const signature = await crypto.subtle.sign(alg, again.privateKey, message);
    expect(await crypto.subtle.verify(alg, ca.publicKey, signature, message)).toBe(true);
    expect(readdirSync(dir).sort()).toEqual(["ca.crt", "ca.key"]);
  });
});

test("two starts racing on an empty directory end with one CA", async () => {
  const dir = freshDir();
  const [a, b, c] = await Promise.all([loadOrCreateCA(dir), loadOrCreateCA(dir), loadOrCreateCA(dir)]);
  expect(b.certPem).toBe(a.certPem);
  expect(c.certPem).toBe(a.certPem);
  expect((await loadOrCreateCA(dir)).certPem).toBe(a.certPem);
  expect(readdirSync(dir).sort()).toEqual(["ca.crt", "ca.key"]);
});

describe("a damaged pair is an error naming the file, never regenerated", () => {
  async function pairIn(): Promise<{ dir: string; certFile: string; keyFile: string }> {
    const dir = freshDir();
    await loadOrCreateCA(dir);
    return { dir, certFile: path.join(dir, "ca.crt"), keyFile: path.join(dir, "ca.key") };
  }

  test("a corrupt key", async () => {
    const { dir, keyFile } = await pairIn();
    writeFileSync(keyFile, "-----BEGIN PRIVATE KEY-----\nnot base64 at all!!\n-----END PRIVATE KEY-----\n");
    await expectCaFileError(loadOrCreateCA(dir), keyFile, /not a PKCS#8 P-256 private key/);
    expect(readFileSync(keyFile, "utf8")).toContain("not base64 at all");
  });

  test("a truncated key", async () => {
    const { dir, keyFile } = await pairIn();
    writeFileSync(keyFile, readFileSync(keyFile, "utf8").slice(0, 60));
    await expectCaFileError(loadOrCreateCA(dir), keyFile, /private key/);
  });

  test("an empty key file", async () => {
    const { dir, keyFile } = await pairIn();
    writeFileSync(keyFile, "");
    await expectCaFileError(loadOrCreateCA(dir), keyFile, /private key/);
  });

  test("a certificate in place of the key", async () => {
    const { dir, keyFile, certFile } = await pairIn();
    writeFileSync(keyFile, readFileSync(certFile));
    await expectCaFileError(loadOrCreateCA(dir), keyFile, /private key/);
  });

  test("a corrupt certificate", async () => {
    const { dir, certFile } = await pairIn();
    const pem = readFileSync(certFile, "utf8");
    writeFileSync(certFile, pem.slice(0, pem.length / 2));
    await expectCaFileError(loadOrCreateCA(dir), certFile, /not a PEM certificate/);
  });

  test("a key from another CA", async () => {
    const { dir, keyFile } = await pairIn();
    const other = await pairIn();
    writeFileSync(keyFile, readFileSync(other.keyFile));
    await expectCaFileError(loadOrCreateCA(dir), keyFile, /does not match the certificate/);
  });

  test("the key without its certificate", async () => {
    const { dir, certFile, keyFile } = await pairIn();
    const key = readFileSync(keyFile, "utf8");
    unlinkSync(certFile);
    await expectCaFileError(loadOrCreateCA(dir), certFile, /missing, but ca.key exists/);
    expect(readFileSync(keyFile, "utf8")).toBe(key);
  });

  test("the certificate without its key", async () => {
    const { dir, certFile, keyFile } = await pairIn();
    unlinkSync(keyFile);
    await expectCaFileError(loadOrCreateCA(dir), keyFile, /missing, but ca.crt exists/);
    expect(readdirSync(dir)).toEqual(["ca.crt"]);
  });

  test("a certificate that is not a CA", async () => {
    const { dir, certFile } = await pairIn();
    const keys = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
    const leaf = await x509.X509CertificateGenerator.createSelfSigned({ name: "CN=leaf", keys });
    writeFileSync(certFile, leaf.toString("pem"));
    await expectCaFileError(loadOrCreateCA(dir), certFile, /not a CA certificate/);
  });
});
