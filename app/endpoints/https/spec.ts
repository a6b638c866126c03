// endpoint "https" "NAME" { hosts, ports, ca_cert, credential }: intercepted
// HTTPS, claimed by the ClientHello's server name.
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
  attributes: ["hosts", "ports", "ca_cert"],
  build(r, ctx) {
    const hosts = r.required("hosts") ? readHosts(r) : [];
    const ports = readPorts(r);
    const caCertPem = readCaCert(r, ctx.readText);
    return { hosts, ...(ports ? { ports } : {}), ...(caCertPem ? { caCertPem } : {}) };
  },
};
