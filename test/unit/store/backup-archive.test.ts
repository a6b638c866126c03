// The backup archive format without a state directory: what goes in comes
// out; a changed, cut or extended archive, a file name that would leave the
// state directory, a wrong master key and a wrong passphrase are each
// refused with their own message, never half-read.
import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import {
  BackupError,
  decryptArchive,
  encryptArchive,
  keyCheckOf,
  keyMatches,
  packArchive,
  seal,
  unpackArchive,
  unseal,
} from "../../../app/store/backup-archive.ts";

const key = randomBytes(32);
const meta = { created: "2026-12-07T00:00:00.000Z", gateway: "0.1.0", caSha256: "AB:CD", includesMasterKey: false, keyCheck: keyCheckOf(key) };
const files = [
  { name: "state.db", data: Buffer.from("SQLite format 3\0 rows"), sealed: false },
  { name: "ca.key", data: seal(key, "ca.key", Buffer.from("-----BEGIN PRIVATE KEY-----")), sealed: true },
];

describe("backup archive", () => {
  test("round trip: manifest and files as written; sealed files open with the key only", () => {
    const { manifest, files: out } = unpackArchive(packArchive(meta, files));
    expect(manifest).toMatchObject({ format: "clawpatrol-backup", version: 1, caSha256: "AB:CD" });
    expect(manifest.files.map((f) => [f.name, f.sealed])).toEqual([["state.db", false], ["ca.key", true]]);
    expect(out[0]!.data.toString()).toBe("SQLite format 3\0 rows");
    expect(unseal(key, "ca.key", out[1]!.data).toString()).toBe("-----BEGIN PRIVATE KEY-----");
    expect(() => unseal(randomBytes(32), "ca.key", out[1]!.data)).toThrow("cannot be decrypted");
    // Bound to its name: the same bytes under another name do not open.
    expect(() => unseal(key, "wg.key", out[1]!.data)).toThrow("cannot be decrypted");
    expect(keyMatches(manifest, key)).toBe(true);
    expect(keyMatches(manifest, randomBytes(32))).toBe(false);
  });

  test("a changed byte, a cut, extra bytes and a bad name are refused", () => {
    const good = packArchive(meta, files);
    const flipped = Buffer.from(good);
    flipped[flipped.length - 3]! ^= 1;
    expect(() => unpackArchive(flipped)).toThrow("damaged or cut short");
    expect(() => unpackArchive(good.subarray(0, good.length - 1))).toThrow("damaged or cut short");
    expect(() => unpackArchive(Buffer.concat([good, Buffer.from("x")]))).toThrow("bytes after its last file");
    expect(() => unpackArchive(packArchive(meta, [{ name: "../etc", data: Buffer.from("x"), sealed: false }]))).toThrow("may not");
    expect(() => unpackArchive(Buffer.from("PK\x03\x04 a zip"))).toThrow(BackupError);
  });

  test("passphrase encryption: the right one opens it, a wrong one or a changed byte does not", () => {
    const plain = packArchive(meta, files);
    const enc = encryptArchive(plain, "a long enough passphrase");
    expect(() => unpackArchive(enc)).toThrow("encrypted");
    expect(decryptArchive(enc, "a long enough passphrase").equals(plain)).toBe(true);
    expect(() => decryptArchive(enc, "another passphrase entirely")).toThrow("wrong passphrase");
    const changed = Buffer.from(enc);
    changed[changed.length - 40]! ^= 1;
    expect(() => decryptArchive(changed, "a long enough passphrase")).toThrow("wrong passphrase, or the backup is damaged");
  });
});
