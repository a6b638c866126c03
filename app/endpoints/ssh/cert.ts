// OpenSSH host certificates (PROTOCOL.certkeys), ed25519 only: the gateway's
// SSH CA signs each endpoint's host key for the endpoint's hosts, so a device
// whose known_hosts holds `@cert-authority HOSTS CA-KEY` connects without a
// prompt, whatever endpoint key the gateway made. ssh2 builds no certificates;
// the format is small:
//
//   string  "ssh-ed25519-cert-v01@openssh.com"
//   string  nonce            string  pk (32 bytes)
//   uint64  serial           uint32  type (2: host)
//   string  key id           string  valid principals (a list of strings)
//   uint64  valid after      uint64  valid before
//   string  critical options string  extensions (both empty for a host)
//   string  reserved         string  signature key (the CA's public key blob)
//   string  signature        (by the CA, over everything before it)
import { randomBytes } from "node:crypto";

export const ED25519 = "ssh-ed25519";
export const ED25519_CERT = "ssh-ed25519-cert-v01@openssh.com";
const SSH_CERT_TYPE_HOST = 2;

/** SSH wire encoding: a uint32 length, then the bytes. */
export function sshString(b: Uint8Array | string): Buffer {
  const body = typeof b === "string" ? Buffer.from(b, "utf8") : Buffer.from(b);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length, 0);
  return Buffer.concat([len, body]);
}

function uint64(n: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(n, 0);
  return b;
}

function uint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}

/** Reads the strings of an SSH wire blob in order; undefined when it is cut short. */
export function readStrings(blob: Uint8Array, count: number): Buffer[] | undefined {
  const buf = Buffer.from(blob);
  const out: Buffer[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 4 > buf.length) return undefined;
    const n = buf.readUInt32BE(p);
    if (p + 4 + n > buf.length) return undefined;
    out.push(buf.subarray(p + 4, p + 4 + n));
    p += 4 + n;
  }
  return out;
}

/** The 32-byte key of an `ssh-ed25519` public key blob. */
export function ed25519Key(blob: Uint8Array): Buffer {
  const parts = readStrings(blob, 2);
  if (!parts || parts[0]!.toString("latin1") !== ED25519 || parts[1]!.length !== 32) throw new Error("not an ssh-ed25519 public key blob");
  return parts[1]!;
}

export interface HostCertRequest {
  /** The host's public key blob (`ssh-ed25519`). */
  hostKey: Uint8Array;
  /** The CA's public key blob (`ssh-ed25519`). */
  caKey: Uint8Array;
  /** Signs with the CA's private key: returns the raw 64-byte ed25519 signature. */
  sign: (data: Buffer) => Uint8Array;
  /** The names and addresses the certificate is valid for (what the agent types). */
  principals: string[];
  keyId: string;
  /** Seconds since the epoch. */
  validAfter: number;
  validBefore: number;
  serial?: bigint;
  nonce?: Uint8Array;
}

/** An OpenSSH host certificate blob (what goes on the wire as the server's host key, and base64 in a -cert.pub file). */
export function hostCertificate(r: HostCertRequest): Buffer {
  const principals = Buffer.concat(r.principals.map((p) => sshString(p)));
  const body = Buffer.concat([
    sshString(ED25519_CERT),
    sshString(r.nonce ?? randomBytes(32)),
    sshString(ed25519Key(r.hostKey)),
    uint64(r.serial ?? 0n),
    uint32(SSH_CERT_TYPE_HOST),
    sshString(r.keyId),
    sshString(principals),
    uint64(BigInt(Math.max(0, Math.floor(r.validAfter)))),
    uint64(BigInt(Math.max(0, Math.floor(r.validBefore)))),
    sshString(""),
    sshString(""),
    sshString(""),
    sshString(r.caKey),
  ]);
  const signature = r.sign(body);
  if (signature.length !== 64) throw new Error("the CA's signature is not an ed25519 signature");
  return Buffer.concat([body, sshString(Buffer.concat([sshString(ED25519), sshString(signature)]))]);
}
