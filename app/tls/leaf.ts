// Leaf certificates for the hosts the gateway terminates, minted on first
// use and kept in a bounded LRU.
//
//   1. Canonicalise the name (lower case, no trailing dot, no IPv6 brackets).
//   2. A cached leaf more than a day from expiry: reuse its context.
//   3. A mint already running for the name: share it.
//   4. Otherwise mint: the CA signs a fresh certificate with SAN = the name,
//      valid from an hour ago (clock skew) for 30 days. Every leaf carries
//      the same P-256 key pair, made once per instance (the gateway runs
//      one): a mint is then ~4 ms of certificate encoding, not keygen.
import { isIP } from "node:net";
import tls from "node:tls";
import type { CertificateAuthority } from "./ca.ts";
import { canonicalHostName } from "./clienthello.ts";
import { LruCache } from "./lru.ts";
import { issueServerCertificate, P256_KEY_ALGORITHM, privateKeyToPem, x509 } from "./pki.ts";

const HOUR_MS = 60 * 60 * 1000;
const DAY_MS = 24 * HOUR_MS;
export const LEAF_VALIDITY_MS = 30 * DAY_MS;
/** notBefore is backdated this much so devices with a slow clock still accept the leaf. */
export const LEAF_BACKDATE_MS = HOUR_MS;
/** A cached leaf this close to notAfter is minted again. */
export const LEAF_RENEW_BEFORE_MS = DAY_MS;

export interface LeafOptions {
  maxEntries?: number;
  now?: () => number;
}

export interface MintedLeaf {
  hostname: string;
  context: tls.SecureContext;
  /** The leaf alone; the context serves it followed by the CA certificate. */
  certPem: string;
  notAfter: number;
}

interface LeafKey {
  keys: CryptoKeyPair;
  pem: string;
  subjectKeyIdentifier: x509.SubjectKeyIdentifierExtension;
}

export class LeafCertificates {
  readonly #ca: CertificateAuthority;
  readonly #now: () => number;
  readonly #cache: LruCache<string, MintedLeaf>;
  readonly #inFlight = new Map<string, Promise<MintedLeaf>>();
  #leafKey: Promise<LeafKey> | null = null;
  #mints = 0;

  constructor(ca: CertificateAuthority, { maxEntries = 2000, now = Date.now }: LeafOptions = {}) {
    this.#ca = ca;
    this.#now = now;
    this.#cache = new LruCache(maxEntries);
  }

  /** How many leaves were minted (cache misses), for metrics and tests. */
  get mintCount(): number {
    return this.#mints;
  }

  get cachedCount(): number {
    return this.#cache.size;
  }

  /** The LRU's bound. */
  get maxCached(): number {
    return this.#cache.maxEntries;
  }

  async secureContextFor(hostname: string): Promise<tls.SecureContext> {
    return (await this.leafFor(hostname)).context;
  }

  /** The leaf for `hostname` (a DNS name or an IP literal); rejects a name that is neither. */
  leafFor(hostname: string): Promise<MintedLeaf> {
    const name = canonicalLeafName(hostname);
    if (name === null) return Promise.reject(new TypeError(`not a host name or IP address: ${JSON.stringify(hostname)}`));
    const cached = this.#cache.get(name);
    if (cached !== undefined && cached.notAfter - this.#now() > LEAF_RENEW_BEFORE_MS) return Promise.resolve(cached);
    const running = this.#inFlight.get(name);
    if (running !== undefined) return running;
    const minting = this.#mint(name).finally(() => this.#inFlight.delete(name));
    this.#inFlight.set(name, minting);
    return minting;
  }

  async #mint(hostname: string): Promise<MintedLeaf> {
    const { keys, pem: keyPem, subjectKeyIdentifier } = await this.#sharedLeafKey();
    const nowMs = this.#now();
    const notAfter = nowMs + LEAF_VALIDITY_MS;
    const certificate = await issueServerCertificate({
      ca: this.#ca,
      names: [hostname],
      notBefore: new Date(nowMs - LEAF_BACKDATE_MS),
      notAfter: new Date(notAfter),
      publicKey: keys.publicKey,
      subjectKeyIdentifier,
    });
    const certPem = certificate.toString("pem");
    const context = tls.createSecureContext({ key: keyPem, cert: `${certPem}\n${this.#ca.certPem}\n` });
    const leaf: MintedLeaf = { hostname, context, certPem, notAfter: certificate.notAfter.getTime() };
    this.#mints++;
    this.#cache.set(hostname, leaf);
    return leaf;
  }

  #sharedLeafKey(): Promise<LeafKey> {
    if (this.#leafKey !== null) return this.#leafKey;
    const pending = (async () => {
      const keys = await crypto.subtle.generateKey(P256_KEY_ALGORITHM, true, ["sign", "verify"]);
      return {
        keys,
        pem: await privateKeyToPem(keys.privateKey),
        subjectKeyIdentifier: await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      };
    })();
    // A failed key generation is retried by the next mint, not cached.
    pending.catch(() => {
      if (this.#leafKey === pending) this.#leafKey = null;
    });
    this.#leafKey = pending;
    return pending;
  }
}

/** Lower case, no trailing dot, IPv6 without brackets; null for anything else. */
export function canonicalLeafName(hostname: string): string | null {
  const unbracketed = hostname.startsWith("[") && hostname.endsWith("]") ? hostname.slice(1, -1) : hostname;
  if (isIP(unbracketed) === 4) return unbracketed;
  if (isIP(unbracketed) === 6) return unbracketed.toLowerCase();
  return canonicalHostName(new TextEncoder().encode(hostname));
}
