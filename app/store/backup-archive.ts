// The backup archive's format, without file-system access:
//
//   plain:     "CPBK1\n" <manifest JSON> "\n" <file bytes, in manifest order>
//   encrypted: "CPBKE1\n" <envelope JSON> "\n" <AES-256-GCM ciphertext of a plain archive> <16-byte tag>
//
// The manifest lists each file's name, size and SHA-256, and whether it is
// sealed: private keys (the CA's, WireGuard's) are stored encrypted under
// the master key (AES-256-GCM, the file name as additional data) unless the
// master key itself is in the archive, and then the whole archive is
// encrypted under a passphrase (scrypt). `keyCheck` (an HMAC of a fixed
// text under the master key) tells at restore whether a key offered is the
// one the archive was made with, without decrypting anything.
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, scryptSync, timingSafeEqual } from "node:crypto";

const PLAIN_MAGIC = "CPBK1\n";
const ENCRYPTED_MAGIC = "CPBKE1\n";
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
/** scrypt cost: 2^15 × 8 × 128 B = 32 MiB and ~0.1 s here; the envelope records it. */
const SCRYPT = { N: 1 << 15, r: 8, p: 1 };

export class BackupError extends Error {
  override name = "BackupError";
}

export interface ArchiveFile {
  name: string;
  data: Buffer;
  /** Encrypted under the master key (see seal/unseal). */
  sealed: boolean;
}

export interface Manifest {
  format: "clawpatrol-backup";
  version: 1;
  created: string;
  /** The gateway version that wrote it. */
  gateway: string;
  /** The CA certificate's SHA-256 (what devices pin). */
  caSha256: string;
  includesMasterKey: boolean;
  keyCheck: string;
  files: { name: string; size: number; sha256: string; sealed: boolean }[];
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

export function keyCheckOf(masterKey: Buffer): string {
  return createHmac("sha256", masterKey).update("clawpatrol backup key check v1").digest("hex");
}

export function keyMatches(manifest: Manifest, masterKey: Buffer): boolean {
  const a = Buffer.from(keyCheckOf(masterKey), "hex");
  const b = Buffer.from(manifest.keyCheck, "hex");
  return a.length === b.length && timingSafeEqual(a, b);
}

/** A private key file encrypted under the master key, bound to its name. */
export function seal(masterKey: Buffer, name: string, data: Buffer): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const c = createCipheriv("aes-256-gcm", masterKey, nonce);
  c.setAAD(Buffer.from(`clawpatrol backup file\0${name}`));
  const body = Buffer.concat([c.update(data), c.final()]);
  return Buffer.concat([nonce, body, c.getAuthTag()]);
}

export function unseal(masterKey: Buffer, name: string, sealed: Buffer): Buffer {
  if (sealed.length < NONCE_BYTES + TAG_BYTES) throw new BackupError(`${name}: sealed data is too short`);
  const d = createDecipheriv("aes-256-gcm", masterKey, sealed.subarray(0, NONCE_BYTES));
  d.setAAD(Buffer.from(`clawpatrol backup file\0${name}`));
  d.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  try {
    return Buffer.concat([d.update(sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES)), d.final()]);
  } catch {
    throw new BackupError(`${name}: cannot be decrypted with this master key`);
  }
}

export function packArchive(meta: Omit<Manifest, "format" | "version" | "files">, files: readonly ArchiveFile[]): Buffer {
  const manifest: Manifest = {
    format: "clawpatrol-backup",
    version: 1,
    ...meta,
    files: files.map((f) => ({ name: f.name, size: f.data.length, sha256: sha256(f.data), sealed: f.sealed })),
  };
  return Buffer.concat([Buffer.from(PLAIN_MAGIC), Buffer.from(JSON.stringify(manifest)), Buffer.from("\n"), ...files.map((f) => f.data)]);
}

