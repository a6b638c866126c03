// endpoint "ssh" "NAME" {
//   hosts      = ["git.internal", "bastion.internal:2222"]   # port 22 unless named
//   host_key   = "ssh-ed25519 AAAA..."   # optional pin of the upstream's host key
//   credential = ssh_key.NAME            # or ssh_password.NAME
// }
// Claimed by address: SSH has no SNI, so each named host gets a DNS VIP, and
// a flow to that VIP (or to the name through the proxy) on any port reaches
// this endpoint, which dials the host on the port written here. An IP literal
// in hosts, and a name's real addresses (the conn index), are claimed only on
// the ports the block names.
import type { BlockReader } from "../../policy/hcl/reader.ts";
import type { EndpointSpec } from "../spec.ts";
import { parseHostPort } from "../attrs.ts";

export const SSH_DEFAULT_PORT = 22;

/** A public key as known_hosts and `ssh-keyscan` write it: the algorithm and the base64 blob. */
export interface SshPublicKey {
  type: string;
  /** The key blob, base64 (standard alphabet, padded). */
  blob: string;
}

/** endpoint.settings of an ssh endpoint. */
export interface SshSettings {
  /** The real servers, by the name the flow is claimed under. */
  upstreams: { host: string; port: number }[];
  /** The pinned upstream host key; unset: trusted on first use and recorded. */
  hostKey?: SshPublicKey;
}

export function sshSettings(settings: Readonly<Record<string, unknown>> | undefined): SshSettings {
  // Built by this module's build(); anything else is a programming error.
  if (!settings || !Array.isArray(settings.upstreams)) throw new Error("not an ssh endpoint's settings");
  return settings as unknown as SshSettings;
}

/**
 * Where a flow claimed by this endpoint is dialed: the host it was claimed
 * under, on the port `hosts` gives it, whatever port the agent used (a VIP
 * takes any port; an IP literal is claimed on any of the block's ports).
 */
export function upstreamFor(settings: SshSettings, claimed: { host: string; port: number }): { host: string; port: number } {
  const host = claimed.host.toLowerCase();
  return settings.upstreams.find((u) => u.host.toLowerCase() === host) ?? claimed;
}

const KEY_TYPES = new Set(["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"]);

/** `TYPE BASE64 [comment]`, checked: the blob's own type string must be TYPE. Undefined when it is not a public key. */
export function parsePublicKeyLine(text: string): SshPublicKey | undefined {
  const m = /^\s*(\S+)\s+([A-Za-z0-9+/]+={0,2})(\s.*)?$/.exec(text);
  if (!m || !KEY_TYPES.has(m[1]!)) return undefined;
  const bytes = Buffer.from(m[2]!, "base64");
  if (bytes.length < 4) return undefined;
  const n = bytes.readUInt32BE(0);
  if (4 + n > bytes.length || bytes.subarray(4, 4 + n).toString("latin1") !== m[1]) return undefined;
  return { type: m[1]!, blob: bytes.toString("base64") };
}

function readUpstreams(r: BlockReader): { host: string; port: number }[] {
  if (!r.has("hosts")) {
    r.error(r.block.line, 'missing hosts = ["NAME", "NAME:PORT", ...]');
    return [];
  }
  const values = r.list("hosts");
  if (values === undefined) return [];
  if (values.length === 0) r.error(r.line("hosts"), "hosts must name at least one server");
  const out: { host: string; port: number }[] = [];
  for (const v of values) {
    const hp = parseHostPort(v, SSH_DEFAULT_PORT);
    if (!hp) r.error(r.line("hosts"), `hosts: "${v}" is not HOST or HOST:PORT (a name or an IP literal; [v6]:port)`);
    else if (out.some((o) => o.host === hp.host)) r.error(r.line("hosts"), `hosts: "${hp.host}" is named twice`);
    else out.push(hp);
  }
  return out;
}

export const sshSpec: EndpointSpec = {
  type: "ssh",
  family: "ssh",
  defaultPorts: [SSH_DEFAULT_PORT],
  claim: "address",
  anyPortByName: true,
  serverSpeaksFirst: true,
  requiresVip: true,
  credentialTypes: ["ssh_key", "ssh_password"],
  attributes: ["hosts", "host_key"],
  build(r) {
    const upstreams = readUpstreams(r);
    const settings: SshSettings = { upstreams };
    const pin = r.string("host_key");
    if (pin !== undefined) {
      const key = parsePublicKeyLine(pin);
      if (key) settings.hostKey = key;
      else r.error(r.line("host_key"), `host_key must be a public key line as ssh-keyscan prints it ("ssh-ed25519 AAAA..."; one of ${[...KEY_TYPES].join(", ")})`);
    }
    return {
      hosts: upstreams.map((u) => u.host),
      ports: [...new Set(upstreams.map((u) => u.port))],
      settings: settings as unknown as Record<string, unknown>,
    };
  },
  load: () => import("./serve.ts").then((m) => m.sshHandler),
};
