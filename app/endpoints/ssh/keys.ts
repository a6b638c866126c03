// The SSH endpoint's keys in the state database (migration 8):
//   1. the host key the gateway shows agents: one ed25519 key per endpoint,
//      made on first use, encrypted with the master key; the same key after
//      a restart, so known_hosts lines stay valid;
//   2. the gateway's SSH CA (a row of the same table), which signs each
//      endpoint's host key into a host certificate for the endpoint's hosts;
//   3. each upstream's host key as first seen (trust on first use).
// hostKeyVerdict is the pure decision about a presented upstream key.
import type { Database } from "bun:sqlite";
import { createHash } from "node:crypto";
import ssh2 from "ssh2";
import { decryptSecret, encryptSecret, loadOrCreateMasterKey } from "../../store/secrets.ts";
import type { SshPublicKey } from "./spec.ts";
import { hostCertificate } from "./cert.ts";

export interface GatewayHostKey {
  /** OpenSSH private key text (for ssh2's Server). */
  privateKey: string;
  /** `ssh-ed25519 AAAA...`, as known_hosts takes it. */
  publicKey: string;
}

const aadName = (endpoint: string) => `ssh-host-key:${endpoint}`;

/** The endpoint's host key toward agents, made and stored the first time it is asked for. */
export function gatewayHostKey(db: Database, stateDir: string, endpoint: string, now: number): GatewayHostKey {
  const master = loadOrCreateMasterKey(stateDir);
  const read = (): GatewayHostKey | undefined => {
    const row = db.query("SELECT nonce, private_key, public_key FROM ssh_host_keys WHERE endpoint = ?").get(endpoint) as
      | { nonce: Uint8Array; private_key: Uint8Array; public_key: string }
      | null;
    return row ? { privateKey: decryptSecret(master, aadName(endpoint), row.nonce, row.private_key), publicKey: row.public_key } : undefined;
  };
  const found = read();
  if (found) return found;
  const pair = ssh2.utils.generateKeyPairSync("ed25519");
  const publicKey = pair.public.trim().split(/\s+/).slice(0, 2).join(" ");
  const sealed = encryptSecret(master, aadName(endpoint), pair.private);
  // Two flows of a new endpoint may race: the first insert wins and both read it back.
  db.query("INSERT OR IGNORE INTO ssh_host_keys (endpoint, nonce, private_key, public_key, created_at) VALUES (?, ?, ?, ?, ?)").run(
    endpoint,
    sealed.nonce,
    sealed.ciphertext,
    publicKey,
    now,
  );
  return read()!;
}

/** Upstream host keys as first seen, by host and port. */
export class KnownUpstreams {
  constructor(private readonly db: Database) {}

  get(host: string, port: number): SshPublicKey | undefined {
    const row = this.db.query("SELECT key_type, key_blob FROM ssh_upstream_keys WHERE host = ? AND port = ?").get(host, port) as
      | { key_type: string; key_blob: string }
      | null;
    return row ? { type: row.key_type, blob: row.key_blob } : undefined;
  }

  /** Records the key unless one is known already (the first one stays). */
  record(host: string, port: number, key: SshPublicKey, now: number): void {
    this.db.query("INSERT OR IGNORE INTO ssh_upstream_keys (host, port, key_type, key_blob, first_seen) VALUES (?, ?, ?, ?, ?)").run(host, port, key.type, key.blob, now);
  }
}

export type HostKeyVerdict =
  | { verdict: "accept"; reason: string }
  | { verdict: "record"; reason: string }
  | { verdict: "refuse"; reason: string };

/**
 * The upstream's presented key against the endpoint's pin (host_key) or,
 * without one, the key recorded the first time this host:port was reached.
 */
export function hostKeyVerdict(presented: SshPublicKey, pin: SshPublicKey | undefined, known: SshPublicKey | undefined): HostKeyVerdict {
  const same = (a: SshPublicKey, b: SshPublicKey) => a.type === b.type && a.blob === b.blob;
  if (pin) {
    return same(presented, pin)
      ? { verdict: "accept", reason: "matches host_key" }
      : { verdict: "refuse", reason: `the upstream's ${presented.type} host key does not match host_key (${fingerprintOf(presented)}, expected ${fingerprintOf(pin)})` };
  }
  if (!known) return { verdict: "record", reason: `first use: ${presented.type} ${fingerprintOf(presented)} recorded` };
  return same(presented, known)
    ? { verdict: "accept", reason: "matches the key recorded on first use" }
    : {
        verdict: "refuse",
        reason: `the upstream's host key changed (${presented.type} ${fingerprintOf(presented)}; first seen ${known.type} ${fingerprintOf(known)}): refused until an operator pins host_key or forgets the old key`,
      };
}

/** OpenSSH's form: `SHA256:` and the unpadded base64 of the blob's SHA-256. */
export function fingerprintOf(key: SshPublicKey): string {
  const digest = createHash("sha256").update(Buffer.from(key.blob, "base64")).digest("base64");
  return `SHA256:${digest.replace(/=+$/, "")}`;
}

/** A raw key blob as the SSH wire carries it (string type, then the key) into its parts. */
export function publicKeyOfBlob(blob: Buffer): SshPublicKey | undefined {
  if (blob.length < 4) return undefined;
  const n = blob.readUInt32BE(0);
  if (4 + n > blob.length) return undefined;
  return { type: blob.subarray(4, 4 + n).toString("latin1"), blob: blob.toString("base64") };
}

/** The row of ssh_host_keys that holds the gateway's SSH CA ("@" is never in an endpoint ref). */
export const SSH_CA_ROW = "@gateway-ssh-ca";

/** The gateway's SSH CA: an ed25519 key made on first use, kept like the endpoints' host keys. */
export function gatewaySshCa(db: Database, stateDir: string, now: number): GatewayHostKey {
  return gatewayHostKey(db, stateDir, SSH_CA_ROW, now);
}

/** How long a host certificate is valid either side of the moment it is made (one per connection). */
const CERT_BEFORE_S = 24 * 3600;
const CERT_AFTER_S = 365 * 24 * 3600;

/** The endpoint's host key signed by the CA for `principals`: the certificate blob. */
export function hostCertFor(hostKey: GatewayHostKey, ca: GatewayHostKey, endpoint: string, principals: string[], now: number): Buffer {
  const parse = (text: string) => {
    const k = ssh2.utils.parseKey(text);
    if (k instanceof Error || Array.isArray(k)) throw new Error("a stored ssh key does not parse");
    return k;
  };
  const host = parse(hostKey.privateKey);
  const caKey = parse(ca.privateKey);
  const seconds = Math.floor(now / 1000);
  return hostCertificate({
    hostKey: host.getPublicSSH(),
    caKey: caKey.getPublicSSH(),
    sign: (data) => {
      const sig = caKey.sign(data);
      if (sig instanceof Error) throw sig;
      return sig;
    },
    principals,
    keyId: `clawpatrol ${endpoint}`,
    validAfter: seconds - CERT_BEFORE_S,
    validBefore: seconds + CERT_AFTER_S,
  });
}
