// Parsed HCL files -> a validated Policy, or every error found.
//   1. Declare: walk every file's top-level blocks in order, check block
//      types and labels, register names (duplicates are errors, also across
//      files).
//   2. Build: read each block's attributes, resolve references against the
//      registered names, compile rule conditions.
//   3. Sort rules by priority (highest first), then declaration order.
// Pure except for `readFile`, which the caller supplies (ca_cert).
import { parseAllowedDestination } from "../dispatch/destinations.ts";
import * as nodePath from "node:path";
import { parsePrefix } from "../net/wireguard/allowedips.ts";
import { readDuration, validateApprover } from "../approvers/config.ts";
import type { HclBlock, HclFile } from "./hcl/parse.ts";
import { BlockReader } from "./hcl/reader.ts";
import { readDnsBlock } from "../dns/config.ts";
import { readDashboardTlsBlock } from "../tls/dashboard-config.ts";
import { readClickHouseExportBlock } from "../events/export/config.ts";
import { specOf } from "../endpoints/registry.ts";
import { buildRule, credentialFits } from "./build-rule.ts";
import { readBudget, readPrice } from "../spend/config.ts";
import { providerOf } from "../spend/budget.ts";
import type { Price } from "../spend/prices.ts";
import { EXEC_DEFAULT_ATTRIBUTES, readExecSettings, readGateList } from "../gate/config.ts";
import {
  APPROVER_TYPES,
  CREDENTIAL_TYPES,
  DASHBOARD,
  ENDPOINT_TYPES,
  EXPECTED_FORM,
  FAMILY_OF,
  kindOfRef,
  parseRef,
  type RefKind,
} from "./refs.ts";
import type {
  Approver,
  ConfigError,
  Credential,
  CredentialType,
  Defaults,
  Endpoint,
  EndpointType,
  Family,
  GatewaySettings,
  Policy,
  Profile,
  Rule,
  SourceRef,
} from "./types.ts";

export interface BuildOptions {
  env: Record<string, string | undefined>;
  /** Reads a file the config points at (ca_cert); returns its text or an error message. */
  readFile(absolutePath: string): { ok: true; text: string } | { ok: false; error: string };
}

export type BuildResult =
  | { ok: true; policy: Policy; warnings: ConfigError[] }
  | { ok: false; errors: ConfigError[] };

const TOP_LEVEL_BLOCKS = ["gateway", "defaults", "endpoint", "credential", "profile", "approver", "rule", "price"];

const CREDENTIAL_SETTINGS: Record<CredentialType, { required: string[]; optional: string[] }> = {
  bearer_token: { required: [], optional: [] },
  header_token: { required: ["header"], optional: ["prefix"] },
  basic_auth: { required: [], optional: ["username"] },
  cookie_token: { required: ["cookie"], optional: [] },
  anthropic_manual_key: { required: [], optional: [] },
  openai_api_key: { required: [], optional: [] },
  github_token: { required: [], optional: [] },
  gemini_api_key: { required: [], optional: [] },
  passthrough: { required: [], optional: [] },
  postgres_password: { required: ["user"], optional: [] },
  clickhouse_password: { required: ["user"], optional: [] },
  k8s_client_cert: { required: ["certificate"], optional: [] },
  ssh_key: { required: ["user"], optional: ["passphrase_file"] },
  ssh_password: { required: ["user"], optional: [] },
};


const DEFAULT_STATE_DIR = "/var/lib/clawpatrol";
const DEFAULT_INSPECT_LIMIT = 1024 * 1024;

export interface Declared {
  block: HclBlock;
  source: SourceRef;
}

