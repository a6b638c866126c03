// Typed references between config blocks: `https.github`, `bearer_token.gh`,
// `profile.default`, `dashboard`, `human_approver.oncall`. hcl2json hands
// them over unevaluated as `${...}` strings.
import type { CredentialType, EndpointType, Family } from "./types.ts";
import { ENDPOINT_SPECS } from "../endpoints/registry.ts";

export const ENDPOINT_TYPES = Object.keys(ENDPOINT_SPECS) as EndpointType[];

/** Each endpoint type's rule family; rules may not mix families. */
export const FAMILY_OF = Object.fromEntries(ENDPOINT_TYPES.map((t) => [t, ENDPOINT_SPECS[t].family])) as Record<EndpointType, Family>;

/** Endpoint types reached by hostname without SNI or Host (ssh, clickhouse_native): their hosts get a DNS VIP. */
export const REQUIRES_VIP = Object.fromEntries(ENDPOINT_TYPES.map((t) => [t, ENDPOINT_SPECS[t].requiresVip])) as Record<EndpointType, boolean>;

export const CREDENTIAL_TYPES: readonly CredentialType[] = [
  "bearer_token",
  "header_token",
  "basic_auth",
  "cookie_token",
  "anthropic_manual_key",
  "openai_api_key",
  "github_token",
  "gemini_api_key",
  "passthrough",
  "postgres_password",
  "clickhouse_password",
  "k8s_client_cert",
  "ssh_key",
  "ssh_password",
];

export const APPROVER_TYPES = ["human_approver", "llm_approver"] as const;

/** The built-in approver: a person on the dashboard. */
export const DASHBOARD = "dashboard";

export type RefKind = "endpoint" | "credential" | "profile" | "approver";

export const EXPECTED_FORM: Record<RefKind, string> = {
  endpoint: "an endpoint reference (TYPE.NAME, e.g. https.NAME)",
  credential: "a credential reference (TYPE.NAME)",
  profile: "a profile reference (profile.NAME)",
  approver: "an approver reference (dashboard or TYPE.NAME)",
};

export type ParsedRef =
  | { ok: true; ref: string; head: string; name?: string }
  | { ok: false; reason: "string" | "expression"; text: string };

const REFERENCE = /^\$\{\s*([A-Za-z_][A-Za-z0-9_-]*)(?:\.([A-Za-z_][A-Za-z0-9_-]*))?\s*\}$/;

export function parseRef(value: string): ParsedRef {
  const m = REFERENCE.exec(value);
  if (m) {
    const head = m[1]!;
    const name = m[2];
    return name === undefined ? { ok: true, ref: head, head } : { ok: true, ref: `${head}.${name}`, head, name };
  }
  if (value.includes("${")) return { ok: false, reason: "expression", text: value };
  return { ok: false, reason: "string", text: value };
}

/** What kind of thing a reference's head names, whether or not it is declared. */
export function kindOfRef(head: string, name: string | undefined): RefKind | undefined {
  if (name === undefined) return head === DASHBOARD ? "approver" : undefined;
  if ((ENDPOINT_TYPES as readonly string[]).includes(head)) return "endpoint";
  if ((CREDENTIAL_TYPES as readonly string[]).includes(head)) return "credential";
  if ((APPROVER_TYPES as readonly string[]).includes(head)) return "approver";
  if (head === "profile") return "profile";
  return undefined;
}
