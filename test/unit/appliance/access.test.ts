// Operator access at boot (image/libexec/access.ts): the SSH keys and update
// keys the settings name, written where sshd and `clawpatrol-gateway update`
// read them, in a scratch directory.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseSettings } from "../../../image/libexec/settings.ts";
import { applyAccess, type AccessPaths } from "../../../image/libexec/access.ts";
import { keyIdOf, newSigningKey } from "../../../app/update/bundle.ts";
import { createPublicKey, generateKeyPairSync } from "node:crypto";

const ED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl op@laptop";
const ECDSA = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEk= other";

let dir: string;
let paths: AccessPaths;
let lines: string[];
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "clawpatrol-access-"));
  fs.mkdirSync(path.join(dir, "creds"));
  paths = { authorizedKeys: path.join(dir, "ssh/authorized_keys/admin"), updateKeysDir: path.join(dir, "update-keys"), userDataPaths: [path.join(dir, "user-data")], credentialsDir: path.join(dir, "creds") };
  lines = [];
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));
const log = (l: string) => lines.push(l);
const credential = (text: string) => fs.writeFileSync(path.join(dir, "creds/clawpatrol.settings"), text);

describe("settings: ssh_authorized_keys and update_keys", () => {
  test("a string or a list, in either syntax", () => {
    const pem = newSigningKey().publicPem;
    expect(parseSettings(`ssh_authorized_keys = ${JSON.stringify(ED)}`, "c")).toEqual({ ok: true, settings: { sshAuthorizedKeys: [ED] } });
    expect(parseSettings(JSON.stringify({ ssh_authorized_keys: [ED, ECDSA], update_keys: [pem] }), "c")).toEqual({
      ok: true,
      settings: { sshAuthorizedKeys: [ED, ECDSA], updateKeys: [pem.trim()] },
    });
  });

  test("refused: options before the key, two lines in one, not a PEM public key, not strings", () => {
    const cases: Array<[string, RegExp]> = [
      [JSON.stringify({ ssh_authorized_keys: [`command="sh" ${ED}`] }), /ssh_authorized_keys\[0\] is not an OpenSSH public key line/],
      [JSON.stringify({ ssh_authorized_keys: [`${ED}\n${ECDSA}`] }), /ssh_authorized_keys\[0\] is not/],
      [JSON.stringify({ update_keys: ["-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"] }), /update_keys\[0\] is not a PEM public key/],
      [JSON.stringify({ ssh_authorized_keys: [1] }), /must be a string or a list of strings/],
    ];
    for (const [text, want] of cases) {
      const r = parseSettings(text, "credential clawpatrol.settings");
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error).toMatch(want);
    }
  });
});

describe("applyAccess", () => {
  test("keys from the credential: authorized_keys for admin, each update key as settings-KEYID.pub", () => {
    const k = newSigningKey();
    credential(JSON.stringify({ operator: "alice", ssh_authorized_keys: [ED], update_keys: [k.publicPem] }));
    applyAccess(paths, log);
    expect(fs.readFileSync(paths.authorizedKeys, "utf8")).toEndWith(`\n${ED}\n`);
    const pub = fs.readFileSync(path.join(paths.updateKeysDir, `settings-${k.keyId}.pub`), "utf8");
    expect(keyIdOf(createPublicKey(pub))).toBe(k.keyId);
    expect((fs.statSync(paths.authorizedKeys).mode & 0o777).toString(8)).toBe("644");
  });

  test("#cloud-config user data's ssh_authorized_keys count too; no keys leave an existing file alone", () => {
    fs.writeFileSync(paths.userDataPaths[0]!, `#cloud-config\nssh_authorized_keys:\n  - ${ECDSA}\n  - "not a key"\n`);
    applyAccess(paths, log);
    expect(fs.readFileSync(paths.authorizedKeys, "utf8")).toEndWith(`\n${ECDSA}\n`);
    fs.rmSync(paths.userDataPaths[0]!);
    credential(`operator = "bob"\n`);
    applyAccess(paths, log);
    expect(fs.readFileSync(paths.authorizedKeys, "utf8")).toEndWith(`\n${ECDSA}\n`);
    expect(lines.at(-1)).toMatch(/no SSH keys in the settings/);
  });

  test("bad settings change nothing; a non-Ed25519 update key is refused", () => {
    credential(`ssh_authorized_keys = "nonsense"\n`);
    applyAccess(paths, log);
    expect(fs.existsSync(paths.authorizedKeys)).toBe(false);
    expect(lines[0]).toMatch(/settings from credential clawpatrol.settings: line 1: ssh_authorized_keys\[0\] is not .*; no keys changed/);
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey.export({ format: "pem", type: "spki" }).toString();
    credential(JSON.stringify({ update_keys: [rsa] }));
    applyAccess(paths, log);
    expect(fs.existsSync(paths.updateKeysDir) ? fs.readdirSync(paths.updateKeysDir) : []).toEqual([]);
    expect(lines.join("\n")).toMatch(/update key .* refused: a rsa key, not Ed25519/);
  });
});
