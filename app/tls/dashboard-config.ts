// `gateway { dashboard_tls { … } }`: HTTPS for the dashboard and public API,
// read and checked with FILE:LINE errors. Either the operator's certificate:
//   dashboard_tls { cert_file = "dashboard.crt"  key_file = "dashboard.key" }
// or one the gateway's CA signs for public_url's host and the machine's
// addresses (dashboard-cert.ts):
//   dashboard_tls { mint_from_ca = true }
// or one an ACME CA issues for public_url's host (app/acme/config.ts):
//   dashboard_tls { acme { directory = "…"  email = "…" } }
// The files are checked for a PEM block here; that they belong together is
// checked when the listener starts. Key contents never reach a message.
import * as nodePath from "node:path";
import { BlockReader } from "../policy/hcl/reader.ts";
import type { ConfigError, DashboardTlsSettings } from "../policy/types.ts";
import { readAcmeBlock, type AcmeContext } from "../acme/config.ts";

type ReadFile = (absolutePath: string) => { ok: true; text: string } | { ok: false; error: string };

const PEM_CERT = /-----BEGIN CERTIFICATE-----/;
const PEM_KEY = /-----BEGIN (EC |RSA )?PRIVATE KEY-----/;

export function readDashboardTlsBlock(
  r: BlockReader,
  base: string,
  readFile: ReadFile,
  /** What the acme block needs from around it (its errors go to the same list as r's). */
  gateway: Pick<AcmeContext, "publicUrl" | "dashboardListen"> & { errors: ConfigError[] },
): DashboardTlsSettings | undefined {
  r.allow(["cert_file", "key_file", "mint_from_ca"], ["acme"]);
  const acmeBlocks = r.block.blocks.filter((b) => b.type === "acme");
  for (const extra of acmeBlocks.slice(1)) r.error(extra.line, "duplicate acme block");
  if (acmeBlocks[0]) {
    const others = ["cert_file", "key_file", "mint_from_ca"].filter((a) => r.has(a));
    if (others.length > 0) {
      r.error(r.line(others[0]!), `give either acme {} or ${others.join(" and ")}, not both`);
      return undefined;
    }
    return readAcmeBlock(new BlockReader(acmeBlocks[0], `${r.what}.acme`, gateway.errors), { base, readFile, publicUrl: gateway.publicUrl, dashboardListen: gateway.dashboardListen });
  }
  const mintFromCa = r.bool("mint_from_ca");
  const certFile = r.string("cert_file");
  const keyFile = r.string("key_file");
  if (mintFromCa === true) {
    if (certFile !== undefined || keyFile !== undefined) {
      r.error(r.line(certFile !== undefined ? "cert_file" : "key_file"), "give either cert_file and key_file or mint_from_ca = true, not both");
      return undefined;
    }
    return { kind: "mint_from_ca" };
  }
  if (certFile === undefined || keyFile === undefined) {
    if (certFile === undefined && keyFile === undefined) {
      r.error(r.block.line, "needs cert_file and key_file (your certificate, PEM), mint_from_ca = true (one the gateway's CA signs), or acme {} (one an ACME CA issues)");
    } else {
      r.error(r.line(certFile === undefined ? "key_file" : "cert_file"), `${certFile === undefined ? "key_file" : "cert_file"} needs ${certFile === undefined ? "cert_file" : "key_file"} beside it`);
    }
    return undefined;
  }
  const cert = nodePath.resolve(base, certFile);
  const key = nodePath.resolve(base, keyFile);
  let ok = true;
  const c = readFile(cert);
  if (!c.ok) (ok = false), r.error(r.line("cert_file"), `cert_file: cannot read ${certFile}: ${c.error}`);
  else if (!PEM_CERT.test(c.text)) (ok = false), r.error(r.line("cert_file"), `cert_file: ${certFile} holds no PEM certificate`);
  const k = readFile(key);
  if (!k.ok) (ok = false), r.error(r.line("key_file"), `key_file: cannot read ${keyFile}: ${k.error}`);
  else if (!PEM_KEY.test(k.text)) (ok = false), r.error(r.line("key_file"), `key_file: ${keyFile} holds no PEM private key`);
  return ok ? { kind: "files", certFile: cert, keyFile: key } : undefined;
}
