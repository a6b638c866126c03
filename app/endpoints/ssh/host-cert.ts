// Offering an OpenSSH host certificate from an ssh2 Server, which knows no
// certificates (ssh2 1.17's internals, in this one module):
//   1. a host key ssh2 takes as already parsed (it inherits the real key's
//      private state) whose type is the certificate's algorithm and whose
//      public blob is the certificate: ssh2 offers the algorithm, and a
//      client that trusts the gateway's CA picks it;
//   2. ssh2 then names the key exchange reply's signature after the
//      negotiated algorithm, but a certificate's signature is its key's own
//      (`ssh-ed25519`, PROTOCOL.certkeys), and OpenSSH refuses any other
//      name: every key exchange reply is rewritten in the connection's
//      cipher, before it is encrypted (or sent in clear, the first time).
import type { Connection, ParsedKey } from "ssh2";
import { ED25519, ED25519_CERT, readStrings, sshString } from "./cert.ts";

/** SSH_MSG_KEXDH_REPLY / KEX_ECDH_REPLY, and SSH_MSG_KEX_DH_GEX_REPLY. */
const KEX_REPLIES = new Set([31, 33]);

/** `key` presented as the certificate `cert` (ssh2 signs with the key; the certificate is the public blob). */
export function certifiedHostKey(key: ParsedKey, cert: Buffer): ParsedKey {
  const certified = Object.create(key) as ParsedKey;
  Object.defineProperties(certified, {
    type: { value: ED25519_CERT },
    getPublicSSH: { value: () => cert },
    sign: { value: (data: Buffer, algo?: string) => key.sign(data, algo) },
  });
  return certified;
}

/**
 * A key exchange reply that carries `cert` as the host key, with its
 * signature renamed `ssh-ed25519`; undefined for any other payload.
 *   byte msg, string K_S, string (f | Q_S), string signature (string name, string blob)
 */
export function fixKexReply(payload: Buffer, cert: Buffer): Buffer | undefined {
  if (payload.length < 1 || !KEX_REPLIES.has(payload[0]!)) return undefined;
  const parts = readStrings(payload.subarray(1), 3);
  if (!parts || !parts[0]!.equals(cert)) return undefined;
  const sig = readStrings(parts[2]!, 2);
  if (!sig || sig[0]!.toString("latin1") !== ED25519_CERT) return undefined;
  const signature = Buffer.concat([sshString(ED25519), sshString(sig[1]!)]);
  return Buffer.concat([payload.subarray(0, 1), sshString(parts[0]!), sshString(parts[1]!), sshString(signature)]);
}

interface CipherInternals {
  allocPacket(payloadLen: number): Buffer;
  encrypt(packet: Buffer): void;
}

/**
 * Each cipher ssh2 installs on the connection (the clear one of the first
 * key exchange, then one per NEWKEYS) fixes the reply before it encrypts it.
 * Called from the server's "connection" event: the client's version line is
 * in, ssh2 has not sent its KEXINIT yet.
 */
export function fixKexReplies(conn: Connection, cert: Buffer): void {
  const protocol = (conn as unknown as { _protocol?: { _cipher: CipherInternals } })._protocol;
  if (!protocol) return;
  const wrap = (cipher: CipherInternals): CipherInternals => {
    const encrypt = cipher.encrypt.bind(cipher);
    cipher.encrypt = (packet: Buffer) => {
      // Only a key exchange reply can need it: look no further for anything else.
      if (packet.length > 5 && KEX_REPLIES.has(packet[5]!)) {
        const len = packet.readUInt32BE(0);
        const payload = packet.subarray(5, 4 + len - packet[4]!);
        const reply = fixKexReply(payload, cert);
        if (reply) {
          const out = cipher.allocPacket(reply.length);
          reply.copy(out, 5);
          return encrypt(out);
        }
      }
      return encrypt(packet);
    };
    return cipher;
  };
  let current = wrap(protocol._cipher);
  Object.defineProperty(protocol, "_cipher", {
    configurable: true,
    enumerable: true,
    get: () => current,
    set: (c: CipherInternals) => {
      current = wrap(c);
    },
  });
}
