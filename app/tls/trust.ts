// The roots the gateway trusts when it verifies an upstream's certificate:
// Bun's built-in roots, the operating system's store (what
// update-ca-certificates manages, so a TLS-inspecting egress or a private CA
// the machine trusts is trusted here too), NODE_EXTRA_CA_CERTS, the gateway's
// `upstream_ca_file`, and the endpoint's own `ca_cert`; and, for an endpoint
// that says `trust_gateway_ca = true` (the offline demo's echo server, whose
// certificate the gateway's own CA issues), that CA too. Never by default: the
// gateway's CA mints a leaf for any name, so trusting it for a real host would
// let nothing but the gateway itself vouch for that host.
// The system store is read once and read again only when its file changes.
import tls from "node:tls";
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";

/** Where Debian, Ubuntu, Arch and Alpine keep the bundle update-ca-certificates writes. */
export const SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";

/** How often, at most, the system store's file is checked for a change. */
const RECHECK_MS = 5_000;

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The certificates of a PEM text, each as its own PEM block. */
export function splitPemCertificates(text: string): string[] {
  return text.match(PEM_CERT) ?? [];
}

export interface TrustStoreOptions {
  /** The system store: a bundle file, or a directory of .crt/.pem files (default SYSTEM_CA_BUNDLE, else /etc/ssl/certs). */
  systemStorePath?: string;
  /** Environment for NODE_EXTRA_CA_CERTS (default process.env). */
  env?: Record<string, string | undefined>;
  now?: () => number;
}

export class TrustStore {
  private readonly storePath: string | undefined;
  private readonly env: Record<string, string | undefined>;
  private readonly now: () => number;
  private system: { stamp: string; pems: string[] } | undefined;
  private checkedAt = -Infinity;
  private gatewayCaPem: string | undefined;
  private ownCaPem: string | undefined;
  private contexts = new Map<string, tls.SecureContext>();

  constructor(opts: TrustStoreOptions = {}) {
    this.storePath = opts.systemStorePath ?? defaultSystemStore();
    this.env = opts.env ?? process.env;
    this.now = opts.now ?? Date.now;
  }

  /** The PEM text of `gateway { upstream_ca_file }`, set at start and at every reload. */
  setGatewayCaPem(pem: string | undefined): void {
    if (pem === this.gatewayCaPem) return;
    this.gatewayCaPem = pem;
    this.contexts.clear();
  }

  /** The gateway's own CA certificate, set at start: trusted only for endpoints that ask (`trust_gateway_ca`). */
  setOwnCaPem(pem: string | undefined): void {
    if (pem === this.ownCaPem) return;
    this.ownCaPem = pem;
    this.contexts.clear();
  }

  /** Every root trusted for an upstream, without the endpoint's own. */
  roots(): string[] {
    this.refreshSystem();
    return [
      ...tls.rootCertificates,
      ...(this.system?.pems ?? []),
      ...this.extraFromEnv(),
      ...splitPemCertificates(this.gatewayCaPem ?? ""),
    ];
  }

  /** Only the operating system's certificates (for `ca bundle`). */
  systemRoots(): string[] {
    this.refreshSystem();
    return this.system?.pems ?? [];
  }

  /**
   * A secure context trusting roots() plus the endpoint's ca_cert (and the
   * gateway's own CA when `trustOwnCa`); cached until the system store changes.
   */
  secureContext(endpointCaPem?: string, trustOwnCa = false): tls.SecureContext {
    this.refreshSystem();
    const own = trustOwnCa ? (this.ownCaPem ?? "") : "";
    const key = `${own}\0${endpointCaPem ?? ""}`;
    let ctx = this.contexts.get(key);
    if (!ctx) {
      ctx = tls.createSecureContext({ ca: [...this.roots(), ...splitPemCertificates(endpointCaPem ?? ""), ...splitPemCertificates(own)] });
      this.contexts.set(key, ctx);
    }
    return ctx;
  }

  private extraFromEnv(): string[] {
    const file = this.env.NODE_EXTRA_CA_CERTS;
    if (!file) return [];
    try {
      return splitPemCertificates(readFileSync(file, "utf8"));
    } catch {
      return [];
    }
  }

  private refreshSystem(): void {
    const now = this.now();
    if (this.system && now - this.checkedAt < RECHECK_MS) return;
    this.checkedAt = now;
    const stamp = this.stampOf();
    if (this.system && stamp === this.system.stamp) return;
    this.system = { stamp, pems: this.readSystem() };
    this.contexts.clear();
  }

  /** Size and modification time: a changed file (or directory entry list) reads again. */
  private stampOf(): string {
    if (!this.storePath) return "none";
    try {
      const s = statSync(this.storePath);
      return `${s.size}:${s.mtimeMs}:${s.ino}`;
    } catch {
      return "missing";
    }
  }

  private readSystem(): string[] {
    if (!this.storePath) return [];
    try {
      if (!statSync(this.storePath).isDirectory()) return splitPemCertificates(readFileSync(this.storePath, "utf8"));
      const pems: string[] = [];
      for (const name of readdirSync(this.storePath).sort()) {
        if (!/\.(crt|pem)$/.test(name)) continue;
        try {
          pems.push(...splitPemCertificates(readFileSync(path.join(this.storePath, name), "utf8")));
        } catch {
          // a dangling link or an unreadable file is skipped, as OpenSSL does
        }
      }
      return [...new Set(pems)];
    } catch {
      return [];
    }
  }
}

function defaultSystemStore(): string | undefined {
  for (const p of [SYSTEM_CA_BUNDLE, "/etc/ssl/certs"]) {
    try {
      statSync(p);
      return p;
    } catch {
      // try the next
    }
  }
  return undefined;
}

/** The gateway's one trust store, shared by every upstream dialer. */
export const upstreamTrust = new TrustStore();
