// Backup and restore of the state directory (`clawpatrol-gateway backup
// FILE` / `restore FILE`), the archive format in backup-archive.ts.
//
// In the archive: a consistent copy of state.db (VACUUM INTO, safe while
// the gateway runs; devices, VIPs, operators, audit, events, and the
// secrets, which stay encrypted under the master key), the CA certificate,
// and the private keys (the CA's and WireGuard's) sealed under the master
// key. With `includeKey` the master key goes in too, the keys unsealed, and
// the whole archive is encrypted under a passphrase.
//
// Restore writes into a state directory whose gateway is stopped: files it
// replaces are moved aside to `pre-restore-<time>/` first (the dashboard's
// minted certificate too, so it is minted again from the restored CA).
import { Database } from "bun:sqlite";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { STATE_DB_FILE } from "./db.ts";
import { loadOrCreateMasterKey, MASTER_KEY_FILE } from "./secrets.ts";
import { CA_CERT_FILE, CA_KEY_FILE } from "../tls/ca.ts";
import { DASHBOARD_CERT_FILE, DASHBOARD_KEY_FILE } from "../tls/dashboard-cert.ts";
import { PRIVATE_KEY_FILE as WG_KEY_FILE } from "../net/wireguard/keys.ts";
import { caFingerprint } from "../tls/fingerprint.ts";
import { appVersion } from "../version.ts";
import {
  BackupError,
  decryptArchive,
  encryptArchive,
  isEncrypted,
  keyCheckOf,
  keyMatches,
  packArchive,
  seal,
  unpackArchive,
  unseal,
  type ArchiveFile,
  type Manifest,
} from "./backup-archive.ts";

export { BackupError } from "./backup-archive.ts";

/** Private keys: sealed under the master key unless it travels with them. */
const PRIVATE_FILES = [CA_KEY_FILE, WG_KEY_FILE];
/** What a restore replaces (moved aside first when present). */
const REPLACED = [STATE_DB_FILE, `${STATE_DB_FILE}-wal`, `${STATE_DB_FILE}-shm`, CA_CERT_FILE, CA_KEY_FILE, WG_KEY_FILE, MASTER_KEY_FILE, DASHBOARD_CERT_FILE, DASHBOARD_KEY_FILE];

export interface BackupOptions {
  includeKey: boolean;
  /** Required with includeKey. */
  passphrase?: string;
  now?: () => number;
}

export interface BackupResult {
  archive: Buffer;
  manifest: Manifest;
}

