// gateway { dashboard_tls {} }: the operator's files or a certificate minted
// from the gateway's CA; every mistake named with FILE:LINE.
import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { formatConfigError, loadPolicy } from "../../../app/policy/load.ts";
import { policyFrom, tempDir } from "./helpers.ts";

const CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const KEY = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";

async function errorsOf(gatewayBody: string, files: Record<string, string> = {}): Promise<string[]> {
  const dir = tempDir();
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const file = join(dir, "gw.hcl");
  writeFileSync(file, `schema_version = 1\ngateway {\n  state_dir = "s"\n${gatewayBody}}\n`);
  const r = await loadPolicy(file, { env: {} });
  if (r.ok) return [];
  return r.errors.map((e) => formatConfigError(e).replace(`${dir}/`, ""));
}

test("no block: plain HTTP, as before", async () => {
  const p = await policyFrom(`schema_version = 1\ngateway {\n  state_dir = "s"\n}\n`);
  expect(p.gateway.dashboardTls).toBeUndefined();
});

test("mint_from_ca = true", async () => {
  const p = await policyFrom(`schema_version = 1\ngateway {\n  state_dir = "s"\n  dashboard_tls { mint_from_ca = true }\n}\n`);
  expect(p.gateway.dashboardTls).toEqual({ kind: "mint_from_ca" });
});

test("cert_file and key_file, relative to the config file", async () => {
  const dir = tempDir();
  writeFileSync(join(dir, "d.crt"), CERT);
  writeFileSync(join(dir, "d.key"), KEY);
  const file = join(dir, "gw.hcl");
  writeFileSync(file, `schema_version = 1\ngateway {\n  state_dir = "s"\n  dashboard_tls {\n    cert_file = "d.crt"\n    key_file = "d.key"\n  }\n}\n`);
  const r = await loadPolicy(file, { env: {} });
  if (!r.ok) throw new Error(r.errors.map(formatConfigError).join("\n"));
  expect(r.policy.gateway.dashboardTls).toEqual({ kind: "files", certFile: join(dir, "d.crt"), keyFile: join(dir, "d.key") });
});

test("mistakes, each with FILE:LINE", async () => {
  expect(await errorsOf(`  dashboard_tls {}\n`)).toEqual([
    "gw.hcl:4: gateway.dashboard_tls: needs cert_file and key_file (your certificate, PEM), mint_from_ca = true (one the gateway's CA signs), or acme {} (one an ACME CA issues)",
  ]);
  expect(await errorsOf(`  dashboard_tls {\n    cert_file = "d.crt"\n  }\n`, { "d.crt": CERT })).toEqual([
    "gw.hcl:5: gateway.dashboard_tls: cert_file needs key_file beside it",
  ]);
  expect(await errorsOf(`  dashboard_tls {\n    mint_from_ca = true\n    key_file = "d.key"\n  }\n`)).toEqual([
    "gw.hcl:6: gateway.dashboard_tls: give either cert_file and key_file or mint_from_ca = true, not both",
  ]);
  expect(await errorsOf(`  dashboard_tls {\n    mint_from_ca = "yes"\n    colour = "blue"\n  }\n`)).toEqual([
    'gw.hcl:5: gateway.dashboard_tls: mint_from_ca must be true or false, not "yes"',
    'gw.hcl:6: gateway.dashboard_tls: unknown attribute "colour"; expected one of: cert_file, key_file, mint_from_ca',
    "gw.hcl:4: gateway.dashboard_tls: needs cert_file and key_file (your certificate, PEM), mint_from_ca = true (one the gateway's CA signs), or acme {} (one an ACME CA issues)",
  ].sort(byLine));
  expect(await errorsOf(`  dashboard_tls {\n    cert_file = "missing.crt"\n    key_file = "d.key"\n  }\n`, { "d.key": "not a key" })).toEqual([
    expect.stringMatching(/^gw\.hcl:5: gateway\.dashboard_tls: cert_file: cannot read missing\.crt: .*ENOENT|no such file/i),
    "gw.hcl:6: gateway.dashboard_tls: key_file: d.key holds no PEM private key",
  ]);
  expect(await errorsOf(`  dashboard_tls { mint_from_ca = true }\n  dashboard_tls { mint_from_ca = true }\n`)).toEqual(["gw.hcl:5: gateway: duplicate dashboard_tls block"]);
});

test("a key file's contents never reach an error", async () => {
  const secret = "-----BEGIN NOT A KEY-----\nsuper-secret-key-material\n-----END NOT A KEY-----\n";
  const errors = await errorsOf(`  dashboard_tls {\n    cert_file = "d.key"\n    key_file = "d.key"\n  }\n`, { "d.key": secret });
  expect(errors.length).toBe(2);
  expect(errors.join("\n")).not.toContain("super-secret");
});

