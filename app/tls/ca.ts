// The interception CA: the certificate agents' devices trust so the gateway
// can mint leaves for the hosts it terminates.
//
//   1. Look for ca.crt and ca.key in the state directory.
//   2. Neither there: create a P-256 CA and write both (key 0600, written
//      to a temp file and linked into place so it never appears half-written
//      and never replaces a key someone else wrote meanwhile).
//   3. Both there: load them and check they belong together.
//   4. Anything else (one file missing, unreadable, unparsable, a mismatch):
//      a CaFileError naming the file. The key is never regenerated over an
//      existing file: devices already trust the certificate that goes with it.
import { randomBytes } from "node:crypto";
import { link, mkdir, open, readFile, unlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { ECDSA_SHA256, P256_KEY_ALGORITHM, privateKeyToPem, randomSerialHex, x509 } from "./pki.ts";

export const CA_CERT_FILE = "ca.crt";
export const CA_KEY_FILE = "ca.key";
const CA_VALIDITY_DAYS = 3650;
const CLOCK_SKEW_MS = 60 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;
// A second process creating the CA at the same moment wins the key link;
// wait this long for its certificate to land before calling the pair partial.
const CONCURRENT_CREATE_WAIT_MS = 2000;

export interface CertificateAuthority {
  certPem: string;
  certificate: x509.X509Certificate;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  /** The CA's subjectKeyIdentifier (hex), which leaves carry as authorityKeyIdentifier. */
  keyIdentifier: string;
}

export interface CaOptions {
  /** Default: `clawpatrol CA (<hostname>)`. */
  commonName?: string;
  now?: () => number;
}

/** A CA file that exists but cannot be used; `file` is its full path. */
export class CaFileError extends Error {
  constructor(
    readonly file: string,
    problem: string,
  ) {
    super(`${file}: ${problem}`);
    this.name = "CaFileError";
  }
}

export async function loadOrCreateCA(stateDir: string, opts: CaOptions = {}): Promise<CertificateAuthority> {
  const now = opts.now ?? Date.now;
  const certFile = path.join(stateDir, CA_CERT_FILE);
  const keyFile = path.join(stateDir, CA_KEY_FILE);
  await mkdir(stateDir, { recursive: true, mode: 0o700 });

  const [certPem, keyPem] = await Promise.all([readIfExists(certFile), readIfExists(keyFile)]);
  if (certPem !== null && keyPem !== null) return loadCA(certFile, certPem, keyFile, keyPem);
  if (keyPem !== null) {
    throw new CaFileError(certFile, `missing, but ${CA_KEY_FILE} exists; restore it or remove both to create a new CA`);
  }
  if (certPem !== null) {
    throw new CaFileError(keyFile, `missing, but ${CA_CERT_FILE} exists; restore it or remove both to create a new CA`);
  }

  const created = await createCA(opts.commonName ?? `clawpatrol CA (${os.hostname()})`, now());
  if (await writeCAFiles(created, certFile, keyFile)) return created.ca;
  return waitForOtherCreator(certFile, keyFile);
}

async function loadCA(certFile: string, certPem: string, keyFile: string, keyPem: string): Promise<CertificateAuthority> {
  let certificate: x509.X509Certificate;
  try {
    certificate = new x509.X509Certificate(certPem);
  } catch (e) {
    throw new CaFileError(certFile, `not a PEM certificate (${describe(e)})`);
  }
  const constraints = certificate.getExtension(x509.BasicConstraintsExtension);
  if (!constraints?.ca) throw new CaFileError(certFile, "not a CA certificate (basicConstraints CA:true missing)");

  let privateKey: CryptoKey;
  try {
    if (!/-----BEGIN PRIVATE KEY-----/.test(keyPem)) throw new Error("no PKCS#8 PRIVATE KEY block");
    const der = x509.PemConverter.decodeFirst(keyPem);
    privateKey = await crypto.subtle.importKey("pkcs8", der, P256_KEY_ALGORITHM, false, ["sign"]);
  } catch (e) {
    throw new CaFileError(keyFile, `not a PKCS#8 P-256 private key (${describe(e)})`);
  }

  let publicKey: CryptoKey;
  try {
    publicKey = await certificate.publicKey.export(P256_KEY_ALGORITHM, ["verify"]);
  } catch (e) {
    throw new CaFileError(certFile, `certificate key is not P-256 ECDSA (${describe(e)})`);
  }
  // Prove the pair belongs together before minting anything with it.
  const probe = randomBytes(32);
  const signature = await crypto.subtle.sign(ECDSA_SHA256, privateKey, probe);
  if (!(await crypto.subtle.verify(ECDSA_SHA256, publicKey, signature, probe))) {
    throw new CaFileError(keyFile, `does not match the certificate in ${certFile}`);
  }

  const ski = certificate.getExtension(x509.SubjectKeyIdentifierExtension);
  const keyIdentifier = ski?.keyId ?? (await x509.SubjectKeyIdentifierExtension.create(publicKey)).keyId;
  return { certPem: certificate.toString("pem"), certificate, privateKey, publicKey, keyIdentifier };
}

async function createCA(commonName: string, nowMs: number): Promise<{ ca: CertificateAuthority; keyPem: string }> {
  const keys = await crypto.subtle.generateKey(P256_KEY_ALGORITHM, true, ["sign", "verify"]);
  const ski = await x509.SubjectKeyIdentifierExtension.create(keys.publicKey);
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialHex(),
    // JSON form: a hostname with `,` or `=` cannot inject DN attributes.
    name: [{ CN: [commonName] }, { O: ["clawpatrol"] }],
    notBefore: new Date(nowMs - CLOCK_SKEW_MS),
    notAfter: new Date(nowMs + CA_VALIDITY_DAYS * DAY_MS),
    signingAlgorithm: ECDSA_SHA256,
    keys,
    extensions: [
      // pathLength 0: this CA signs leaves only, never another CA.
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      ski,
    ],
  });
  const ca: CertificateAuthority = {
    certPem: certificate.toString("pem"),
    certificate,
    privateKey: keys.privateKey,
    publicKey: keys.publicKey,
    keyIdentifier: ski.keyId,
  };
  return { ca, keyPem: await privateKeyToPem(keys.privateKey) };
}

