// clawpatrol-access.service, as root on every boot before sshd: the keys the
// appliance's settings name.
//   ssh_authorized_keys  -> /etc/ssh/authorized_keys/admin (sshd's only
//                           AuthorizedKeysFile; sshd starts only when it is
//                           not empty: ssh.service.d/clawpatrol.conf)
//   update_keys          -> /etc/clawpatrol/update-keys/settings-KEYID.pub
//                           (what `clawpatrol-gateway update` trusts)
// Sources: the settings first boot reads (the clawpatrol.settings credential,
// else #clawpatrol-config user data; settings.ts), plus `ssh_authorized_keys`
// of #cloud-config user data, as cloud-init gives them to its default user.
// Settings that name keys replace the authorized keys file; settings that
// name none leave it as it is (an operator's own edit stays). Update keys
// are added, never removed here. Bad settings are reported and change nothing.
import { createPublicKey } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { keyIdOf } from "../../app/update/bundle.ts";
import { SSH_KEY_RE, USER_DATA_PATHS, findSettings, findUserData } from "./settings.ts";

export const AUTHORIZED_KEYS = "/etc/ssh/authorized_keys/admin";
export const UPDATE_KEYS_DIR = "/etc/clawpatrol/update-keys";

export interface AccessPaths {
  authorizedKeys: string;
  updateKeysDir: string;
  userDataPaths: readonly string[];
  credentialsDir?: string;
}

/** `ssh_authorized_keys` of the first #cloud-config user data; malformed YAML or entries are skipped. */
export function cloudConfigKeys(paths: readonly string[]): { source: string; keys: string[] } | undefined {
  for (const p of paths) {
    let text: string;
    try {
      text = readFileSync(p, "utf8");
    } catch {
      continue;
    }
    if (!text.replace(/^\uFEFF/, "").startsWith("#cloud-config")) continue;
    let doc: unknown;
    try {
      doc = Bun.YAML.parse(text);
    } catch {
      return undefined;
    }
    const list = doc !== null && typeof doc === "object" ? (doc as Record<string, unknown>).ssh_authorized_keys : undefined;
    if (!Array.isArray(list)) return undefined;
    const keys = list.filter((k): k is string => typeof k === "string" && SSH_KEY_RE.test(k.trim())).map((k) => k.trim());
    return keys.length > 0 ? { source: p, keys } : undefined;
  }
  return undefined;
}

function writeAtomically(file: string, text: string, mode: number): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, text, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, file);
}

export function applyAccess(p: AccessPaths, log: (line: string) => void): void {
  const userData = findUserData(p.userDataPaths);
  const found = findSettings({ ...(p.credentialsDir ? { credentialsDir: p.credentialsDir } : {}), ...(userData ? { userData } : {}) });
  if (found.error) log(`clawpatrol-access: ${found.error}; no keys changed`);
  const settings = found.error ? {} : found.settings;
  const cloud = cloudConfigKeys(p.userDataPaths);
  const sshKeys = [...(settings.sshAuthorizedKeys ?? []), ...(cloud?.keys ?? [])];
  if (sshKeys.length > 0) {
    writeAtomically(p.authorizedKeys, `# written at boot by clawpatrol-access from ${[found.source, cloud?.source].filter(Boolean).join(" and ")}\n${[...new Set(sshKeys)].join("\n")}\n`, 0o644);
    log(`clawpatrol-access: ${sshKeys.length} SSH key(s) for admin (${p.authorizedKeys})`);
  } else {
    log(`clawpatrol-access: no SSH keys in the settings; ${p.authorizedKeys} left as it is (sshd runs only when it holds a key)`);
  }
  for (const pem of settings.updateKeys ?? []) {
    let id: string;
    try {
      const key = createPublicKey(pem);
      if (key.asymmetricKeyType !== "ed25519") throw new Error(`a ${key.asymmetricKeyType} key, not Ed25519`);
      id = keyIdOf(key);
    } catch (e) {
      log(`clawpatrol-access: an update key from ${found.source} is refused: ${(e as Error).message}`);
      continue;
    }
    writeAtomically(path.join(p.updateKeysDir, `settings-${id}.pub`), `${pem.trim()}\n`, 0o644);
    log(`clawpatrol-access: update key ${id} trusted (${p.updateKeysDir}/settings-${id}.pub)`);
  }
}

if (import.meta.main) {
  try {
    applyAccess(
      {
        authorizedKeys: AUTHORIZED_KEYS,
        updateKeysDir: UPDATE_KEYS_DIR,
        userDataPaths: USER_DATA_PATHS,
        ...(process.env.CREDENTIALS_DIRECTORY ? { credentialsDir: process.env.CREDENTIALS_DIRECTORY } : {}),
      },
      (line) => console.log(line),
    );
  } catch (e) {
    console.error(`clawpatrol-access: ${(e as Error).message}`);
    process.exit(1);
  }
}
