// The compiled policy: what the config loader produces and every handler reads.
// A Policy is immutable; a reload builds a new one and swaps it in whole.
import type { ApproverConfig } from "../approvers/config.ts";
import type { FamilyName } from "../families/types.ts";
import type { RateSpec } from "./rate-limits.ts";
import type { ClickHouseExportSettings } from "../events/export/config.ts";
import type { ExecRuleSettings } from "../families/exec.ts";
import type { Budget } from "../spend/budget.ts";
import type { Price } from "../spend/prices.ts";

/** Where a block or attribute was declared, for FILE:LINE errors and audit. */
export interface SourceRef {
  file: string;
  line: number;
}

/** One problem found while loading a config; rendered as `FILE:LINE: message`. */
export interface ConfigError extends SourceRef {
  message: string;
}

export type Verdict = "allow" | "deny";

export interface ProxySettings {
  /** host:port of the HTTP CONNECT listener (SOCKS5 is also accepted there). */
  listen: string;
  /** Optional separate host:port for SOCKS5 only. */
  socks5Listen?: string;
}

export interface WireGuardSettings {
  /** userspace: the gateway speaks WireGuard on a UDP socket (no root); kernel: it manages the kernel's interface and reads a TUN. */
  mode: "userspace" | "kernel";
  /** UDP host:port devices' WireGuard packets arrive on (kernel mode uses its port). */
  listen: string;
  /** Device addresses come from here; the gateway's tunnel address is its first host. */
  subnetCidr: string;
  /** Optional IPv6 (ULA) subnet: each device also gets a /128 from it, and IPv6 flows through the tunnel. */
  subnet6Cidr?: string;
  /** host:port devices are told to dial; default: the listen address. */
  endpoint?: string;
  /** kernel mode: the WireGuard interface and the TUN the gateway reads. */
  interface: string;
  tun: string;
  /** kernel mode: IFF_VNET_HDR + TUNSETOFFLOAD on the TUN (the kernel hands over TSO super-packets). */
  tunOffload?: boolean;
}

export interface DnsSettings {
  /** host:port (an IP literal) the DNS-VIP responder listens on, UDP and TCP; the gateway forwards device DNS here. */
  listen: string;
  /** host:port other names are forwarded to; unset: the first nameserver in /etc/resolv.conf. */
  upstream?: string;
  /** The IPv4 network VIPs are allocated from. */
  vipRange: string;
  /** Hostnames bound to a VIP by the operator (besides endpoints whose type requires one), lower-case. */
  vipHosts: string[];
}

/** The operator's own certificate and key (PEM files, absolute paths), one the gateway's CA mints (app/tls/dashboard-cert.ts), or one an ACME CA issues for public_url's host (app/acme/). */
export type DashboardTlsSettings = { kind: "files"; certFile: string; keyFile: string } | { kind: "mint_from_ca" } | AcmeSettings;

/** `dashboard_tls { acme { … } }` (app/acme/config.ts). */
export interface AcmeSettings {
  kind: "acme";
  /** The ACME directory URL (RFC 8555 §7.1.1). */
  directory: string;
  /** Contact for the account (mailto:). */
  email: string;
  /** The only one served so far; tls-alpn-01 (RFC 8737) needs ALPN-aware serving on the dashboard's port. */
  challenge: "http-01";
  /** Where the :80 listener binds (HTTP-01 answers, redirect to https). */
  httpListen: string;
  /** PEM text of `ca_file`: the roots trusted for the directory (a private ACME CA); unset: the system store. */
  caPem?: string;
}

export interface GatewaySettings {
  /** Absolute path of the state directory (database, CA, keys). */
  stateDir: string;
  /** Absolute path of the control socket (HTTP over a Unix socket). */
  controlSocket: string;
  proxy?: ProxySettings;
  wireguard?: WireGuardSettings;
  /** The DNS-VIP responder (`gateway { dns {} }`); unset: device DNS goes straight to the system resolver. */
  dns?: DnsSettings;
  dashboardListen: string;
  /** Base URL devices and chat services reach the public API at; unset: http(s)://<dashboard_listen>, or the URL a request came in on. */
  publicUrl?: string;
  /** `dashboard_tls {}`: the dashboard and public API over HTTPS; unset: plain HTTP. */
  dashboardTls?: DashboardTlsSettings;
  /** Absolute path of the JSON-lines event file, if any. */
  eventsJsonl?: string;
  /** Days of events kept in the `actions` table. */
  eventsRetentionDays: number;
  /** `events { clickhouse {} }`: every event also streamed to ClickHouse (app/events/export/). */
  eventsClickhouse?: ClickHouseExportSettings;
  /** PEM text of `upstream_ca_file`: more roots trusted for every upstream, beside the system store (app/tls/trust.ts). */
  upstreamCaPem?: string;
}

