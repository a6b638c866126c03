// The update bundle: what `make bundle` writes and `clawpatrol-gateway
// update` accepts.
//
//   "CPUP1\n" <header JSON> "\n" <payload: a tar.gz of the app tree>
//
// The header names the version, the payload's SHA-256 and an Ed25519
// signature over `clawpatrol bundle v1 \0 version \0 sha256` by a key whose
// public half the appliance trusts (`keyId` is the first 16 hex digits of
// the SHA-256 of its raw public key). A bundle is accepted only when the
// payload matches its checksum and the signature verifies under a trusted
// key: checksum first (a damaged download), then signature (a forged one).
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";

const MAGIC = "CPUP1\n";

export class BundleError extends Error {
  override name = "BundleError";
}

export interface BundleHeader {
  version: string;
  created: string;
  payloadSha256: string;
  keyId: string;
  signature: string;
}

const VERSION_RE = /^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$/;

const signedText = (version: string, sha: string) => Buffer.from(`clawpatrol bundle v1\0${version}\0${sha}`);

export function keyIdOf(pub: KeyObject): string {
  const raw = pub.export({ format: "der", type: "spki" });
  return createHash("sha256").update(raw).digest("hex").slice(0, 16);
}

/** A new signing key pair, PEM (PKCS#8 private, SPKI public). */
export function newSigningKey(): { privatePem: string; publicPem: string; keyId: string } {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return {
    privatePem: privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
    publicPem: publicKey.export({ format: "pem", type: "spki" }).toString(),
    keyId: keyIdOf(publicKey),
  };
}

export function packBundle(version: string, payload: Buffer, privatePem: string, now = Date.now()): Buffer {
  if (!VERSION_RE.test(version)) throw new BundleError(`version ${JSON.stringify(version)} must be 1-64 of 0-9 A-Z a-z . + _ -`);
  const key = createPrivateKey(privatePem);
  const sha = createHash("sha256").update(payload).digest("hex");
  const header: BundleHeader = {
    version,
    created: new Date(now).toISOString(),
    payloadSha256: sha,
    keyId: keyIdOf(createPublicKey(key)),
    signature: sign(null, signedText(version, sha), key).toString("base64"),
  };
  return Buffer.concat([Buffer.from(MAGIC), Buffer.from(JSON.stringify(header)), Buffer.from("\n"), payload]);
}

/** The header and payload of a bundle whose checksum and signature hold; else a BundleError saying which failed. */
export function openBundle(bundle: Buffer, trustedPublicPems: readonly string[]): { header: BundleHeader; payload: Buffer } {
  if (bundle.subarray(0, MAGIC.length).toString("latin1") !== MAGIC) throw new BundleError("not a clawpatrol bundle");
  const nl = bundle.indexOf(0x0a, MAGIC.length);
  if (nl < 0) throw new BundleError("not a clawpatrol bundle (no header)");
  let header: BundleHeader;
  try {
    header = JSON.parse(bundle.subarray(MAGIC.length, nl).toString("utf8")) as BundleHeader;
  } catch {
    throw new BundleError("not a clawpatrol bundle (a damaged header)");
  }
  if (typeof header.version !== "string" || !VERSION_RE.test(header.version) || typeof header.payloadSha256 !== "string" || typeof header.signature !== "string") {
    throw new BundleError("the bundle's header is incomplete");
  }
  const payload = bundle.subarray(nl + 1);
  if (createHash("sha256").update(payload).digest("hex") !== header.payloadSha256) {
    throw new BundleError("checksum mismatch: the bundle is damaged or cut short");
  }
  const keys = trustedPublicPems.map((p) => createPublicKey(p));
  if (keys.length === 0) throw new BundleError("no trusted update keys are configured");
  const sig = Buffer.from(header.signature, "base64");
  const ok = keys.some((k) => {
    try {
      return verify(null, signedText(header.version, header.payloadSha256), k, sig);
    } catch {
      return false;
    }
  });
  if (!ok) throw new BundleError(`bad signature: not signed by a trusted update key (key id ${String(header.keyId)})`);
  return { header, payload: Buffer.from(payload) };
}
