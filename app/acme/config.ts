// `dashboard_tls { acme { … } }`: a certificate for public_url's host from an
// ACME CA (Let's Encrypt, or a private one), read with FILE:LINE errors:
//   acme {
//     directory   = "https://acme-v02.api.letsencrypt.org/directory"
//     email       = "ops@example.com"
//     challenge   = "http-01"        # the default and, so far, the only one
//     http_listen = "0.0.0.0:80"     # default: dashboard_listen's host, port 80
//     ca_file     = "private-acme-root.pem"  # only for a private ACME CA
//   }
import { isIP } from "node:net";
import * as nodePath from "node:path";
import type { BlockReader } from "../policy/hcl/reader.ts";
import type { AcmeSettings } from "../policy/types.ts";

type ReadFile = (absolutePath: string) => { ok: true; text: string } | { ok: false; error: string };

const LISTEN = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):\d{1,5}$/;
const EMAIL = /^[^\s@<>,;:"]+@[^\s@<>,;:"]+\.[^\s@<>,;:"]+$/;

export interface AcmeContext {
  base: string;
  readFile: ReadFile;
  publicUrl: string | undefined;
  dashboardListen: string;
}

export function readAcmeBlock(r: BlockReader, ctx: AcmeContext): AcmeSettings | undefined {
  r.allow(["directory", "email", "challenge", "http_listen", "ca_file"]);
  let ok = true;
  const fail = (attr: string, message: string) => {
    ok = false;
    r.error(r.line(attr), message);
  };
  const directory = r.required("directory") ? r.string("directory") : undefined;
  if (directory === undefined) ok = false;
  else if (!/^https:\/\/[^\s/]+(\/\S*)?$/.test(directory)) fail("directory", `directory must be an https URL (the ACME directory), not "${directory}"`);
  const email = r.required("email") ? r.string("email") : undefined;
  if (email === undefined) ok = false;
  else if (!EMAIL.test(email)) fail("email", `email must be an address like "ops@example.com", not "${email}"`);
  const challenge = r.has("challenge") ? r.oneOf("challenge", ["http-01", "tls-alpn-01"] as const) : "http-01";
  if (challenge === undefined) ok = false;
  else if (challenge === "tls-alpn-01") fail("challenge", 'challenge "tls-alpn-01" is not served yet; use "http-01" (the appliance answers on port 80)');
  const httpListen = r.string("http_listen") ?? `${listenHost(ctx.dashboardListen)}:80`;
  if (!LISTEN.test(httpListen)) fail("http_listen", `http_listen must be host:port, not "${httpListen}"`);

  const host = publicHost(ctx.publicUrl);
  if (host === undefined) {
    ok = false;
    r.error(r.block.line, "needs public_url in the gateway block: the certificate is issued for its host");
  } else if (host === null) {
    ok = false;
    r.error(r.block.line, `public_url must be https:// with a DNS name (an ACME CA certifies names, not addresses), not "${ctx.publicUrl}"`);
  }

  let caPem: string | undefined;
  const caFile = r.string("ca_file");
  if (caFile !== undefined) {
    const read = ctx.readFile(nodePath.resolve(ctx.base, caFile));
    if (!read.ok) fail("ca_file", `ca_file: cannot read ${caFile}: ${read.error}`);
    else if (!read.text.includes("-----BEGIN CERTIFICATE-----")) fail("ca_file", `ca_file: ${caFile} holds no PEM certificate`);
    else caPem = read.text;
  }
  if (!ok || directory === undefined || email === undefined) return undefined;
  return { kind: "acme", directory, email, challenge: "http-01", httpListen, ...(caPem !== undefined ? { caPem } : {}) };
}

/** public_url's host when it can be certified; undefined: no public_url; null: not https or an address. */
export function publicHost(publicUrl: string | undefined): string | null | undefined {
  if (publicUrl === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(publicUrl);
  } catch {
    return null;
  }
  const host = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  if (url.protocol !== "https:" || isIP(host) !== 0 || !host.includes(".")) return null;
  return host;
}

function listenHost(listen: string): string {
  const m = /^(\[[^\]]*\]|[^:]*):\d+$/.exec(listen);
  const host = m ? m[1]! : "";
  return host === "" ? "0.0.0.0" : host;
}
