// The dashboard's certificate minted from the gateway CA: its names (SANs),
// kept while right, minted again when the names change, it nears expiry, it
// was signed by another CA, or its key does not match; and the fingerprint
// form shared by `ca show`, first boot, the dashboard and `join --ca-sha256`.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadOrCreateCA, type CertificateAuthority } from "../../../app/tls/ca.ts";
import {
  DASHBOARD_CERT_FILE,
  DASHBOARD_CERT_RENEW_BEFORE_MS,
  DASHBOARD_CERT_VALIDITY_MS,
  DASHBOARD_KEY_FILE,
  dashboardCertNames,
  ensureDashboardCert,
} from "../../../app/tls/dashboard-cert.ts";
import { caFingerprint, parseFingerprint } from "../../../app/tls/fingerprint.ts";

const DAY = 24 * 60 * 60 * 1000;
// Real time: openssl verify checks the dates against the clock.
const NOW = Date.now();
let root: string;
let ca: CertificateAuthority;
beforeAll(async () => {
  root = mkdtempSync(path.join(os.tmpdir(), "clawpatrol-dashcert-"));
  ca = await loadOrCreateCA(path.join(root, "ca"), { commonName: "clawpatrol CA (dashboard cert tests)" });
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const iface = (address: string, family: "IPv4" | "IPv6", internal = false): os.NetworkInterfaceInfo =>
  ({ address, family, internal, netmask: "", mac: "", cidr: null }) as os.NetworkInterfaceInfo;
const INTERFACES = {
  lo: [iface("127.0.0.1", "IPv4", true), iface("::1", "IPv6", true)],
  eth0: [iface("10.0.2.15", "IPv4"), iface("fe80::1", "IPv6"), iface("2001:db8::15", "IPv6")],
  eth1: [iface("192.168.7.2", "IPv4")],
};

/** What openssl reads from the certificate: SANs, dates, and whether it verifies against the CA. */
function openssl(certPem: string) {
  const dir = mkdtempSync(path.join(root, "ossl-"));
  writeFileSync(path.join(dir, "leaf.pem"), certPem.slice(0, certPem.indexOf("-----END CERTIFICATE-----") + 25) + "\n");
  writeFileSync(path.join(dir, "ca.pem"), ca.certPem);
  const text = spawnSync("openssl", ["x509", "-in", path.join(dir, "leaf.pem"), "-noout", "-ext", "subjectAltName,extendedKeyUsage"], { encoding: "utf8" }).stdout;
  const verify = spawnSync("openssl", ["verify", "-CAfile", path.join(dir, "ca.pem"), "-purpose", "sslserver", path.join(dir, "leaf.pem")], { encoding: "utf8" });
  return { text, verified: verify.status === 0 };
}

describe("names", () => {
  test("public_url's host, every non-loopback IPv4 for 0.0.0.0, loopback; canonical and sorted", () => {
    expect(dashboardCertNames({ publicUrl: "https://GW.Example.com:8443/x", listen: "0.0.0.0:443", interfaces: INTERFACES })).toEqual([
      "10.0.2.15",
      "127.0.0.1",
      "192.168.7.2",
      "::1",
      "gw.example.com",
      "localhost",
    ]);
  });

  test("[::] adds the IPv6 addresses too (not link-local); a specific listen address is that address", () => {
    expect(dashboardCertNames({ listen: "[::]:443", interfaces: INTERFACES })).toEqual(["10.0.2.15", "127.0.0.1", "192.168.7.2", "2001:db8::15", "::1", "localhost"]);
    expect(dashboardCertNames({ listen: "192.168.7.2:8443", interfaces: INTERFACES })).toEqual(["127.0.0.1", "192.168.7.2", "::1", "localhost"]);
  });
});

describe("ensureDashboardCert", () => {
  const names = ["10.0.2.15", "127.0.0.1", "::1", "gw.example.com", "localhost"];

  test("mints a server certificate for every name, signed by the CA, key 0600", async () => {
    const dir = mkdtempSync(path.join(root, "s-"));
    const c = await ensureDashboardCert({ stateDir: dir, ca, names, now: () => NOW });
    expect(c.minted).toBe(true);
    expect(c.notAfter).toBe(Math.floor((NOW + DASHBOARD_CERT_VALIDITY_MS) / 1000) * 1000);
    expect(readFileSync(path.join(dir, DASHBOARD_CERT_FILE), "utf8")).toBe(c.certPem);
    expect(statSync(path.join(dir, DASHBOARD_KEY_FILE)).mode & 0o777).toBe(0o600);
    const o = openssl(c.certPem);
    for (const san of ["DNS:gw.example.com", "DNS:localhost", "IP Address:10.0.2.15", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1"]) expect(o.text).toContain(san);
    expect(o.text).toContain("TLS Web Server Authentication");
    expect(o.verified).toBe(true);
    // The served chain ends with the CA.
    expect(c.certPem.trim().endsWith(ca.certPem.trim())).toBe(true);
  });

  test("kept while the names match and expiry is far; minted again when a name changes", async () => {
    const dir = mkdtempSync(path.join(root, "s-"));
    const first = await ensureDashboardCert({ stateDir: dir, ca, names, now: () => NOW });
    const again = await ensureDashboardCert({ stateDir: dir, ca, names: [...names].reverse(), now: () => NOW + 10 * DAY });
    expect(again.minted).toBe(false);
    expect(again.certPem).toBe(first.certPem);
    const moved = await ensureDashboardCert({ stateDir: dir, ca, names: [...names, "10.0.2.16"], now: () => NOW + 10 * DAY });
    expect(moved.minted).toBe(true);
    expect(openssl(moved.certPem).text).toContain("IP Address:10.0.2.16");
    expect(moved.keyPem).not.toBe(first.keyPem);
  });

  test("minted again once within the renewal window of notAfter, not before", async () => {
    const dir = mkdtempSync(path.join(root, "s-"));
    const first = await ensureDashboardCert({ stateDir: dir, ca, names, now: () => NOW });
    const edge = first.notAfter - DASHBOARD_CERT_RENEW_BEFORE_MS;
    expect((await ensureDashboardCert({ stateDir: dir, ca, names, now: () => edge - 1000 })).minted).toBe(false);
    const renewed = await ensureDashboardCert({ stateDir: dir, ca, names, now: () => edge + 1000 });
    expect(renewed.minted).toBe(true);
    expect(renewed.notAfter).toBeGreaterThan(first.notAfter);
  });

  test("one signed by another CA, or with a key that does not match, is replaced", async () => {
    const dir = mkdtempSync(path.join(root, "s-"));
    const other = await loadOrCreateCA(path.join(root, "other-ca"), { commonName: "someone else" });
    const foreign = await ensureDashboardCert({ stateDir: dir, ca: other, names, now: () => NOW });
    const ours = await ensureDashboardCert({ stateDir: dir, ca, names, now: () => NOW });
    expect(ours.minted).toBe(true);
    expect(ours.certPem).not.toBe(foreign.certPem);
    expect(openssl(ours.certPem).verified).toBe(true);

    writeFileSync(path.join(dir, DASHBOARD_KEY_FILE), foreign.keyPem);
    const fixed = await ensureDashboardCert({ stateDir: dir, ca, names, now: () => NOW });
    expect(fixed.minted).toBe(true);
    expect(fixed.keyPem).not.toBe(foreign.keyPem);
  });
});

describe("fingerprint", () => {
  test("is openssl's -fingerprint -sha256 of the CA certificate", () => {
    const file = path.join(root, "ca-fp.pem");
    writeFileSync(file, ca.certPem);
    const out = spawnSync("openssl", ["x509", "-in", file, "-noout", "-fingerprint", "-sha256"], { encoding: "utf8" }).stdout.trim();
    expect(out).toBe(`sha256 Fingerprint=${caFingerprint(ca.certPem)}`);
  });

  test("accepts what an operator pastes; rejects anything else", () => {
    const fp = caFingerprint(ca.certPem);
    const hex = fp.replace(/:/g, "").toLowerCase();
    expect(parseFingerprint(fp)).toBe(hex);
    expect(parseFingerprint(hex.toUpperCase())).toBe(hex);
    expect(parseFingerprint(` sha256 Fingerprint=${fp}\n`)).toBe(hex);
    expect(parseFingerprint(hex.slice(2))).toBeNull();
    expect(parseFingerprint(`${hex}00`)).toBeNull();
    expect(parseFingerprint("not a fingerprint")).toBeNull();
  });
});
