// First boot's initial settings: the public URL and the first operator's name,
// from (in this order)
//   1. the systemd credential `clawpatrol.settings` ($CREDENTIALS_DIRECTORY;
//      e.g. QEMU -smbios type=11,value=io.systemd.credential:clawpatrol.settings=…)
//   2. cloud-init user data whose first line is `#clawpatrol-config`
//      (/var/lib/cloud/instance/user-data.txt, or a NoCloud seed's user-data)
// The text is either JSON or HCL-style attribute lines:
//
//   #clawpatrol-config                           (user data only)
//   public_url = "https://gateway.example.com"   # devices and chat callbacks reach it here
//   operator   = "alice"                         # the first operator (admin); default "admin"
//   ssh_authorized_keys = ["ssh-ed25519 AAAA… me@laptop"]   # the `admin` shell account (access.ts)
//   update_keys = ["-----BEGIN PUBLIC KEY-----\n…"]         # Ed25519 keys bundles must be signed by
//
// Bad input is an error naming its source and line; the caller reports it and
// goes on with the defaults, so a typo never stops the CA from being made.
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { validOperatorName } from "../../app/store/operators.ts";

export interface InitialSettings {
  publicUrl?: string;
  operator?: string;
  /** OpenSSH public key lines for the `admin` account. */
  sshAuthorizedKeys?: string[];
  /** PEM (SPKI) Ed25519 public keys trusted for update bundles. */
  updateKeys?: string[];
}

export type SettingsResult = { ok: true; settings: InitialSettings } | { ok: false; error: string };

export const CREDENTIAL_NAME = "clawpatrol.settings";
export const USER_DATA_HEADER = "#clawpatrol-config";
/** cloud-init's copy of the instance's user data, then NoCloud seed directories. */
export const USER_DATA_PATHS = [
  "/var/lib/cloud/instance/user-data.txt",
  "/var/lib/cloud/seed/nocloud/user-data",
  "/var/lib/cloud/seed/nocloud-net/user-data",
];
/** More is not a settings file. */
const MAX_BYTES = 64 * 1024;

const KEYS: Record<string, keyof InitialSettings> = {
  public_url: "publicUrl",
  operator: "operator",
  ssh_authorized_keys: "sshAuthorizedKeys",
  update_keys: "updateKeys",
};
const LIST_FIELDS = new Set<keyof InitialSettings>(["sshAuthorizedKeys", "updateKeys"]);
/** One OpenSSH public key: type, base64 blob, optional comment; no options (from= command=), one line. */
export const SSH_KEY_RE = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( [^\r\n]*)?$/;
const PEM_KEY_RE = /^-----BEGIN PUBLIC KEY-----\r?\n[A-Za-z0-9+/=\r\n]+-----END PUBLIC KEY-----\s*$/;
// The same check the config's gateway.public_url gets (app/policy/build.ts).
const URL_RE = /^https?:\/\/[^\s/]+(\/.*)?$/;

/** Parse settings text from `source` (named in every error). */
export function parseSettings(text: string, source: string): SettingsResult {
  const fail = (msg: string): SettingsResult => ({ ok: false, error: `settings from ${source}: ${msg}` });
  if (text.length > MAX_BYTES) return fail(`larger than ${MAX_BYTES} bytes`);
  let body = text.replace(/^\uFEFF/, "");
  let lineOffset = 0;
  if (body.startsWith(USER_DATA_HEADER)) {
    const nl = body.indexOf("\n");
    body = nl < 0 ? "" : body.slice(nl + 1);
    lineOffset = 1;
  }
  const pairs: Array<{ key: string; value: unknown; line: number }> = [];
  if (body.trimStart().startsWith("{")) {
    let obj: unknown;
    try {
      obj = JSON.parse(body);
    } catch (e) {
      return fail(`invalid JSON: ${(e as Error).message}`);
    }
    if (obj === null || typeof obj !== "object" || Array.isArray(obj)) return fail("JSON must be an object");
    for (const [key, value] of Object.entries(obj)) pairs.push({ key, value, line: 0 });
  } else {
    const lines = body.split(/\r?\n/);
    for (let i = 0; i < lines.length; i++) {
      const s = stripComment(lines[i]!).trim();
      if (s === "") continue;
      const m = /^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(s);
      const line = i + 1 + lineOffset;
      if (!m) return fail(`line ${line}: expected key = "value"`);
      let value: unknown;
      try {
        value = JSON.parse(m[2]!);
      } catch {
        return fail(`line ${line}: ${m[1]} must be a double-quoted string`);
      }
      pairs.push({ key: m[1]!, value, line });
    }
  }
  const settings: InitialSettings = {};
  for (const { key, value, line } of pairs) {
    const at = line > 0 ? `line ${line}: ` : "";
    const field = KEYS[key];
    if (!field) return fail(`${at}unknown key "${key}" (known: ${Object.keys(KEYS).join(", ")})`);
    if (settings[field] !== undefined) return fail(`${at}${key} given twice`);
    if (LIST_FIELDS.has(field)) {
      const list = typeof value === "string" ? [value] : value;
      if (!Array.isArray(list) || list.some((v) => typeof v !== "string")) return fail(`${at}${key} must be a string or a list of strings`);
      const items = (list as string[]).map((v) => v.trim());
      const re = field === "sshAuthorizedKeys" ? SSH_KEY_RE : PEM_KEY_RE;
      const bad = items.findIndex((v) => !re.test(v));
      if (bad >= 0) {
        const what = field === "sshAuthorizedKeys" ? "an OpenSSH public key line (TYPE BASE64 [COMMENT])" : "a PEM public key (-----BEGIN PUBLIC KEY-----)";
        return fail(`${at}${key}[${bad}] is not ${what}`);
      }
      if (field === "sshAuthorizedKeys") settings.sshAuthorizedKeys = items;
      else settings.updateKeys = items;
      continue;
    }
    if (typeof value !== "string") return fail(`${at}${key} must be a string`);
    if (field === "publicUrl" && !URL_RE.test(value)) return fail(`${at}public_url must be an http(s) URL, not ${JSON.stringify(value)}`);
    if (field === "operator" && !validOperatorName(value)) {
      return fail(`${at}operator must be 1-64 letters, digits or _.@- (starting with a letter or digit), not ${JSON.stringify(value)}`);
    }
    if (field === "publicUrl") settings.publicUrl = value.replace(/\/+$/, "");
    else settings.operator = value;
  }
  return { ok: true, settings };
}