export function buildPolicy(files: HclFile[], opts: BuildOptions): BuildResult {
  const errors: ConfigError[] = [];
  const warnings: ConfigError[] = [];
  const fail = (file: string, line: number, message: string) => errors.push({ file, line, message });

  // 1. Declare.
  let schemaVersion: { value: unknown; file: string; line: number } | undefined;
  let gatewayBlock: Declared | undefined;
  let defaultsBlock: Declared | undefined;
  const endpointDecls = new Map<string, Declared>();
  const credentialDecls = new Map<string, Declared>(); // by name: secrets are looked up by name
  const profileDecls = new Map<string, Declared>();
  const approverDecls = new Map<string, Declared>();
  const ruleDecls = new Map<string, Declared>();
  const priceDecls = new Map<string, Declared>();

  const declareUnique = (map: Map<string, Declared>, key: string, what: string, block: HclBlock): boolean => {
    const first = map.get(key);
    if (first) {
      fail(block.file, block.line, `duplicate ${what} (first declared at ${first.source.file}:${first.source.line})`);
      return false;
    }
    map.set(key, { block, source: { file: block.file, line: block.line } });
    return true;
  };

  for (const file of files) {
    for (const a of file.attributes) {
      if (a.name !== "schema_version") {
        fail(file.file, a.line, `unknown attribute "${a.name}"; expected one of: schema_version`);
      } else if (schemaVersion && schemaVersion.value !== a.value) {
        fail(file.file, a.line, `schema_version differs from ${schemaVersion.file}:${schemaVersion.line}`);
      } else {
        schemaVersion ??= { value: a.value, file: file.file, line: a.line };
      }
    }
    for (const b of file.blocks) {
      const labelCount = { gateway: 0, defaults: 0, endpoint: 2, credential: 2, profile: 1, approver: 2, rule: 1, price: 1 }[b.type];
      if (labelCount === undefined) {
        fail(b.file, b.line, `unknown block "${b.type}"; expected one of: ${TOP_LEVEL_BLOCKS.join(", ")}`);
        continue;
      }
      if (b.labels.length !== labelCount) {
        fail(b.file, b.line, `${b.type} ${LABEL_USAGE[b.type]}`);
        continue;
      }
      const [l0 = "", l1 = ""] = b.labels;
      switch (b.type) {
        case "gateway":
        case "defaults": {
          const first = b.type === "gateway" ? gatewayBlock : defaultsBlock;
          if (first) {
            fail(b.file, b.line, `duplicate ${b.type} block (first declared at ${first.source.file}:${first.source.line})`);
            break;
          }
          const d = { block: b, source: { file: b.file, line: b.line } };
          if (b.type === "gateway") gatewayBlock = d;
          else defaultsBlock = d;
          break;
        }
        case "endpoint":
          if (!(ENDPOINT_TYPES as readonly string[]).includes(l0)) {
            fail(b.file, b.line, `unknown endpoint type "${l0}"; expected one of: ${ENDPOINT_TYPES.join(", ")}`);
          } else declareUnique(endpointDecls, `${l0}.${l1}`, `endpoint ${l0}.${l1}`, b);
          break;
        case "credential":
          if (!(CREDENTIAL_TYPES as readonly string[]).includes(l0)) {
            fail(b.file, b.line, `unknown credential type "${l0}"; expected one of: ${CREDENTIAL_TYPES.join(", ")}`);
          } else declareUnique(credentialDecls, l1, `credential "${l1}"`, b);
          break;
        case "approver":
          if (!(APPROVER_TYPES as readonly string[]).includes(l0)) {
            fail(b.file, b.line, `unknown approver type "${l0}"; expected one of: ${APPROVER_TYPES.join(", ")}`);
          } else declareUnique(approverDecls, `${l0}.${l1}`, `approver ${l0}.${l1}`, b);
          break;
        case "profile":
          declareUnique(profileDecls, l0, `profile "${l0}"`, b);
          break;
        case "rule":
          declareUnique(ruleDecls, l0, `rule "${l0}"`, b);
          break;
        case "price":
          declareUnique(priceDecls, l0, `price "${l0}"`, b);
          break;
      }
    }
  }

  const firstFile = files[0]?.file ?? "config";
  if (!schemaVersion) fail(firstFile, 1, "missing schema_version (add schema_version = 1)");
  else if (schemaVersion.value !== 1) {
    fail(schemaVersion.file, schemaVersion.line, `unsupported schema_version ${JSON.stringify(schemaVersion.value)}; this gateway reads schema_version = 1`);
  }

  // 2. Build, resolving references against what was declared.
  const resolve = (r: BlockReader, attr: string, value: string, kind: RefKind): string | undefined => {
    const line = r.line(attr);
    const parsed = parseRef(value);
    if (!parsed.ok) {
      const text = parsed.reason === "string" ? `the string "${parsed.text}"` : `the expression ${parsed.text}`;
      r.error(line, `${attr} must be ${EXPECTED_FORM[kind]}, not ${text}`);
      return undefined;
    }
    const actual = kindOfRef(parsed.head, parsed.name);
    if (actual === undefined) {
      r.error(line, `${attr}: unknown reference ${parsed.ref}; expected ${EXPECTED_FORM[kind]}`);
      return undefined;
    }
    if (actual !== kind) {
      r.error(line, `${attr} must be ${EXPECTED_FORM[kind]}, not ${actual} ${parsed.ref}`);
      return undefined;
    }
    const name = parsed.name ?? "";
    switch (kind) {
      case "endpoint":
        if (endpointDecls.has(parsed.ref)) return parsed.ref;
        break;
      case "credential": {
        const d = credentialDecls.get(name);
        if (d && d.block.labels[0] === parsed.head) return parsed.ref;
        if (d) {
          r.error(line, `${attr}: unknown credential ${parsed.ref} ("${name}" is declared as ${d.block.labels[0]}.${name})`);
          return undefined;
        }
        break;
      }
      case "profile":
        if (profileDecls.has(name)) return name;
        break;
      case "approver":
        if (parsed.ref === DASHBOARD || approverDecls.has(parsed.ref)) return parsed.ref;
        break;
    }
    r.error(line, `${attr}: unknown ${kind} ${parsed.ref}`);
    return undefined;
  };
  const resolveOne = (r: BlockReader, attr: string, kind: RefKind): string | undefined => {
    if (!r.has(attr)) return undefined;
    const v = r.raw(attr);
    if (typeof v !== "string") {
      r.error(r.line(attr), `${attr} must be ${EXPECTED_FORM[kind]}`);
      return undefined;
    }
    return resolve(r, attr, v, kind);
  };
  /** undefined when absent; a list with only the refs that resolved otherwise. */
  const resolveList = (r: BlockReader, attr: string, kind: RefKind): string[] | undefined => {
    const values = r.list(attr);
    if (values === undefined) return r.has(attr) ? [] : undefined;
    const out: string[] = [];
    for (const v of values) {
      const ref = resolve(r, attr, v, kind);
      if (ref !== undefined) out.push(ref);
    }
    return out;
  };

  const resolveApprovers = (r: BlockReader, attr: string) => resolveList(r, attr, "approver");
  const prices: Price[] = [];
  for (const d of priceDecls.values()) {
    const price = readPrice(d.block, errors);
    if (price) prices.push(price);
  }

  const gateway = buildGateway(gatewayBlock?.block, errors, opts.env, opts.readFile, (r, attr) => resolveOne(r, attr, "credential"));

  const endpoints = new Map<string, Endpoint>();
  for (const [ref, d] of endpointDecls) {
    const [type = "https", name = ""] = d.block.labels;
    const spec = specOf(type as EndpointType);
    const r = new BlockReader(d.block, `endpoint ${ref}`, errors);
    r.allow([...spec.attributes, "credential"]);
    const built = spec.build(r, {
      readText: (reader, attr) => {
        const file = reader.string(attr);
        if (file === undefined) return undefined;
        const read = opts.readFile(nodePath.resolve(nodePath.dirname(d.block.file), file));
        if (read.ok) return read.text;
        reader.error(reader.line(attr), `${attr}: cannot read ${file}: ${read.error}`);
        return undefined;
      },
    });
    const endpoint: Endpoint = { type: spec.type, name, ref, family: spec.family, hosts: built.hosts, source: d.source };
    if (built.ports !== undefined) endpoint.ports = built.ports;
    if (built.caCertPem !== undefined) endpoint.caCertPem = built.caCertPem;
    if (built.settings !== undefined) endpoint.settings = built.settings;
    const credential = resolveOne(r, "credential", "credential");
    if (credential !== undefined) {
      const fits = credentialFits(credential, spec.credentialTypes);
      if (fits) r.error(r.line("credential"), fits);
      else endpoint.credential = credential;
    }
    endpoints.set(ref, endpoint);
  }

  warnings.push(...overlappingHosts(endpoints));

  const credentials = new Map<string, Credential>();
  for (const [name, d] of credentialDecls) {
    const type = d.block.labels[0] as CredentialType;
    const spec = CREDENTIAL_SETTINGS[type];
    const r = new BlockReader(d.block, `credential ${type}.${name}`, errors);
    const metered = providerOf(type) !== undefined;
    r.allow([...spec.required, ...spec.optional, "secret_file"], metered ? ["budget"] : []);
    const settings: Record<string, string> = {};
    for (const key of spec.required) r.required(key);
    for (const key of [...spec.required, ...spec.optional]) {
      const v = r.string(key);
      if (v !== undefined) settings[key] = v;
    }
    const credential: Credential = { type, name, ref: `${type}.${name}`, settings, source: d.source };
    if (type === "k8s_client_cert") readClientCertificate(r, credential, nodePath.dirname(d.block.file), opts.readFile);
    const secretFile = r.string("secret_file");
    if (secretFile !== undefined) credential.secretFile = nodePath.resolve(nodePath.dirname(d.block.file), secretFile);
    const budget = metered ? readBudget(r, errors, { owner: `credential ${credential.ref}`, pers: ["credential", "device"], resolveApprovers }) : undefined;
    if (budget) credential.budget = budget;
    credentials.set(credential.ref, credential);
  }

  const profiles = new Map<string, Profile>();
  for (const [name, d] of profileDecls) {
    const r = new BlockReader(d.block, `profile "${name}"`, errors);
    r.allow(["credentials", "endpoints", "gate"], ["budget"]);
    const profile: Profile = { name, credentials: resolveList(r, "credentials", "credential") ?? [], source: d.source };
    const gate = readGateList(r);
    if (gate !== undefined) profile.gate = gate;
    const visible = resolveList(r, "endpoints", "endpoint");
    if (visible !== undefined) profile.endpoints = visible;
    const budget = readBudget(r, errors, { owner: `profile "${name}"`, pers: ["device", "profile"], resolveApprovers });
    if (budget) profile.budget = budget;
    if (!r.has("credentials")) warnings.push({ ...d.source, message: `profile "${name}" grants no credentials` });
    profiles.set(name, profile);
  }

  const approvers = new Map<string, Approver>();
  for (const [ref, d] of approverDecls) {
    const [type = "", name = ""] = d.block.labels;
    // Settings are validated and typed by app/approvers/config.ts; the raw form stays for channel plugins.
    const config = validateApprover(type, name, d.block, errors, {
      resolveCredential: (r, attr) => resolveOne(r, attr, "credential"),
      publicUrl: gateway.publicUrl,
    });
    const approver: Approver = { type, name, ref, settings: { ...d.block.raw }, source: d.source };
    if (config) approver.config = config;
    approvers.set(ref, approver);
  }

  const defaults = buildDefaults(defaultsBlock?.block, errors, (r) => {
    if (!r.has("profile")) return undefined;
    const v = r.raw("profile");
    // A plain name is accepted here as well as profile.NAME.
    if (typeof v === "string" && !v.includes("${")) {
      if (profileDecls.has(v)) return v;
      r.error(r.line("profile"), `profile: unknown profile "${v}"`);
      return undefined;
    }
    return resolveOne(r, "profile", "profile");
  });

  const rules: Rule[] = [];
  for (const [name, d] of ruleDecls) {
    const rule = buildRule(name, d, errors, endpoints, { resolveOne, resolveList }, defaults.ruleMode);
    if (rule) rules.push(rule);
  }

  // A budget counts what priced responses cost: without prices it could never be reached.
  if (prices.length === 0) {
    const owners = [...profiles.values(), ...credentials.values()].filter((o) => o.budget);
    for (const o of owners) fail(o.budget!.source.file, o.budget!.source.line, `budget: no price is configured, so no spend can be counted; add price "MODEL" { input_per_mtok = ..., output_per_mtok = ... } blocks`);
  }

  // 3. Sort: highest priority first; Array.prototype.sort is stable, so ties keep declaration order.
  rules.sort((a, b) => b.priority - a.priority);

  if (errors.length > 0) return { ok: false, errors: sortErrors(errors, files) };
  const policy: Policy = {
    files: files.map((f) => f.file),
    schemaVersion: 1,
    gateway,
    defaults,
    endpoints,
    credentials,
    profiles,
    approvers,
    rules,
    prices,
  };
  return { ok: true, policy, warnings: sortErrors(warnings, files) };
}