export interface Defaults {
  /** Verdict when no rule matches. */
  verdict: Verdict;
  /** `mode = "shadow"`: every rule that sets no mode of its own is a shadow rule. Unset: enforced. */
  ruleMode?: "shadow";
  /** TLS with an SNI no endpoint claims: splice it untouched, or close it. */
  unknownHost: "passthrough" | "deny";
  /** Profile given to proxy connections that present no device token. */
  profile?: string;
  /** Other UDP (packet plane): relay or drop. */
  udp: "relay" | "drop";
  /** Request bodies are inspected up to this many bytes (default 1 MiB). */
  inspectLimitBytes: number;
  /** Addresses a relay may reach although they are the gateway's own (loopback, link-local, the host's): "IP", "CIDR", "IP:PORT", "[IPv6]:PORT". Unset: none. */
  allowDestinations?: string[];
  /** Per-device quotas the operator set (`quota_tcp_flows`, ...); the rest keep app/dispatch/quotas.ts DEFAULT_QUOTAS. */
  quotas?: { tcpFlows?: number; udpFlows?: number; dnsConnections?: number; newFlowsPerSecond?: number; bufferedBytes?: number };
  /** After TLS termination: a request head must arrive whole within this (default 30 s). */
  headerTimeoutMs: number;
  /** A kept-alive connection with no request for this long is closed (default 120 s). */
  idleTimeoutMs: number;
  /** A request body slower than this (bytes/s, after headerTimeoutMs of grace) is cut off; 0: off (default 1 KiB/s). */
  minRateBytesPerSec: number;
  /** The command gate's defaults (`exec_timeout`, `env_scrub`, `allowed_paths`). */
  exec?: ExecRuleSettings;
}

/** Endpoint kinds (app/endpoints/registry.ts); each implies a rule family. */
export type EndpointType = "https" | "postgres" | "kubernetes" | "clickhouse_native" | "clickhouse_https" | "ssh" | "exec";
export type Family = FamilyName;

export interface Endpoint {
  type: EndpointType;
  name: string;
  /** Reference form, e.g. `https.github`. */
  ref: string;
  family: Family;
  /** Exact names (`api.github.com`) and suffix wildcards (`*.github.com`), lower-case. */
  hosts: string[];
  /** TCP ports the endpoint claims (default [443]); TLS is only peeked on claimed ports. */
  ports?: number[];
  /** PEM text of extra CA certificates trusted for this upstream (in addition to the system store). */
  caCertPem?: string;
  /** Credential injected when the matching rule names none. */
  credential?: string;
  /** The type's own settings, built and read by its runtime (app/endpoints/<type>/spec.ts). */
  settings?: Readonly<Record<string, unknown>>;
  source: SourceRef;
}

export type CredentialType =
  | "bearer_token"
  | "header_token"
  | "basic_auth"
  | "cookie_token"
  | "anthropic_manual_key"
  | "openai_api_key"
  | "github_token"
  | "gemini_api_key"
  | "passthrough"
  | "postgres_password"
  | "clickhouse_password"
  | "k8s_client_cert"
  | "ssh_key"
  | "ssh_password";

export interface Credential {
  type: CredentialType;
  name: string;
  /** Reference form, e.g. `bearer_token.gh`. */
  ref: string;
  /** Type-specific settings, validated by the loader (e.g. header, prefix, cookie, username). */
  settings: Record<string, string>;
  /** Absolute path of a file holding the secret, if configured (`secret_file`). */
  secretFile?: string;
  /** `budget { daily_usd = ... }` on a metered credential (anthropic, openai, gemini). */
  budget?: Budget;
  source: SourceRef;
}

export interface Profile {
  name: string;
  /** Credential refs this profile may have injected. */
  credentials: string[];
  /** Endpoint refs visible to this profile; undefined means all. */
  endpoints?: string[];
  /** Commands `clawpatrol run` gates for devices of this profile (`gate = ["npm", "rm"]`). */
  gate?: string[];
  /** `budget { daily_usd = ... }`: what the profile's devices may spend on LLM APIs per UTC day. */
  budget?: Budget;
  source: SourceRef;
}