/** A consistent copy of the live database (WAL and all), read without blocking the gateway. */
function snapshotDb(stateDir: string): Buffer {
  const src = path.join(stateDir, STATE_DB_FILE);
  if (!existsSync(src)) throw new BackupError(`no state database at ${src}`);
  const tmp = mkdtempSync(path.join(os.tmpdir(), "clawpatrol-backup-"));
  const out = path.join(tmp, STATE_DB_FILE);
  try {
    const db = new Database(src, { readonly: true });
    try {
      db.query("VACUUM INTO ?").run(out);
    } finally {
      db.close();
    }
    return readFileSync(out);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

export function makeBackup(stateDir: string, opts: BackupOptions): BackupResult {
  if (opts.includeKey && !opts.passphrase) throw new BackupError("a backup with the master key must be encrypted: give a passphrase");
  const caPem = path.join(stateDir, CA_CERT_FILE);
  if (!existsSync(caPem)) throw new BackupError(`no CA at ${caPem} (has the gateway ever run with this state directory?)`);
  const masterKey = loadOrCreateMasterKey(stateDir);
  const files: ArchiveFile[] = [{ name: STATE_DB_FILE, data: snapshotDb(stateDir), sealed: false }];
  files.push({ name: CA_CERT_FILE, data: readFileSync(caPem), sealed: false });
  for (const name of PRIVATE_FILES) {
    const p = path.join(stateDir, name);
    if (!existsSync(p)) continue;
    const data = readFileSync(p);
    files.push(opts.includeKey ? { name, data, sealed: false } : { name, data: seal(masterKey, name, data), sealed: true });
  }
  if (opts.includeKey) files.push({ name: MASTER_KEY_FILE, data: masterKey, sealed: false });
  const meta = {
    created: new Date((opts.now ?? Date.now)()).toISOString(),
    gateway: appVersion(),
    caSha256: caFingerprint(readFileSync(caPem, "utf8")),
    includesMasterKey: opts.includeKey,
    keyCheck: keyCheckOf(masterKey),
  };
  const plain = packArchive(meta, files);
  const archive = opts.includeKey ? encryptArchive(plain, opts.passphrase!) : plain;
  return { archive, manifest: unpackArchive(plain).manifest };
}

export interface RestoreOptions {
  passphrase?: string;
  /** The master key the archive was made with, when it does not carry it (else the target's own master.key is tried). */
  masterKey?: Buffer;
  now?: () => number;
}

export interface RestoreResult {
  manifest: Manifest;
  restored: string[];
  /** Where replaced files went, if any were there. */
  movedAside?: string;
}

/** The manifest and files of an archive, decrypted and unsealed; nothing is written. */
export function openBackup(archive: Buffer, stateDir: string, opts: RestoreOptions): { manifest: Manifest; files: ArchiveFile[]; masterKey: Buffer } {
  let plain = archive;
  if (isEncrypted(archive)) {
    if (!opts.passphrase) throw new BackupError("this backup is encrypted: give its passphrase");
    plain = decryptArchive(archive, opts.passphrase);
  }
  const { manifest, files } = unpackArchive(plain);
  const carried = files.find((f) => f.name === MASTER_KEY_FILE)?.data;
  const own = path.join(stateDir, MASTER_KEY_FILE);
  const masterKey = carried ?? opts.masterKey ?? (existsSync(own) ? readFileSync(own) : undefined);
  if (!masterKey) {
    throw new BackupError("this backup does not carry the master key: give the one it was made with (--key FILE), or put it at " + own);
  }
  if (!keyMatches(manifest, masterKey)) throw new BackupError("the master key given is not the one this backup was made with");
  return {
    manifest,
    masterKey,
    files: files.map((f) => (f.sealed ? { name: f.name, data: unseal(masterKey, f.name, f.data), sealed: false } : f)),
  };
}

export function restoreBackup(archive: Buffer, stateDir: string, opts: RestoreOptions = {}): RestoreResult {
  const { manifest, files, masterKey } = openBackup(archive, stateDir, opts);
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const owner = statSync(stateDir);
  const present = REPLACED.filter((n) => existsSync(path.join(stateDir, n)));
  let movedAside: string | undefined;
  if (present.length > 0) {
    const stamp = new Date((opts.now ?? Date.now)()).toISOString().replace(/[:.]/g, "-");
    movedAside = path.join(stateDir, `pre-restore-${stamp}`);
    mkdirSync(movedAside, { mode: 0o700 });
    for (const n of present) renameSync(path.join(stateDir, n), path.join(movedAside, n));
  }
  const out = [...files.filter((f) => f.name !== MASTER_KEY_FILE), { name: MASTER_KEY_FILE, data: masterKey, sealed: false }];
  for (const f of out) {
    const p = path.join(stateDir, f.name);
    writeFileSync(p, f.data, { mode: f.name === CA_CERT_FILE ? 0o644 : 0o600 });
    chmodSync(p, f.name === CA_CERT_FILE ? 0o644 : 0o600);
    // Run as root for a service user's state directory: the files are the service's.
    if (process.getuid?.() === 0 && (owner.uid !== 0 || owner.gid !== 0)) chownSync(p, owner.uid, owner.gid);
  }
  return { manifest, restored: out.map((f) => f.name), ...(movedAside ? { movedAside } : {}) };
}