/**
 * Writes the pair; false when another process put a key in place first
 * (ours is then discarded, never written over theirs).
 */
async function writeCAFiles(
  created: { ca: CertificateAuthority; keyPem: string },
  certFile: string,
  keyFile: string,
): Promise<boolean> {
  // Both temps first, so the window between the two links is one syscall.
  const keyTemp = await writeTemp(keyFile, created.keyPem, 0o600);
  const certTemp = await writeTemp(certFile, created.ca.certPem, 0o644).catch(async (e: unknown) => {
    await unlink(keyTemp).catch(() => {});
    throw e;
  });
  try {
    try {
      await link(keyTemp, keyFile); // fails with EEXIST instead of replacing
    } catch (e) {
      if (errorCode(e) === "EEXIST") return false;
      throw e;
    }
    await link(certTemp, certFile);
  } finally {
    await unlink(keyTemp).catch(() => {});
    await unlink(certTemp).catch(() => {});
  }
  await syncDirectory(path.dirname(keyFile));
  return true;
}

/** Writes `data` to a fresh temp file beside `target` with `mode`, flushed to disk. */
async function writeTemp(target: string, data: string, mode: number): Promise<string> {
  const temp = `${target}.tmp-${process.pid}-${randomBytes(6).toString("hex")}`;
  const handle = await open(temp, "wx", mode);
  try {
    await handle.chmod(mode); // the umask may have narrowed `mode`; say it exactly
    await handle.writeFile(data);
    await handle.sync();
  } catch (e) {
    await handle.close();
    await unlink(temp).catch(() => {});
    throw e;
  }
  await handle.close();
  return temp;
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r").catch(() => null);
  if (handle === null) return;
  await handle.sync().catch(() => {}); // best effort: not every filesystem allows it
  await handle.close();
}

async function waitForOtherCreator(certFile: string, keyFile: string): Promise<CertificateAuthority> {
  const deadline = Date.now() + CONCURRENT_CREATE_WAIT_MS;
  for (;;) {
    const [certPem, keyPem] = await Promise.all([readIfExists(certFile), readIfExists(keyFile)]);
    if (certPem !== null && keyPem !== null) return loadCA(certFile, certPem, keyFile, keyPem);
    if (Date.now() > deadline) {
      throw new CaFileError(certFile, `missing, but ${CA_KEY_FILE} exists; restore it or remove both to create a new CA`);
    }
    await Bun.sleep(20);
  }
}

async function readIfExists(file: string): Promise<string | null> {
  try {
    return await readFile(file, "utf8");
  } catch (e) {
    if (errorCode(e) === "ENOENT") return null;
    throw new CaFileError(file, `cannot be read (${describe(e)})`);
  }
}

function errorCode(e: unknown): string | undefined {
  return typeof e === "object" && e !== null && "code" in e ? String((e as { code: unknown }).code) : undefined;
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