/** The facts of an HTTP request that CEL conditions see as `http.*`. */
export interface HttpFacts {
  /** `https` for intercepted TLS, `http` for plain HTTP (absent: https). */
  scheme?: "http" | "https";
  method: string;
  host: string;
  /** The path normalised (RFC 3986: unreserved escapes decoded, slashes merged). */
  path: string;
  /** The path exactly as the agent sent it. */
  rawPath?: string;
  /** First value per key of the query string. */
  query: Record<string, string>;
  /** Lower-cased header names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  /** The body as text, up to the inspection limit ("" when absent). */
  body: string;
  /** The parsed JSON body, or null when absent or not JSON. */
  bodyJson: unknown;
  /** True when the body was longer than the inspection limit. */
  bodyTruncated: boolean;
}

export interface RequestContext {
  device: string;
  profile: string;
  endpoint: Endpoint;
}

export interface Rule {
  name: string;
  /** Endpoint refs the rule applies to. */
  endpoints: string[];
  family: Family;
  priority: number;
  disabled: boolean;
  /** Profiles the rule applies to; undefined means all. */
  profiles?: string[];
  condition?: string;
  /** True when the condition reads facts gathered on demand (`http.body`, `http.body_json`; sql's parsed facets). */
  readsDeferred: boolean;
  verdict?: Verdict;
  /** Approver refs (`dashboard`, `human_approver.oncall`, ...), in order. */
  approve?: string[];
  reason?: string;
  credential?: string;
  /** `remember = "10m"`: an approval covers identical requests (same device, fingerprint, rule) this long. */
  rememberMs?: number;
  /** `mode = "shadow"` (or `defaults { mode = "shadow" }`): judged and recorded, never applied. Unset: enforced. */
  mode?: "shadow";
  /** `rate = "60/m"`: how often the rule may let an action through, counted per device (or `per`). */
  rate?: RateSpec;
  /** What an action over the rate gets: deny (the default; HTTP 429), or an approval chain. */
  overLimit?: { approve: string[] } | { verdict: "deny" };
  /** exec family: `timeout`, `env_scrub`, `allowed_paths`. */
  exec?: ExecRuleSettings;
  source: SourceRef;
}

/** What a shadow rule would have decided (recorded beside the real verdict, never applied). */
export interface ShadowVerdict {
  rule: string;
  would: "allow" | "deny" | "approve";
}

/** What the rule engine answers for one request. */
export interface Decision {
  verdict: Verdict | "approve";
  /** Name of the matched rule; undefined when the default applied. */
  rule?: string;
  /** Short, agent-safe reason. */
  reason: string;
  approvers?: string[];
  /** Credential ref to inject (rule's, else endpoint's). */
  credential?: string;
  /** Diagnostic for the log only (e.g. a CEL error); never sent to the agent. */
  detail?: string;
  /** Shadow rules that matched before the deciding one (or before the default), in evaluation order. */
  shadow?: ShadowVerdict[];
  /** The rule's rate limit was exceeded: the verdict is its over_limit; the agent may try again after this. */
  limited?: { rate: string; retryAfterMs: number };
  /** A daily spend budget covering the credential is spent: the verdict is its over_budget (HTTP 429 until the next UTC day). */
  overBudget?: { budget: string; dailyUsd: number; spentUsd: number; retryAfterMs: number };
}

export interface Approver {
  type: string;
  name: string;
  ref: string;
  settings: Record<string, unknown>;
  /** The validated, typed settings (see app/approvers/config.ts). */
  config?: ApproverConfig;
  source: SourceRef;
}

export interface Policy {
  /** Files the policy was loaded from, in merge order. */
  files: string[];
  schemaVersion: number;
  gateway: GatewaySettings;
  defaults: Defaults;
  endpoints: Map<string, Endpoint>;
  credentials: Map<string, Credential>;
  profiles: Map<string, Profile>;
  approvers: Map<string, Approver>;
  /** Enabled and disabled rules, sorted by priority (highest first), then declaration order. */
  rules: Rule[];
  /** `price "MODEL" {}` blocks: what LLM tokens cost (app/spend/prices.ts). */
  prices: Price[];
}