const LABEL_USAGE: Record<string, string> = {
  gateway: "takes no labels: gateway { ... }",
  defaults: "takes no labels: defaults { ... }",
  endpoint: 'needs a type and a name: endpoint "https" "NAME" { ... }',
  credential: 'needs a type and a name: credential "TYPE" "NAME" { ... }',
  approver: 'needs a type and a name: approver "TYPE" "NAME" { ... }',
  profile: 'needs one name: profile "NAME" { ... }',
  rule: 'needs one name: rule "NAME" { ... }',
  price: 'needs one model name or pattern: price "claude-sonnet-4*" { ... }',
};


/**
 * The same host pattern on two endpoints that claim it the same way (by SNI,
 * or by address) on a shared port: the first declared wins wherever a
 * profile sees both. Endpoints on one host told apart by port or by how they
 * claim flows (clickhouse_native on 9000 beside clickhouse_https on 443) do not.
 */
function overlappingHosts(endpoints: Map<string, Endpoint>): ConfigError[] {
  const owners = new Map<string, Endpoint[]>();
  const warnings: ConfigError[] = [];
  for (const e of endpoints.values()) {
    const spec = specOf(e.type);
    const ports = e.ports ?? spec.defaultPorts;
    for (const host of e.hosts) {
      const key = `${spec.claim}\0${host}`;
      const earlier = owners.get(key) ?? [];
      const first = earlier.find((o) => o !== e && (o.ports ?? specOf(o.type).defaultPorts).some((p) => ports.includes(p)));
      if (first) warnings.push({ ...e.source, message: `endpoint ${e.ref}: host "${host}" is also claimed by ${first.ref}, which wins for profiles that see both` });
      owners.set(key, [...earlier, e]);
    }
  }
  return warnings;
}