function byLine(a: string, b: string): number {
  return Number(a.split(":")[1]) - Number(b.split(":")[1]);
}

const ACME_GW = (acme: string, extra = `  public_url = "https://gw.example.com"\n`) =>
  `${extra}  dashboard_tls {\n    acme {\n${acme}    }\n  }\n`;

test("acme {}: directory, email; challenge http-01 and http_listen on dashboard_listen's host, port 80, by default", async () => {
  const dir = tempDir();
  writeFileSync(join(dir, "root.pem"), CERT);
  const p = await policyFrom(
    `schema_version = 1\ngateway {\n  state_dir = "s"\n  dashboard_listen = "0.0.0.0:443"\n${ACME_GW(`      directory = "https://acme.example/dir"\n      email = "ops@example.com"\n      ca_file = "${join(dir, "root.pem")}"\n`)}}\n`,
  );
  expect(p.gateway.dashboardTls).toEqual({ kind: "acme", directory: "https://acme.example/dir", email: "ops@example.com", challenge: "http-01", httpListen: "0.0.0.0:80", caPem: CERT });
  const q = await policyFrom(
    `schema_version = 1\ngateway {\n  state_dir = "s"\n${ACME_GW(`      directory = "https://acme.example/dir"\n      email = "ops@example.com"\n      challenge = "http-01"\n      http_listen = "127.0.0.1:8080"\n`)}}\n`,
  );
  expect(q.gateway.dashboardTls).toMatchObject({ kind: "acme", httpListen: "127.0.0.1:8080" });
});

test("acme {} mistakes, each at its line", async () => {
  expect(await errorsOf(ACME_GW(""))).toEqual([
    'gw.hcl:6: gateway.dashboard_tls.acme: missing required attribute "directory"',
    'gw.hcl:6: gateway.dashboard_tls.acme: missing required attribute "email"',
  ]);
  expect(
    await errorsOf(
      ACME_GW(`      directory = "http://acme.example/dir"\n      email = "ops"\n      challenge = "dns-01"\n      http_listen = "port 80"\n      ca_file = "nope.pem"\n      colour = "blue"\n`),
    ),
  ).toEqual([
    'gw.hcl:7: gateway.dashboard_tls.acme: directory must be an https URL (the ACME directory), not "http://acme.example/dir"',
    'gw.hcl:8: gateway.dashboard_tls.acme: email must be an address like "ops@example.com", not "ops"',
    'gw.hcl:9: gateway.dashboard_tls.acme: challenge must be "http-01" or "tls-alpn-01", not "dns-01"',
    'gw.hcl:10: gateway.dashboard_tls.acme: http_listen must be host:port, not "port 80"',
    expect.stringMatching(/^gw\.hcl:11: gateway\.dashboard_tls\.acme: ca_file: cannot read nope\.pem: /),
    'gw.hcl:12: gateway.dashboard_tls.acme: unknown attribute "colour"; expected one of: directory, email, challenge, http_listen, ca_file',
  ]);
  const ok = `      directory = "https://acme.example/dir"\n      email = "ops@example.com"\n`;
  expect(await errorsOf(ACME_GW(`${ok}      challenge = "tls-alpn-01"\n`))).toEqual([
    'gw.hcl:9: gateway.dashboard_tls.acme: challenge "tls-alpn-01" is not served yet; use "http-01" (the appliance answers on port 80)',
  ]);
  expect(await errorsOf(ACME_GW(ok, ""))).toEqual(["gw.hcl:5: gateway.dashboard_tls.acme: needs public_url in the gateway block: the certificate is issued for its host"]);
  expect(await errorsOf(ACME_GW(ok, `  public_url = "https://192.0.2.7"\n`))).toEqual([
    'gw.hcl:6: gateway.dashboard_tls.acme: public_url must be https:// with a DNS name (an ACME CA certifies names, not addresses), not "https://192.0.2.7"',
  ]);
  expect(await errorsOf(`  public_url = "https://gw.example.com"\n  dashboard_tls {\n    mint_from_ca = true\n    acme {\n${ok}    }\n  }\n`)).toEqual([
    "gw.hcl:6: gateway.dashboard_tls: give either acme {} or mint_from_ca, not both",
  ]);
  expect(await errorsOf(`  public_url = "https://gw.example.com"\n  dashboard_tls {\n    acme {\n${ok}    }\n    acme {\n${ok}    }\n  }\n`)).toEqual([
    "gw.hcl:10: gateway.dashboard_tls: duplicate acme block",
  ]);
});
