// Where a credential's real value comes from, in order:
// 1. `secret_file` when configured (one trailing newline trimmed). A file that
//    is configured but unreadable or empty is an error, not a fall-through:
//    the operator said where the secret lives.
// 2. the environment variable CLAWPATROL_SECRET_<NAME> (see secretEnvName).
// 3. the secret store (`clawpatrol-gateway secret set NAME`).
// This is the only file in app/credentials that does I/O, and only when the
// caller does not pass its own readFile. Failure reasons name the credential
// and the places looked at, never a value.
import { readFileSync } from "node:fs";
import type { Credential } from "../policy/types.ts";

export interface SecretSources {
  store?: { get(name: string): string | undefined };
  /** Usually process.env; not consulted when absent. */
  env?: Record<string, string | undefined>;
  /** Defaults to reading the file as UTF-8. */
  readFile?: (path: string) => string;
}

export type ResolvedSecret =
  | { ok: true; value: string; source: "file" | "env" | "store" }
  | { ok: false; reason: string };

/** Names already turned into variable names: credentials are looked up on every request. */
const envNames = new Map<string, string>();

/** `CLAWPATROL_SECRET_` + the name upper-cased, every character but A–Z and 0–9 as `_`. */
export function secretEnvName(name: string): string {
  let env = envNames.get(name);
  if (env === undefined) {
    // ASCII-only upper-casing: "ß".toUpperCase() is "SS", which would not be
    // one `_` per character as documented.
    const upper = name.replace(/[a-z]/g, (c) => c.toUpperCase());
    env = "CLAWPATROL_SECRET_" + upper.replace(/[^A-Z0-9]/gu, "_");
    // Names come from the configuration; the bound only guards against a caller that makes them up.
    if (envNames.size >= 1024) envNames.clear();
    envNames.set(name, env);
  }
  return env;
}

// Most credentials land in an HTTP header (or URL), where CR, LF or NUL
// would split the request. PEM keys (a client certificate's, an SSH private
// key) are lines of text by nature, and never go into a header.
const FORBIDDEN = /[\r\n\0]/;
const MULTILINE_TYPES: ReadonlySet<string> = new Set(["k8s_client_cert", "ssh_key"]);

function check(
  cred: Credential,
  value: string,
  source: "file" | "env" | "store",
  where: string,
): ResolvedSecret {
  if (value === "") return { ok: false, reason: `credential ${cred.ref}: ${where} is empty` };
  if (MULTILINE_TYPES.has(cred.type) ? value.includes("\0") : FORBIDDEN.test(value)) {
    return { ok: false, reason: `credential ${cred.ref}: ${where} contains a line break or NUL` };
  }
  return { ok: true, value, source };
}

export function resolveSecret(cred: Credential, sources: SecretSources): ResolvedSecret {
  if (cred.secretFile !== undefined) {
    const where = `secret_file ${cred.secretFile}`;
    let text: string;
    try {
      text = (sources.readFile ?? ((p: string) => readFileSync(p, "utf8")))(cred.secretFile);
    } catch (err) {
      // Only the error code: a message could in principle quote file content.
      const code = (err as { code?: unknown } | null)?.code;
      const why = typeof code === "string" ? code : "unreadable";
      return { ok: false, reason: `credential ${cred.ref}: cannot read ${where} (${why})` };
    }
    const trimmed = text.endsWith("\r\n") ? text.slice(0, -2) : text.endsWith("\n") ? text.slice(0, -1) : text;
    return check(cred, trimmed, "file", where);
  }

  const envName = secretEnvName(cred.name);
  const fromEnv = sources.env?.[envName];
  if (fromEnv !== undefined) return check(cred, fromEnv, "env", `environment variable ${envName}`);

  const fromStore = sources.store?.get(cred.name);
  if (fromStore !== undefined) return check(cred, fromStore, "store", `secret store entry ${JSON.stringify(cred.name)}`);

  const looked = [
    sources.env ? `environment variable ${envName}` : undefined,
    sources.store ? `secret store entry ${JSON.stringify(cred.name)}` : undefined,
  ].filter((s) => s !== undefined);
  return {
    ok: false,
    reason:
      `credential ${cred.ref}: no secret found` +
      (looked.length ? ` (looked in ${looked.join(", ")})` : " (no secret file, environment or store given)") +
      `; set it with \`clawpatrol-gateway secret set ${cred.name}\``,
  };
}
