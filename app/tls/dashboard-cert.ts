// The dashboard's own certificate in `dashboard_tls { mint_from_ca = true }`
// mode: a server certificate the gateway's CA signs for every name a browser
// or device may use to reach the dashboard, kept in the state directory.
//
//   1. Names: the host of public_url, the listen address (or, for a wildcard
//      listen, every non-loopback address of the machine), and loopback.
//   2. Reuse dashboard.crt/dashboard.key when they were signed by this CA,
//      name exactly these names, and are more than RENEW_BEFORE from expiry.
//   3. Otherwise mint a fresh key and certificate and swap both files in
//      (temp file + rename, key 0600): a reader never sees half a pair.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { writeAtomically } from "../store/write-atomically.ts";
import os from "node:os";
import path from "node:path";
import type { CertificateAuthority } from "./ca.ts";
import { canonicalLeafName } from "./leaf.ts";
import { ECDSA_SHA256, issueServerCertificate, P256_KEY_ALGORITHM, privateKeyToPem, x509 } from "./pki.ts";
import { log } from "../log.ts";

export const DASHBOARD_CERT_FILE = "dashboard.crt";
export const DASHBOARD_KEY_FILE = "dashboard.key";
const DAY_MS = 24 * 60 * 60 * 1000;
export const DASHBOARD_CERT_VALIDITY_MS = 90 * DAY_MS;
/** A certificate this close to notAfter is minted again (at start, or by the periodic check). */
export const DASHBOARD_CERT_RENEW_BEFORE_MS = 30 * DAY_MS;
const BACKDATE_MS = 60 * 60 * 1000;
const LOOPBACK_NAMES = ["localhost", "127.0.0.1", "::1"];

export interface DashboardCert {
  certFile: string;
  keyFile: string;
  /** The leaf followed by the CA certificate (what the server presents). */
  certPem: string;
  keyPem: string;
  names: string[];
  notAfter: number;
  /** True when this call minted it (false: the one on disk was still good). */
  minted: boolean;
}

export interface NameSources {
  publicUrl?: string;
  /** `dashboard_listen` (host:port). */
  listen: string;
  /** Default: os.networkInterfaces(). */
  interfaces?: NodeJS.Dict<os.NetworkInterfaceInfo[]>;
}

/** The names the certificate must cover, canonical, de-duplicated, sorted. */
export function dashboardCertNames(src: NameSources): string[] {
  const names = new Set<string>();
  const add = (n: string | undefined) => {
    const c = n === undefined ? null : canonicalLeafName(n);
    if (c !== null) names.add(c);
  };
  if (src.publicUrl) {
    try {
      add(new URL(src.publicUrl).hostname);
    } catch {
      /* the config loader already rejected a malformed public_url */
    }
  }
  const host = listenHost(src.listen);
  if (host === "0.0.0.0" || host === "::" || host === "") {
    for (const list of Object.values(src.interfaces ?? machineAddresses())) {
      for (const a of list ?? []) {
        if (a.internal) continue;
        // Link-local IPv6 needs a zone to be dialled: no browser uses it.
        if (a.family === "IPv6" && /^fe80:/i.test(a.address)) continue;
        if (host === "0.0.0.0" && a.family !== "IPv4") continue;
        add(a.address);
      }
    }
  } else {
    add(host);
  }
  for (const n of LOOPBACK_NAMES) add(n);
  return [...names].sort();
}

/** os.networkInterfaces(), or none when the sandbox refuses getifaddrs (netlink): the certificate then names loopback and public_url only. */
function machineAddresses(): NodeJS.Dict<os.NetworkInterfaceInfo[]> {
  try {
    return os.networkInterfaces();
  } catch (e) {
    log.warn("cannot list this machine's addresses; the dashboard certificate names only public_url's host and loopback", { error: (e as Error).message });
    return {};
  }
}

function listenHost(listen: string): string {
  const m = /^\[([^\]]*)\]:\d+$/.exec(listen) ?? /^([^:]*):\d+$/.exec(listen);
  return m ? m[1]! : listen;
}

export interface EnsureOptions {
  stateDir: string;
  ca: CertificateAuthority;
  names: string[];
  now?: () => number;
}