function headerLine(buf: Buffer, magic: string): { json: unknown; rest: Buffer } {
  const start = magic.length;
  const nl = buf.indexOf(0x0a, start);
  if (nl < 0) throw new BackupError("not a clawpatrol backup (no header)");
  let json: unknown;
  try {
    json = JSON.parse(buf.subarray(start, nl).toString("utf8"));
  } catch {
    throw new BackupError("not a clawpatrol backup (a damaged header)");
  }
  return { json, rest: buf.subarray(nl + 1) };
}

export function isEncrypted(buf: Buffer): boolean {
  return buf.subarray(0, ENCRYPTED_MAGIC.length).toString("latin1") === ENCRYPTED_MAGIC;
}

/** The manifest and the files, each checked against its size and SHA-256. */
export function unpackArchive(buf: Buffer): { manifest: Manifest; files: ArchiveFile[] } {
  if (isEncrypted(buf)) throw new BackupError("this backup is encrypted: give its passphrase");
  if (buf.subarray(0, PLAIN_MAGIC.length).toString("latin1") !== PLAIN_MAGIC) throw new BackupError("not a clawpatrol backup");
  const { json, rest } = headerLine(buf, PLAIN_MAGIC);
  const m = json as Manifest;
  if (m?.format !== "clawpatrol-backup" || m.version !== 1 || !Array.isArray(m.files)) throw new BackupError("not a clawpatrol backup of a version this gateway reads");
  const files: ArchiveFile[] = [];
  let off = 0;
  for (const f of m.files) {
    if (!/^[A-Za-z0-9_.-]+$/.test(f.name) || f.name.startsWith(".")) throw new BackupError(`the backup names a file "${f.name}" it may not`);
    const data = rest.subarray(off, off + f.size);
    off += f.size;
    if (data.length !== f.size || sha256(data) !== f.sha256) throw new BackupError(`${f.name} is damaged or cut short in the backup`);
    files.push({ name: f.name, data: Buffer.from(data), sealed: f.sealed });
  }
  if (off !== rest.length) throw new BackupError("the backup has bytes after its last file");
  return { manifest: m, files };
}

export function encryptArchive(plain: Buffer, passphrase: string): Buffer {
  const salt = randomBytes(16);
  const nonce = randomBytes(NONCE_BYTES);
  const key = scryptSync(passphrase.normalize("NFC"), salt, 32, { ...SCRYPT, maxmem: 64 * 1024 * 1024 });
  const envelope = { kdf: "scrypt", ...SCRYPT, salt: salt.toString("base64"), nonce: nonce.toString("base64"), cipher: "aes-256-gcm" };
  const c = createCipheriv("aes-256-gcm", key, nonce);
  const head = Buffer.concat([Buffer.from(ENCRYPTED_MAGIC), Buffer.from(JSON.stringify(envelope)), Buffer.from("\n")]);
  c.setAAD(head);
  return Buffer.concat([head, c.update(plain), c.final(), c.getAuthTag()]);
}

export function decryptArchive(buf: Buffer, passphrase: string): Buffer {
  const { json, rest } = headerLine(buf, ENCRYPTED_MAGIC);
  const e = json as { kdf?: string; N?: number; r?: number; p?: number; salt?: string; nonce?: string };
  if (e.kdf !== "scrypt" || !e.N || !e.r || !e.p || !e.salt || !e.nonce || e.N > 1 << 20 || e.r > 32 || e.p > 16) {
    throw new BackupError("the backup's encryption header is not one this gateway reads");
  }
  if (rest.length < TAG_BYTES) throw new BackupError("the backup is cut short");
  const key = scryptSync(passphrase.normalize("NFC"), Buffer.from(e.salt, "base64"), 32, { N: e.N, r: e.r, p: e.p, maxmem: 256 * 1024 * 1024 });
  const d = createDecipheriv("aes-256-gcm", key, Buffer.from(e.nonce, "base64"));
  d.setAAD(buf.subarray(0, buf.length - rest.length));
  d.setAuthTag(rest.subarray(rest.length - TAG_BYTES));
  try {
    return Buffer.concat([d.update(rest.subarray(0, rest.length - TAG_BYTES)), d.final()]);
  } catch {
    throw new BackupError("wrong passphrase, or the backup is damaged");
  }
}