// A `#` outside a double-quoted string starts a comment.
function stripComment(line: string): string {
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === "\\" && quoted) i++;
    else if (c === '"') quoted = !quoted;
    else if (c === "#" && !quoted) return line.slice(0, i);
  }
  return line;
}

/** Set by the unit to its private /tmp; without it (a run by hand) the steps hand nothing over. */
export const HANDOFF_ENV = "CLAWPATROL_FIRSTBOOT_HANDOFF";
/** Step 1 → 2: `{source, text}` of the user data. */
export const USER_DATA_FILE = "clawpatrol-user-data.json";
/** Step 2 → 3: `{public_url, source}`. */
export const APPLY_FILE = "clawpatrol-apply.json";

/** Write a handoff file the unit's other user can read (UMask=0077 would make it 0600). */
export function writeHandoff(file: string, value: unknown): void {
  writeFileSync(file, JSON.stringify(value));
  chmodSync(file, 0o644);
}

export function readHandoff(file: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(readFileSync(file, "utf8"));
    return v !== null && typeof v === "object" ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * app/main.ts's defaultConfigPath, repeated so first boot does not load the
 * whole app: /etc/clawpatrol/gateway.hcl, else gateway.d/, else the checkout's default.
 */
export function applianceConfigPath(): string {
  for (const p of ["/etc/clawpatrol/gateway.hcl", "/etc/clawpatrol/gateway.d"]) if (existsSync(p)) return p;
  return path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "config", "default.hcl");
}

export interface FoundSettings {
  /** Where they came from, for the banner; undefined when there were none. */
  source?: string;
  settings: InitialSettings;
  /** Why the settings found were not used. */
  error?: string;
}

export interface SettingsSources {
  /** $CREDENTIALS_DIRECTORY of the unit. */
  credentialsDir?: string;
  /** Cloud-init user data already read (by the root step: the service user cannot read it). */
  userData?: { source: string; text: string };
}

/** The first source present wins; a bad one is reported, not skipped over. */
export function findSettings(src: SettingsSources): FoundSettings {
  if (src.credentialsDir) {
    const file = path.join(src.credentialsDir, CREDENTIAL_NAME);
    let text: string | undefined;
    try {
      text = readFileSync(file, "utf8");
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== "ENOENT") return { source: `credential ${CREDENTIAL_NAME}`, settings: {}, error: `settings from credential ${CREDENTIAL_NAME}: cannot read: ${code}` };
    }
    if (text !== undefined) return outcome(`credential ${CREDENTIAL_NAME}`, text);
  }
  if (src.userData) return outcome(`cloud-init user data ${src.userData.source}`, src.userData.text);
  return { settings: {} };
}

function outcome(source: string, text: string): FoundSettings {
  const r = parseSettings(text, source);
  return r.ok ? { source, settings: r.settings } : { source, settings: {}, error: r.error };
}

/** The first readable user data meant for clawpatrol (first line `#clawpatrol-config`); others are not ours. */
export function findUserData(paths: readonly string[] = USER_DATA_PATHS): { source: string; text: string } | undefined {
  for (const p of paths) {
    let text: string;
    try {
      text = readFileSync(p, "utf8");
    } catch {
      continue;
    }
    if (text.replace(/^\uFEFF/, "").startsWith(USER_DATA_HEADER)) return { source: p, text: text.slice(0, MAX_BYTES + 1) };
  }
  return undefined;
}

/**
 * The config text with `public_url` set in its `gateway {}` block: an existing
 * (uncommented) attribute is replaced, else one is added as the block's first
 * line. Undefined when the text has no top-level `gateway {` line.
 */
export function setPublicUrl(hcl: string, url: string, note: string): string | undefined {
  const lines = hcl.split("\n");
  const start = lines.findIndex((l) => /^gateway\s*\{\s*(#.*)?$/.test(l));
  if (start < 0) return undefined;
  // The block ends at the first line that is a lone `}` at column 0.
  let end = lines.findIndex((l, i) => i > start && /^\}\s*(#.*)?$/.test(l));
  if (end < 0) end = lines.length;
  const attr = `  public_url = ${JSON.stringify(url)}  # ${note}`;
  for (let i = start + 1; i < end; i++) {
    if (/^\s*public_url\s*=/.test(lines[i]!)) {
      lines[i] = attr;
      return lines.join("\n");
    }
  }
  lines.splice(start + 1, 0, attr);
  return lines.join("\n");
}