function buildGateway(
  block: HclBlock | undefined,
  errors: ConfigError[],
  env: Record<string, string | undefined>,
  readFile: BuildOptions["readFile"],
  resolveCredential: (r: BlockReader, attr: string) => string | undefined,
): GatewaySettings {
  const base = block ? nodePath.dirname(nodePath.resolve(block.file)) : process.cwd();
  const r = block ? new BlockReader(block, "gateway", errors) : undefined;
  r?.allow(["state_dir", "control_socket", "dashboard_listen", "public_url", "upstream_ca_file"], ["proxy", "events", "wireguard", "dns", "dashboard_tls"]);

  const envStateDir = env.CLAWPATROL_STATE_DIR;
  const configured = r?.string("state_dir");
  const stateDir = envStateDir
    ? nodePath.resolve(envStateDir)
    : configured !== undefined
      ? nodePath.resolve(base, configured)
      : DEFAULT_STATE_DIR;
  const controlSocket = r?.string("control_socket");
  const gateway: GatewaySettings = {
    stateDir,
    controlSocket: controlSocket !== undefined ? nodePath.resolve(base, controlSocket) : nodePath.join(stateDir, "control.sock"),
    dashboardListen: r?.string("dashboard_listen") ?? "127.0.0.1:8080",
    eventsRetentionDays: 30,
  };
  const publicUrl = r?.string("public_url");
  if (publicUrl !== undefined && !/^https?:\/\/[^\s/]+(\/.*)?$/.test(publicUrl)) {
    r?.error(r.line("public_url"), `public_url must be an http(s) URL, not "${publicUrl}"`);
  }
  if (publicUrl !== undefined) gateway.publicUrl = publicUrl.replace(/\/+$/, "");
  const upstreamCaFile = r?.string("upstream_ca_file");
  if (r && upstreamCaFile !== undefined) {
    const read = readFile(nodePath.resolve(base, upstreamCaFile));
    if (!read.ok) r.error(r.line("upstream_ca_file"), `upstream_ca_file: cannot read ${upstreamCaFile}: ${read.error}`);
    else if (!read.text.includes("-----BEGIN CERTIFICATE-----")) r.error(r.line("upstream_ca_file"), `upstream_ca_file: ${upstreamCaFile} holds no PEM certificate`);
    else gateway.upstreamCaPem = read.text;
  }

  const nested = (type: string): HclBlock | undefined => {
    const all = block?.blocks.filter((b) => b.type === type) ?? [];
    for (const extra of all.slice(1)) errors.push({ file: extra.file, line: extra.line, message: `gateway: duplicate ${type} block` });
    return all[0];
  };
  const proxyBlock = nested("proxy");
  if (proxyBlock) {
    const p = new BlockReader(proxyBlock, "gateway.proxy", errors);
    p.allow(["listen", "socks5_listen"]);
    const listen = p.required("listen") ? p.string("listen") : undefined;
    if (listen !== undefined) {
      gateway.proxy = { listen };
      const socks5 = p.string("socks5_listen");
      if (socks5 !== undefined) gateway.proxy.socks5Listen = socks5;
    }
  }
  const wgBlock = nested("wireguard");
  if (wgBlock) {
    const w = new BlockReader(wgBlock, "gateway.wireguard", errors);
    w.allow(["mode", "listen", "subnet_cidr", "subnet6_cidr", "endpoint", "interface", "tun", "tun_offload"]);
    const listen = w.string("listen") ?? "0.0.0.0:51820";
    if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(listen)) w.error(w.line("listen"), `listen must be host:port, not "${listen}"`);
    const subnetCidr = w.string("subnet_cidr") ?? "10.77.0.0/16";
    const prefix = parsePrefix(subnetCidr);
    if (!prefix || !subnetCidr.includes("/") || prefix.address.length !== 4 || prefix.bits > 30) {
      w.error(w.line("subnet_cidr"), `subnet_cidr must be an IPv4 network of /30 or larger, like "10.77.0.0/16", not "${subnetCidr}"`);
    }
    gateway.wireguard = {
      mode: w.oneOf("mode", ["userspace", "kernel"] as const) ?? "userspace",
      listen,
      subnetCidr,
      interface: w.string("interface") ?? "wg0",
      tun: w.string("tun") ?? "cp0",
    };
    const endpoint = w.string("endpoint");
    if (endpoint !== undefined) gateway.wireguard.endpoint = endpoint;
    if (w.bool("tun_offload") === true) gateway.wireguard.tunOffload = true;
    const subnet6Cidr = w.string("subnet6_cidr");
    if (subnet6Cidr !== undefined) {
      const p6 = parsePrefix(subnet6Cidr);
      const hostBitsZero = p6 !== undefined && p6.address.length === 16 && p6.address.every((byte, i) => {
        const keep = Math.max(0, Math.min(8, p6.bits - i * 8));
        return (byte & (0xff >> keep)) === 0;
      });
      if (!p6 || !subnet6Cidr.includes("/") || p6.address.length !== 16 || p6.bits > 120 || !hostBitsZero) {
        w.error(w.line("subnet6_cidr"), `subnet6_cidr must be an IPv6 network of /120 or larger with its host bits zero, like "fd77:7a70::/64", not "${subnet6Cidr}"`);
      } else {
        gateway.wireguard.subnet6Cidr = subnet6Cidr;
      }
    }
  }
  const dnsBlock = nested("dns");
  if (dnsBlock) gateway.dns = readDnsBlock(new BlockReader(dnsBlock, "gateway.dns", errors));
  const tlsBlock = nested("dashboard_tls");
  const dashboardTls = tlsBlock ? readDashboardTlsBlock(new BlockReader(tlsBlock, "gateway.dashboard_tls", errors), base, readFile, { publicUrl: gateway.publicUrl, dashboardListen: gateway.dashboardListen, errors }) : undefined;
  if (dashboardTls) gateway.dashboardTls = dashboardTls;
  const eventsBlock = nested("events");
  if (eventsBlock) {
    const e = new BlockReader(eventsBlock, "gateway.events", errors);
    e.allow(["jsonl", "retention_days"], ["clickhouse"]);
    const jsonl = e.string("jsonl");
    if (jsonl !== undefined) gateway.eventsJsonl = nodePath.resolve(stateDir, jsonl);
    gateway.eventsRetentionDays = e.integer("retention_days", 1) ?? 30;
    // The audit export (app/events/export/config.ts).
    const chBlocks = eventsBlock.blocks.filter((b) => b.type === "clickhouse");
    for (const extra of chBlocks.slice(1)) errors.push({ file: extra.file, line: extra.line, message: "gateway.events: duplicate clickhouse block" });
    if (chBlocks[0]) {
      const ch = readClickHouseExportBlock(new BlockReader(chBlocks[0], "gateway.events.clickhouse", errors), { resolveCredential, parseSize });
      if (ch) gateway.eventsClickhouse = ch;
    }
  }
  return gateway;
}

