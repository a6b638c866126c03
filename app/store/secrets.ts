// Secrets at rest: AES-256-GCM under a master key kept beside the database
// (`stateDir/master.key`, 32 random bytes, 0600). Each row has its own random
// 96-bit nonce, and its name is bound in as additional data, so a row's
// ciphertext copied under another name fails to decrypt instead of quietly
// injecting the wrong credential.
//
// The gateway reads secrets on every credentialed request, so decrypted
// values are cached. `PRAGMA data_version` tells us cheaply when another
// process (`clawpatrol-gateway secret set`) has written, and the cache is
// dropped then.
import type { Database } from "bun:sqlite";
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { log } from "../log.ts";
import { dataVersion } from "./db.ts";

export const MASTER_KEY_FILE = "master.key";
const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const AAD_PREFIX = "clawpatrol secret v1\0";
const NAME_RE = /^[A-Za-z0-9_.-]{1,128}$/;

export class SecretError extends Error {
  override name = "SecretError";
}

export function validSecretName(name: string): boolean {
  return NAME_RE.test(name);
}

function checkName(name: string): void {
  if (!NAME_RE.test(name)) {
    throw new SecretError(`invalid secret name ${JSON.stringify(name)}: use 1-128 of A-Z a-z 0-9 _ . -`);
  }
}

/**
 * Read `stateDir/master.key`, creating it on first use. Creation writes a
 * private temp file and hard-links it into place, so a concurrent process
 * either wins the race or reads the winner's key; never a torn or second key.
 */
export function loadOrCreateMasterKey(stateDir: string): Buffer {
  const file = path.join(stateDir, MASTER_KEY_FILE);
  try {
    return readKey(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  const fd = fs.openSync(tmp, "wx", 0o600);
  try {
    fs.writeSync(fd, randomBytes(KEY_BYTES));
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  try {
    fs.linkSync(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  return readKey(file);
}

function readKey(file: string): Buffer {
  const key = fs.readFileSync(file);
  const mode = fs.statSync(file).mode & 0o777;
  if (mode & 0o077) {
    // A copied-in key often arrives world-readable; it is only ever ours to read.
    fs.chmodSync(file, 0o600);
    log.warn("master key was readable by others; mode set to 0600", { file });
  }
  if (key.length !== KEY_BYTES) {
    throw new SecretError(`master key ${file} is ${key.length} bytes, expected ${KEY_BYTES}`);
  }
  return key;
}

function aad(name: string): Buffer {
  return Buffer.from(AAD_PREFIX + name, "utf8");
}

export function encryptSecret(key: Buffer, name: string, value: string): { nonce: Buffer; ciphertext: Buffer } {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad(name));
  const body = Buffer.concat([cipher.update(value, "utf8"), cipher.final()]);
  return { nonce, ciphertext: Buffer.concat([body, cipher.getAuthTag()]) };
}

export function decryptSecret(key: Buffer, name: string, nonce: Uint8Array, ciphertext: Uint8Array): string {
  const fail = () =>
    new SecretError(`secret ${JSON.stringify(name)} cannot be decrypted: wrong master key or tampered row`);
  if (nonce.length !== NONCE_BYTES || ciphertext.length < TAG_BYTES) throw fail();
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(aad(name));
    decipher.setAuthTag(ciphertext.subarray(ciphertext.length - TAG_BYTES));
    const body = ciphertext.subarray(0, ciphertext.length - TAG_BYTES);
    return Buffer.concat([decipher.update(body), decipher.final()]).toString("utf8");
  } catch {
    // node's own message is generic, but never pass through anything that
    // could describe the plaintext.
    throw fail();
  }
}

interface SecretRow {
  nonce: Uint8Array;
  ciphertext: Uint8Array;
}

export interface SecretStoreOptions {
  now?: () => number;
  /**
   * Look for other processes' writes at most this often (ms). 0 checks on
   * every call; a busy gateway uses a few hundred ms, since the check is a
   * query and it runs per request.
   */
  revalidateMs?: number;
}

export class SecretStore {
  private key: Buffer | undefined;
  private readonly now: () => number;
  /** Decrypted values, and names known to be absent (undefined). */
  private cache = new Map<string, string | undefined>();
  private allValues: string[] | undefined;
  private seenDataVersion: number;
  private readonly revalidateMs: number;
  private lastRevalidate = -Infinity;
  private localVersion = 0;

  constructor(
    private readonly db: Database,
    private readonly stateDir: string,
    opts: SecretStoreOptions = {},
  ) {
    this.now = opts.now ?? Date.now;
    this.revalidateMs = opts.revalidateMs ?? 0;
    this.seenDataVersion = dataVersion(db);
  }

  set(name: string, value: string): void {
    checkName(name);
    const { nonce, ciphertext } = encryptSecret(this.masterKey(), name, value);
    this.db
      .query(
        `INSERT INTO secrets (name, nonce, ciphertext, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT(name) DO UPDATE SET nonce = excluded.nonce, ciphertext = excluded.ciphertext, updated_at = excluded.updated_at`,
      )
      .run(name, nonce, ciphertext, this.now());
    this.changed();
    this.cache.set(name, value);
  }

  /** The decrypted value, or undefined when no such secret is stored. Throws SecretError on a bad row. */
  get(name: string): string | undefined {
    checkName(name);
    this.revalidate();
    if (this.cache.has(name)) return this.cache.get(name);
    const row = this.db.query("SELECT nonce, ciphertext FROM secrets WHERE name = ?").get(name) as SecretRow | null;
    const value = row ? decryptSecret(this.masterKey(), name, row.nonce, row.ciphertext) : undefined;
    this.cache.set(name, value);
    return value;
  }

  delete(name: string): boolean {
    checkName(name);
    const res = this.db.query("DELETE FROM secrets WHERE name = ?").run(name);
    this.changed();
    this.cache.set(name, undefined);
    return res.changes > 0;
  }

  names(): string[] {
    const rows = this.db.query("SELECT name FROM secrets ORDER BY name").all() as { name: string }[];
    return rows.map((r) => r.name);
  }

  /**
   * Every stored value that decrypts, for the redactor. A row that does not
   * decrypt is skipped (with a warning): the gateway cannot inject it either,
   * so it cannot leak.
   */
  values(): string[] {
    this.revalidate();
    if (this.allValues) return this.allValues;
    const rows = this.db.query("SELECT name, nonce, ciphertext FROM secrets").all() as (SecretRow & { name: string })[];
    const out: string[] = [];
    for (const row of rows) {
      try {
        out.push(decryptSecret(this.masterKey(), row.name, row.nonce, row.ciphertext));
      } catch (err) {
        log.warn("secret unreadable", { name: row.name, error: (err as Error).message });
      }
    }
    this.allValues = out;
    return out;
  }

  /** Changes whenever the stored secrets may have changed; lets the redactor skip recomputing. */
  version(): number {
    this.revalidate();
    return this.localVersion;
  }

  private masterKey(): Buffer {
    this.key ??= loadOrCreateMasterKey(this.stateDir);
    return this.key;
  }

  private revalidate(): void {
    if (this.revalidateMs > 0) {
      const now = this.now();
      if (now - this.lastRevalidate < this.revalidateMs) return;
      this.lastRevalidate = now;
    }
    const v = dataVersion(this.db);
    if (v !== this.seenDataVersion) {
      this.seenDataVersion = v;
      this.changed();
    }
  }

  private changed(): void {
    this.cache.clear();
    this.allValues = undefined;
    this.localVersion++;
  }
}
