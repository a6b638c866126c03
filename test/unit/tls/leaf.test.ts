import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { loadOrCreateCA, type CertificateAuthority } from "../../../app/tls/ca.ts";
import {
  canonicalLeafName,
  LEAF_BACKDATE_MS,
  LEAF_VALIDITY_MS,
  LeafCertificates,
} from "../../../app/tls/leaf.ts";
import { x509 } from "../../../app/tls/pki.ts";

const DAY = 24 * 60 * 60 * 1000;
const hasOpenssl = spawnSync("openssl", ["version"]).status === 0;

let root: string;
let ca: CertificateAuthority;
beforeAll(async () => {
  root = mkdtempSync(path.join(os.tmpdir(), "clawpatrol-leaf-"));
  ca = await loadOrCreateCA(root, { commonName: "clawpatrol CA (leaf tests)" });
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A TLS server on 127.0.0.1 that picks its certificate by SNI from `leaves`. */
async function sniServer(leaves: LeafCertificates): Promise<{ port: number; close: () => void }> {
  const server = tls.createServer({
    SNICallback: (servername, done) => {
      leaves.secureContextFor(servername).then(
        (context) => done(null, context),
        (error: Error) => done(error),
      );
    },
  });
  server.on("secureConnection", (socket) => socket.end("hello from the gateway\n"));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}

function connect(port: number, servername: string, trust: string) {
  return new Promise<{ authorized: boolean; error: string | null; peerCN: string; body: string }>((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, servername, ca: trust });
    let body = "";
    socket.on("data", (d: Buffer) => (body += d.toString()));
    socket.on("end", () =>
      resolve({
        authorized: socket.authorized,
        error: socket.authorizationError ? String(socket.authorizationError) : null,
        peerCN: String(socket.getPeerCertificate().subject?.CN),
        body,
      }),
    );
    socket.on("error", reject);
  });
}

describe("a leaf verifies against the CA over real TLS", () => {
  test("a client trusting the CA accepts api.example.com", async () => {
    const server = await sniServer(new LeafCertificates(ca));
    try {
      const result = await connect(server.port, "api.example.com", ca.certPem);
      expect(result).toEqual({ authorized: true, error: null, peerCN: "api.example.com", body: "hello from the gateway\n" });
    } finally {
      server.close();
    }
  });

  test("a client trusting another CA refuses it", async () => {
    const otherCa = await loadOrCreateCA(path.join(root, "other"));
    const server = await sniServer(new LeafCertificates(ca));
    try {
      const result = await connect(server.port, "api.example.com", otherCa.certPem);
      expect(result.authorized).toBe(false);
    } catch (e) {
      // Bun/Node reject the handshake outright when rejectUnauthorized holds.
      expect(String(e)).toMatch(/certificate|verify|issuer/i);
    } finally {
      server.close();
    }
  });

  test.skipIf(!hasOpenssl)("openssl verifies the leaf against the CA", async () => {
    const leaf = await new LeafCertificates(ca).leafFor("verify.example.com");
    writeFileSync(path.join(root, "leaf.pem"), leaf.certPem);
    writeFileSync(path.join(root, "ca-copy.pem"), ca.certPem);
    const out = spawnSync("openssl", ["verify", "-CAfile", path.join(root, "ca-copy.pem"), "-purpose", "sslserver", path.join(root, "leaf.pem")], {
      encoding: "utf8",
    });
    expect(out.stdout.trim()).toBe(`${path.join(root, "leaf.pem")}: OK`);
  });
});