/** Per-device quota attributes of `defaults` (app/dispatch/quotas.ts). */
const QUOTA_ATTRIBUTES = {
  quota_tcp_flows: "tcpFlows",
  quota_udp_flows: "udpFlows",
  quota_dns_connections: "dnsConnections",
  quota_new_flows_per_second: "newFlowsPerSecond",
  quota_buffered_bytes: "bufferedBytes",
} as const;

function buildDefaults(
  block: HclBlock | undefined,
  errors: ConfigError[],
  resolveProfile: (r: BlockReader) => string | undefined,
): Defaults {
  const defaults: Defaults = {
    verdict: "deny",
    unknownHost: "passthrough",
    udp: "drop",
    inspectLimitBytes: DEFAULT_INSPECT_LIMIT,
    headerTimeoutMs: 30_000,
    idleTimeoutMs: 120_000,
    minRateBytesPerSec: 1024,
  };
  if (!block) return defaults;
  const r = new BlockReader(block, "defaults", errors);
  r.allow(["verdict", "mode", "unknown_host", "profile", "udp", "inspect_limit", "allow_destinations", ...Object.keys(QUOTA_ATTRIBUTES), "header_timeout", "idle_timeout", "min_rate", ...EXEC_DEFAULT_ATTRIBUTES]);
  const exec = readExecSettings(r, "exec_timeout");
  if (exec !== undefined) defaults.exec = exec;
  defaults.headerTimeoutMs = readDuration(r, "header_timeout", 1000) ?? defaults.headerTimeoutMs;
  defaults.idleTimeoutMs = readDuration(r, "idle_timeout", 1000) ?? defaults.idleTimeoutMs;
  if (r.has("min_rate")) {
    const rate = parseSize(r.raw("min_rate"));
    if (rate === undefined) r.error(r.line("min_rate"), 'min_rate must be bytes per second, like "1KiB" (0 turns it off)');
    else defaults.minRateBytesPerSec = rate;
  }
  defaults.verdict = r.oneOf("verdict", ["allow", "deny"] as const) ?? defaults.verdict;
  if (r.oneOf("mode", ["enforce", "shadow"] as const) === "shadow") defaults.ruleMode = "shadow";
  defaults.unknownHost = r.oneOf("unknown_host", ["passthrough", "deny"] as const) ?? defaults.unknownHost;
  defaults.udp = r.oneOf("udp", ["relay", "drop"] as const) ?? defaults.udp;
  const profile = resolveProfile(r);
  if (profile !== undefined) defaults.profile = profile;
  if (r.has("inspect_limit")) {
    const size = parseSize(r.raw("inspect_limit"));
    if (size === undefined) r.error(r.line("inspect_limit"), 'inspect_limit must be a byte count or a size like "1MiB"');
    else defaults.inspectLimitBytes = size;
  }
  const allowDestinations = r.list("allow_destinations");
  if (allowDestinations !== undefined) {
    const bad = allowDestinations.filter((d) => parseAllowedDestination(d) === undefined);
    if (bad.length > 0) r.error(r.line("allow_destinations"), `allow_destinations: not an address, CIDR or address:port: ${bad.map((b) => JSON.stringify(b)).join(", ")}`);
    else defaults.allowDestinations = allowDestinations;
  }
  for (const [attr, key] of Object.entries(QUOTA_ATTRIBUTES)) {
    const v = !r.has(attr) ? undefined : key === "bufferedBytes" ? readBufferedBytes(r, attr) : r.integer(attr, 1);
    if (v !== undefined) defaults.quotas = { ...defaults.quotas, [key]: v };
  }
  return defaults;
}

