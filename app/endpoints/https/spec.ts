// endpoint "https" "NAME" { hosts, ports, ca_cert, trust_gateway_ca,
// credential, allow_plaintext_credentials }: intercepted HTTPS, claimed by the
// ClientHello's server name; its hosts are claimed for plain HTTP too (on
// port 80 and its `ports`), where the credential is injected only with
// `allow_plaintext_credentials = true`. `trust_gateway_ca = true` trusts the
// gateway's own CA for this upstream (the offline demo's echo server, whose
// certificate that CA issues at start; never for a real host).
import type { EndpointSpec } from "../spec.ts";
import { readCaCert, readHosts, readPorts } from "../attrs.ts";

export const httpsSpec: EndpointSpec = {
  type: "https",
  family: "http",
  defaultPorts: [443],
  claim: "sni",
  serverSpeaksFirst: false,
  requiresVip: false,
  credentialTypes: [
    "bearer_token",
    "header_token",
    "basic_auth",
    "cookie_token",
    "anthropic_manual_key",
    "openai_api_key",
    "github_token",
    "gemini_api_key",
    "passthrough",
  ],
  attributes: ["hosts", "ports", "ca_cert", "trust_gateway_ca", "allow_plaintext_credentials"],
  build(r, ctx) {
    const hosts = r.required("hosts") ? readHosts(r) : [];
    const ports = readPorts(r);
    const caCertPem = readCaCert(r, ctx.readText);
    const plaintext = r.bool("allow_plaintext_credentials") === true;
    const ownCa = r.bool("trust_gateway_ca") === true;
    const settings = { ...(plaintext ? { allowPlaintextCredentials: true } : {}), ...(ownCa ? { trustGatewayCa: true } : {}) };
    return {
      hosts,
      ...(ports ? { ports } : {}),
      ...(caCertPem ? { caCertPem } : {}),
      ...(Object.keys(settings).length > 0 ? { settings } : {}),
    };
  },
};
