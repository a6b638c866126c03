// The upstream TLS context for a k8s_client_cert credential: the roots the
// gateway trusts for every upstream plus the endpoint's ca_cert, and the
// client certificate and key the API server authenticates (mutual TLS).
// Contexts are cached by what went into them; the key stays in memory here
// and in the TLS library, never in a log or an error.
import { createHash } from "node:crypto";
import tls from "node:tls";
import { splitPemCertificates, type TrustStore } from "../../tls/trust.ts";

/** A client certificate an upstream connection presents. */
export interface ClientCertificate {
  /** The credential's ref: connections presenting different certificates are never pooled together. */
  ref: string;
  certPem: string;
  keyPem: string;
}

const MAX_CACHED = 64;
const contexts = new Map<string, tls.SecureContext>();

export function mutualTlsContext(trust: TrustStore, endpointCaPem: string | undefined, cert: ClientCertificate): tls.SecureContext {
  const key = createHash("sha256").update(`${endpointCaPem ?? ""}\0${cert.certPem}\0${cert.keyPem}`).digest("hex");
  let ctx = contexts.get(key);
  if (!ctx) {
    try {
      ctx = tls.createSecureContext({ ca: [...trust.roots(), ...splitPemCertificates(endpointCaPem ?? "")], cert: cert.certPem, key: cert.keyPem });
    } catch (e) {
      // OpenSSL's message names the failing part, never the key's bytes; keep only its first line.
      throw new Error(`client certificate ${cert.ref} is unusable: ${(e as Error).message.split("\n")[0]}`);
    }
    if (contexts.size >= MAX_CACHED) contexts.clear();
    contexts.set(key, ctx);
  }
  return ctx;
}