describe("leaf contents", () => {
  const NOW = Date.UTC(2026, 2, 1, 8, 0, 0);

  test("SAN, CN, validity, key, usages, identifiers", async () => {
    const leaves = new LeafCertificates(ca, { now: () => NOW });
    const cert = new x509.X509Certificate((await leaves.leafFor("Api.Example.COM.")).certPem);
    expect(cert.subject).toBe("CN=api.example.com");
    expect(cert.issuer).toBe(ca.certificate.subject);
    const san = cert.getExtension(x509.SubjectAlternativeNameExtension)!;
    expect(san.names.toJSON()).toEqual([{ type: "dns", value: "api.example.com" }]);
    expect(cert.notBefore.getTime()).toBe(NOW - LEAF_BACKDATE_MS);
    expect(cert.notAfter.getTime()).toBe(NOW + LEAF_VALIDITY_MS);
    expect(LEAF_VALIDITY_MS).toBe(30 * DAY);
    expect(cert.publicKey.algorithm).toMatchObject({ name: "ECDSA", namedCurve: "P-256" });
    expect(cert.serialNumber).toMatch(/^[0-7][0-9a-f]{31}$/);
    expect(cert.getExtension(x509.BasicConstraintsExtension)!.ca).toBe(false);
    expect(cert.getExtension(x509.KeyUsagesExtension)!.usages).toBe(x509.KeyUsageFlags.digitalSignature);
    expect(cert.getExtension(x509.ExtendedKeyUsageExtension)!.usages).toEqual([x509.ExtendedKeyUsage.serverAuth]);
    expect(cert.getExtension(x509.AuthorityKeyIdentifierExtension)!.keyId).toBe(ca.keyIdentifier);
    expect(cert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId).toMatch(/^[0-9a-f]{40}$/);
    expect(await cert.verify({ publicKey: ca.publicKey, date: new Date(NOW) })).toBe(true);
  });

  test("IP literals get an iPAddress SAN", async () => {
    const leaves = new LeafCertificates(ca);
    for (const [asked, expected] of [
      ["10.1.2.3", "10.1.2.3"],
      ["[2001:DB8::1]", "2001:db8::1"],
    ] as const) {
      const cert = new x509.X509Certificate((await leaves.leafFor(asked)).certPem);
      expect(cert.getExtension(x509.SubjectAlternativeNameExtension)!.names.toJSON()).toEqual([{ type: "ip", value: expected }]);
    }
  });

  test("serials differ between leaves; all leaves share one key pair", async () => {
    const leaves = new LeafCertificates(ca);
    const certs = await Promise.all(["a.test", "b.test", "c.test"].map(async (h) => new x509.X509Certificate((await leaves.leafFor(h)).certPem)));
    expect(new Set(certs.map((c) => c.serialNumber)).size).toBe(3);
    expect(new Set(certs.map((c) => Buffer.from(c.publicKey.rawData).toString("hex"))).size).toBe(1);
  });

  test.skipIf(!hasOpenssl)("openssl reads SAN, usages and validity", async () => {
    const leaf = await new LeafCertificates(ca, { now: () => NOW }).leafFor("api.example.com");
    const file = path.join(root, "leaf-text.pem");
    writeFileSync(file, leaf.certPem);
    const out = spawnSync("openssl", ["x509", "-noout", "-text", "-in", file], { encoding: "utf8" });
    expect(out.stdout).toContain("DNS:api.example.com");
    expect(out.stdout).toMatch(/Key Usage: critical\s+Digital Signature/);
    expect(out.stdout).toMatch(/Extended Key Usage:\s+TLS Web Server Authentication/);
    expect(out.stdout).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
    expect(out.stdout).toContain("NIST CURVE: P-256");
    expect(out.stdout).toContain("Not Before: Mar  1 07:00:00 2026 GMT");
    expect(out.stdout).toContain("Not After : Mar 31 08:00:00 2026 GMT");
  });

  test("names that are neither host names nor IPs are refused", async () => {
    const leaves = new LeafCertificates(ca);
    for (const bad of ["", "a..b", "evil.com,O=x", "*.example.com", "exa mple.com", "ex\0ample.com", "ünï.com"]) {
      expect(canonicalLeafName(bad)).toBeNull();
      await expect(leaves.secureContextFor(bad)).rejects.toThrow(TypeError);
    }
    expect(leaves.mintCount).toBe(0);
  });
});

describe("cache", () => {
  test("a hit returns the same context, across spellings of the name", async () => {
    const leaves = new LeafCertificates(ca);
    const first = await leaves.secureContextFor("api.example.com");
    expect(await leaves.secureContextFor("api.example.com")).toBe(first);
    expect(await leaves.secureContextFor("API.example.com.")).toBe(first);
    expect(leaves.mintCount).toBe(1);
  });

  test("the least recently used leaf is evicted past maxEntries", async () => {
    const leaves = new LeafCertificates(ca, { maxEntries: 2 });
    const a = await leaves.secureContextFor("a.test");
    await leaves.secureContextFor("b.test");
    expect(await leaves.secureContextFor("a.test")).toBe(a); // a is now most recent
    await leaves.secureContextFor("c.test"); // evicts b
    expect(leaves.cachedCount).toBe(2);
    expect(leaves.mintCount).toBe(3);
    expect(await leaves.secureContextFor("a.test")).toBe(a);
    await leaves.secureContextFor("b.test");
    expect(leaves.mintCount).toBe(4);
  });

  test("concurrent calls for one name share one mint", async () => {
    const leaves = new LeafCertificates(ca);
    const contexts = await Promise.all(Array.from({ length: 20 }, () => leaves.secureContextFor("busy.example.com")));
    expect(leaves.mintCount).toBe(1);
    expect(new Set(contexts).size).toBe(1);
  });

  test("a leaf within a day of expiry is minted again", async () => {
    const start = Date.UTC(2026, 5, 1);
    let now = start;
    const leaves = new LeafCertificates(ca, { now: () => now });
    const first = await leaves.leafFor("api.example.com");

    now = start + 28 * DAY;
    expect(await leaves.leafFor("api.example.com")).toBe(first);
    now = first.notAfter - DAY - 1;
    expect(await leaves.leafFor("api.example.com")).toBe(first);
    now = first.notAfter - DAY;
    const renewed = await leaves.leafFor("api.example.com");
    expect(renewed).not.toBe(first);
    expect(renewed.notAfter).toBe(now + LEAF_VALIDITY_MS);
    expect(leaves.mintCount).toBe(2);
    expect(await leaves.leafFor("api.example.com")).toBe(renewed);
  });
});

test("measure: mint and cached lookup (printed, not asserted)", async () => {
  const leaves = new LeafCertificates(ca, { maxEntries: 5000 });
  await leaves.secureContextFor("warm.example.com");
  const mints = 100;
  let start = performance.now();
  for (let i = 0; i < mints; i++) await leaves.secureContextFor(`host${i}.example.com`);
  const mintMs = (performance.now() - start) / mints;
  const lookups = 50_000;
  start = performance.now();
  for (let i = 0; i < lookups; i++) await leaves.secureContextFor(`host${i % mints}.example.com`);
  const lookupUs = ((performance.now() - start) / lookups) * 1000;
  console.log(`leaf mint ${mintMs.toFixed(2)} ms/leaf; cached lookup ${lookupUs.toFixed(2)} µs`);
  expect(leaves.mintCount).toBe(mints + 1);
});
