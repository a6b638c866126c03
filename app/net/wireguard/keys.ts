/**
 * WireGuard key helpers for the gateway: `wg genkey` / `wg pubkey` in-process,
 * and the gateway's own long-lived private key in the state directory.
 *
 * Keys travel as base64 of the 32 raw bytes, exactly as wg(8) prints them.
 * Nothing here ever puts key material into an error message or a log line.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { fromBase64Key, getDefaultCrypto, toBase64, type WgCrypto } from "./crypto.ts";

export const PRIVATE_KEY_FILE = "wg.key";

export interface KeyPair {
  /** base64, as `wg genkey` prints it */
  privateKey: string;
  /** base64, as `wg pubkey` prints it */
  publicKey: string;
}

/** A fresh clamped X25519 key pair (`wg genkey | tee priv | wg pubkey`). */
export function generateKeyPair(crypto: WgCrypto = getDefaultCrypto()): KeyPair {
  const priv = crypto.generatePrivateKey();
  return { privateKey: toBase64(priv), publicKey: toBase64(crypto.publicKey(priv)) };
}

/** The public key for a base64 private key (`wg pubkey`). Throws without echoing the key. */
export function publicKeyOf(privateKey: string, crypto: WgCrypto = getDefaultCrypto()): string {
  let raw: Uint8Array;
  try {
    raw = fromBase64Key(privateKey.trim());
  } catch {
    throw new Error("wireguard: private key is not 32 bytes of base64");
  }
  return toBase64(crypto.publicKey(raw));
}

/** True for a string wg(8) would accept as a key: base64 of exactly 32 bytes. */
export function isWireGuardKey(s: string): boolean {
  if (!/^[A-Za-z0-9+/]{43}=$/.test(s)) return false;
  try {
    fromBase64Key(s);
    return true;
  } catch {
    return false;
  }
}

export interface LoadedKey extends KeyPair {
  /** true when this call created the file */
  created: boolean;
  file: string;
}

/**
 * Reads `<stateDir>/wg.key`, creating it (mode 0600) when absent. Creation
 * is atomic and never replaces an existing file: the key is written to a
 * private temporary file, synced, and hard-linked into place; if another
 * process won the race, its key is read and ours discarded.
 */
export function loadOrCreatePrivateKey(stateDir: string, crypto: WgCrypto = getDefaultCrypto()): LoadedKey {
  const file = path.join(stateDir, PRIVATE_KEY_FILE);
  const existing = readKeyFile(file, crypto);
  if (existing !== undefined) return { ...existing, created: false, file };

  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const pair = generateKeyPair(crypto);
  const tmp = path.join(stateDir, `.${PRIVATE_KEY_FILE}.${process.pid}.${toBase64(crypto.randomBytes(6)).replace(/[+/=]/g, "_")}`);
  const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
  try {
    fs.writeSync(fd, pair.privateKey + "\n");
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  try {
    fs.linkSync(tmp, file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw new Error(`wireguard: cannot create ${file}: ${(e as NodeJS.ErrnoException).code ?? "error"}`);
    const other = readKeyFile(file, crypto);
    if (other === undefined) throw new Error(`wireguard: ${file} appeared but is unreadable`);
    return { ...other, created: false, file };
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  try {
    const dirFd = fs.openSync(stateDir, "r");
    fs.fsyncSync(dirFd);
    fs.closeSync(dirFd);
  } catch {
    // best effort: some filesystems refuse fsync on directories
  }
  return { ...pair, created: true, file };
}

function readKeyFile(file: string, crypto: WgCrypto): KeyPair | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new Error(`wireguard: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? "error"}`);
  }
  const privateKey = text.trim();
  if (!isWireGuardKey(privateKey)) throw new Error(`wireguard: ${file} does not hold a base64 WireGuard private key`);
  return { privateKey, publicKey: publicKeyOf(privateKey, crypto) };
}
