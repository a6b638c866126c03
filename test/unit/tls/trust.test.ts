// The upstream trust store: a CA in the operating system's store (a temporary
// path standing in for /etc/ssl/certs) makes an upstream it signed verify;
// an upstream signed by a CA in no store fails.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import tls from "node:tls";
import type { AddressInfo } from "node:net";
import { TrustStore } from "../../../app/tls/trust.ts";
import { UpstreamPool } from "../../../app/endpoints/https/upstream.ts";
import { openUpstream } from "../../../app/endpoints/postgres/upstream-tls.ts";
import type { Endpoint } from "../../../app/policy/types.ts";
import { makeTestPki, type TestPki } from "../../integration/support/pki.ts";
import { loadPolicy } from "../../../app/policy/load.ts";

let dir: string;
let trusted: TestPki;
let stranger: TestPki;
let server: tls.Server;
let port: number;

const endpoint = (caCertPem?: string): Endpoint =>
  ({ type: "https", name: "up", ref: "https.up", family: "https", hosts: ["upstream.test"], source: "test", ...(caCertPem ? { caCertPem } : {}) }) as unknown as Endpoint;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "cp-trust-"));
  trusted = makeTestPki(path.join(dir, "trusted"), ["upstream.test"]);
  stranger = makeTestPki(path.join(dir, "stranger"), ["upstream.test"]);
  server = tls.createServer({ cert: trusted.certPem, key: trusted.keyPem }, (s) => s.end("hello\n"));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(() => {
  server?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function dialsWith(trust: TrustStore, caCertPem?: string): Promise<true | string> {
  const pool = new UpstreamPool(10_000, trust);
  try {
    const conn = await pool.dial({ host: "127.0.0.1", port, sni: "upstream.test", endpoint: endpoint(caCertPem) });
    conn.destroy();
    return true;
  } catch (e) {
    return (e as Error).message;
  }
}

describe("upstream trust store", () => {
  test("an upstream signed by a CA in the system bundle verifies; without it, it fails", async () => {
    const bundle = path.join(dir, "ca-certificates.crt");
    writeFileSync(bundle, stranger.caCertPem + trusted.caCertPem);
    expect(await dialsWith(new TrustStore({ systemStorePath: bundle, env: {} }))).toBe(true);

    const without = path.join(dir, "other-bundle.crt");
    writeFileSync(without, stranger.caCertPem);
    const refused = await dialsWith(new TrustStore({ systemStorePath: without, env: {} }));
    expect(refused).not.toBe(true);
    expect(String(refused)).toMatch(/certificate|issuer|verify/i);
  });

  test("a directory of .crt files is a system store too", async () => {
    const certs = path.join(dir, "certs");
    mkdirSync(certs, { recursive: true });
    writeFileSync(path.join(certs, "corp.crt"), trusted.caCertPem);
    writeFileSync(path.join(certs, "README"), "not a certificate");
    expect(await dialsWith(new TrustStore({ systemStorePath: certs, env: {} }))).toBe(true);
  });

  test("NODE_EXTRA_CA_CERTS, upstream_ca_file and the endpoint's ca_cert each add the CA", async () => {
    const empty = path.join(dir, "empty.crt");
    writeFileSync(empty, "");
    expect(await dialsWith(new TrustStore({ systemStorePath: empty, env: {} }))).not.toBe(true);
    expect(await dialsWith(new TrustStore({ systemStorePath: empty, env: { NODE_EXTRA_CA_CERTS: trusted.caCertPath } }))).toBe(true);
    const withGatewayCa = new TrustStore({ systemStorePath: empty, env: {} });
    withGatewayCa.setGatewayCaPem(trusted.caCertPem);
    expect(await dialsWith(withGatewayCa)).toBe(true);
    expect(await dialsWith(new TrustStore({ systemStorePath: empty, env: {} }), trusted.caCertPem)).toBe(true);
  });

  test("the system store is read again when its file changes", async () => {
    const bundle = path.join(dir, "changing.crt");
    writeFileSync(bundle, stranger.caCertPem);
    let clock = 0;
    const trust = new TrustStore({ systemStorePath: bundle, env: {}, now: () => clock });
    expect(await dialsWith(trust)).not.toBe(true);
    writeFileSync(bundle, stranger.caCertPem + trusted.caCertPem);
    clock += 60_000;
    expect(trust.systemRoots()).toHaveLength(2);
    expect(await dialsWith(trust)).toBe(true);
  });

  test("Bun's built-in roots stay trusted beside the system store", () => {
    const empty = path.join(dir, "empty2.crt");
    writeFileSync(empty, "");
    const roots = new TrustStore({ systemStorePath: empty, env: {} }).roots();
    expect(roots.length).toBe(tls.rootCertificates.length);
  });

  test("Postgres verify-full uses the same store", async () => {
    const bundle = path.join(dir, "pg-bundle.crt");
    writeFileSync(bundle, trusted.caCertPem);
    // A TLS server answering SSLRequest with 'S', then the handshake.
    const net = await import("node:net");
    const pg = net.createServer((raw) => {
      raw.once("data", () => {
        raw.write(Buffer.from("S"));
        const s = new tls.TLSSocket(raw, { isServer: true, cert: trusted.certPem, key: trusted.keyPem });
        s.on("error", () => {});
      });
      raw.on("error", () => {});
    });
    await new Promise<void>((resolve) => pg.listen(0, "127.0.0.1", resolve));
    const pgPort = (pg.address() as AddressInfo).port;
    const dial = (host: string, p: number) => net.connect(p, "127.0.0.1");
    try {
      const ok = await openUpstream({ host: "upstream.test", port: pgPort }, { sslmode: "verify-full" }, undefined, dial as never, new TrustStore({ systemStorePath: bundle, env: {} }));
      expect(ok.tls).toBe(true);
      ok.socket.destroy();
      const other = path.join(dir, "pg-other.crt");
      writeFileSync(other, stranger.caCertPem);
      await expect(openUpstream({ host: "upstream.test", port: pgPort }, { sslmode: "verify-full" }, undefined, dial as never, new TrustStore({ systemStorePath: other, env: {} }))).rejects.toThrow();
    } finally {
      pg.close();
    }
  });
});

describe("gateway { upstream_ca_file }", () => {
  const config = (line: string) => {
    const file = path.join(dir, `gw-${Math.random().toString(36).slice(2)}.hcl`);
    writeFileSync(file, `schema_version = 1\ngateway {\n  state_dir = "state"\n  ${line}\n}\n`);
    return file;
  };

  test("its PEM reaches the gateway settings, relative to the config file", async () => {
    writeFileSync(path.join(dir, "egress-ca.pem"), trusted.caCertPem);
    const r = await loadPolicy(config(`upstream_ca_file = "egress-ca.pem"`), { env: {} });
    expect(r.ok && r.policy.gateway.upstreamCaPem).toBe(trusted.caCertPem);
  });

  test("a missing file or one with no certificate is a config error naming the attribute", async () => {
    writeFileSync(path.join(dir, "not-a-ca.pem"), "hello");
    for (const [line, message] of [[`upstream_ca_file = "nope.pem"`, /upstream_ca_file: cannot read nope.pem/], [`upstream_ca_file = "not-a-ca.pem"`, /holds no PEM certificate/]] as const) {
      const r = await loadPolicy(config(line), { env: {} });
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.errors.map((e) => e.message).join("\n")).toMatch(message);
    }
  });
});
