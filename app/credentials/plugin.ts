// Credential plugins: one module per credential type. Each owns exactly one
// slot of the outbound request (a header, or a header plus its URL-query twin
// for gemini) and overwrites whatever the agent put there, which is normally
// the placeholder the device was given. Nothing else in the gateway writes
// these slots, and no plugin reads or writes anything outside its own.
import type { HeaderList } from "../endpoints/http1/headers.ts";
import type { Credential, CredentialType } from "../policy/types.ts";
import { anthropicManualKey } from "./anthropic_manual_key.ts";
import { basicAuth } from "./basic_auth.ts";
import { bearerToken } from "./bearer_token.ts";
import { cookieToken } from "./cookie_token.ts";
import { geminiApiKey } from "./gemini_api_key.ts";
import { githubToken } from "./github_token.ts";
import { headerToken } from "./header_token.ts";
import { openaiApiKey } from "./openai_api_key.ts";
import { passthrough } from "./passthrough.ts";
import { postgresPassword } from "./postgres_password.ts";
import { clickhousePassword } from "./clickhouse_password.ts";
import { k8sClientCert } from "./k8s_client_cert.ts";
import { sshKey } from "./ssh_key.ts";
import { sshPassword } from "./ssh_password.ts";

/** The parts of a request a plugin may rewrite; the body is never one of them. */
export interface OutboundRequest {
  method: string;
  /** origin-form request target: path?query */
  target: string;
  headers: HeaderList;
}

export interface CredentialPlugin {
  type: CredentialType;
  /** Writes the real secret into this type's one slot, replacing whatever the agent sent there (its placeholder). */
  inject(req: OutboundRequest, secret: string, cred: Credential): void;
  /** The placeholder value a device is given for this credential (never the secret). */
  placeholder(cred: Credential): string;
  /** The exact strings that would reveal the secret if echoed back (e.g. the raw token, `Bearer <t>`, base64 of user:pass) — used for scrubbing responses and redacting sinks. */
  revealingForms(secret: string, cred: Credential): string[];
}

const PLUGINS: Record<CredentialType, CredentialPlugin> = {
  bearer_token: bearerToken,
  header_token: headerToken,
  basic_auth: basicAuth,
  cookie_token: cookieToken,
  anthropic_manual_key: anthropicManualKey,
  openai_api_key: openaiApiKey,
  github_token: githubToken,
  gemini_api_key: geminiApiKey,
  passthrough,
  postgres_password: postgresPassword,
  clickhouse_password: clickhousePassword,
  k8s_client_cert: k8sClientCert,
  ssh_key: sshKey,
  ssh_password: sshPassword,
};

export function pluginFor(type: CredentialType): CredentialPlugin {
  const p = PLUGINS[type];
  // The loader validated the type; an unknown one here is a programming error.
  if (!p) throw new Error(`no credential plugin for type ${JSON.stringify(type)}`);
  return p;
}