/** The dashboard's certificate for `names`: the one on disk if still right, else a new one. */
export async function ensureDashboardCert(opts: EnsureOptions): Promise<DashboardCert> {
  const now = (opts.now ?? Date.now)();
  const certFile = path.join(opts.stateDir, DASHBOARD_CERT_FILE);
  const keyFile = path.join(opts.stateDir, DASHBOARD_KEY_FILE);
  const wanted = [...new Set(opts.names)].sort();
  const existing = await reusable(certFile, keyFile, opts.ca, wanted, now);
  if (existing) return { certFile, keyFile, ...existing, names: wanted, minted: false };

  const minted = await mint(opts.ca, wanted, now);
  // Key first: a crash between the two renames leaves a pair that fails the
  // match check above and is minted again, never a served mismatch.
  writeAtomically(keyFile, minted.keyPem, 0o600);
  writeAtomically(certFile, minted.certPem, 0o644);
  return { certFile, keyFile, ...minted, names: wanted, minted: true };
}

/** Why the certificate on disk must be minted again, or null when it can be served. */
export function renewalReason(cert: x509.X509Certificate, ca: CertificateAuthority, names: string[], now: number): string | null {
  const aki = cert.getExtension(x509.AuthorityKeyIdentifierExtension);
  if (aki?.keyId !== ca.keyIdentifier) return "not signed by this CA";
  if (cert.notBefore.getTime() > now) return "not valid yet";
  if (cert.notAfter.getTime() - now <= DASHBOARD_CERT_RENEW_BEFORE_MS) return "expires soon";
  if (sanNames(cert).join(",") !== names.join(",")) return "names changed";
  return null;
}

function sanNames(cert: x509.X509Certificate): string[] {
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const out: string[] = [];
  for (const n of san?.names.items ?? []) {
    const c = canonicalLeafName(n.value);
    if ((n.type === "dns" || n.type === "ip") && c !== null) out.push(c);
  }
  return [...new Set(out)].sort();
}

async function reusable(certFile: string, keyFile: string, ca: CertificateAuthority, names: string[], now: number) {
  let certPem: string, keyPem: string, cert: x509.X509Certificate;
  try {
    certPem = readFileSync(certFile, "utf8");
    keyPem = readFileSync(keyFile, "utf8");
    cert = new x509.X509Certificate(certPem);
  } catch {
    return null; // missing or unreadable: mint
  }
  if (renewalReason(cert, ca, names, now) !== null) return null;
  if (!(await cert.verify({ publicKey: ca.publicKey, signatureOnly: true }).catch(() => false))) return null;
  if (!(await keyMatches(keyPem, cert))) return null;
  return { certPem, keyPem, notAfter: cert.notAfter.getTime() };
}

async function keyMatches(keyPem: string, cert: x509.X509Certificate): Promise<boolean> {
  try {
    const key = await crypto.subtle.importKey("pkcs8", x509.PemConverter.decodeFirst(keyPem), P256_KEY_ALGORITHM, false, ["sign"]);
    const probe = randomBytes(32);
    const sig = await crypto.subtle.sign(ECDSA_SHA256, key, probe);
    const pub = await cert.publicKey.export(P256_KEY_ALGORITHM, ["verify"]);
    return await crypto.subtle.verify(ECDSA_SHA256, pub, sig, probe);
  } catch {
    return false;
  }
}

async function mint(ca: CertificateAuthority, names: string[], now: number): Promise<{ certPem: string; keyPem: string; notAfter: number }> {
  const keys = await crypto.subtle.generateKey(P256_KEY_ALGORITHM, true, ["sign", "verify"]);
  const cert = await issueServerCertificate({
    ca,
    names,
    subjectExtra: [{ O: ["clawpatrol dashboard"] }],
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + DASHBOARD_CERT_VALIDITY_MS),
    publicKey: keys.publicKey,
    subjectKeyIdentifier: await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
  });
  const certPem = `${cert.toString("pem")}\n${ca.certPem.trim()}\n`;
  return { certPem, keyPem: await privateKeyToPem(keys.privateKey), notAfter: cert.notAfter.getTime() };
}