/** quota_buffered_bytes: a size like "64MiB", at least 64 KiB (one connection's window must fit). */
function readBufferedBytes(r: BlockReader, attr: string): number | undefined {
  const size = parseSize(r.raw(attr));
  if (size === undefined || size < 64 * 1024) {
    r.error(r.line(attr), `${attr} must be a size like "64MiB", at least 64KiB`);
    return undefined;
  }
  return size;
}

const SIZE_UNITS: Record<string, number> = { "": 1, b: 1, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 };

/** A byte count (number) or a size string like "512KiB" / "1MiB". */
export function parseSize(v: unknown): number | undefined {
  if (typeof v === "number") return Number.isInteger(v) && v >= 0 ? v : undefined;
  if (typeof v !== "string") return undefined;
  const m = /^\s*(\d+)\s*([A-Za-z]*)\s*$/.exec(v);
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  return m && unit !== undefined ? Number(m[1]) * unit : undefined;
}

/** Errors in file order, then line order; same-line errors keep the order found. */
function sortErrors(errors: ConfigError[], files: HclFile[]): ConfigError[] {
  const order = new Map(files.map((f, i) => [f.file, i]));
  return [...errors].sort((a, b) => (order.get(a.file) ?? 0) - (order.get(b.file) ?? 0) || a.line - b.line);
}

/** k8s_client_cert: `certificate` is a PEM file beside the config (public; the key is the secret), read now. */
function readClientCertificate(r: BlockReader, credential: Credential, dir: string, readFile: BuildOptions["readFile"]): void {
  const file = credential.settings.certificate;
  if (file === undefined) return;
  const path = nodePath.resolve(dir, file);
  const read = readFile(path);
  if (!read.ok) r.error(r.line("certificate"), `certificate: cannot read ${file}: ${read.error}`);
  else if (!read.text.includes("-----BEGIN CERTIFICATE-----")) r.error(r.line("certificate"), `certificate: ${file} holds no PEM certificate`);
  else credential.settings = { ...credential.settings, certificate: path, certificate_pem: read.text };
}
