// endpoint "kubernetes" "NAME" {
//   server     = "https://k8s.internal:6443"   # the API server, as a kubeconfig names it
//   ca_cert    = "cluster-ca.pem"              # the cluster's CA (else the system store)
//   credential = bearer_token.NAME             # or k8s_client_cert.NAME
// }
// Intercepted HTTPS claimed by the ClientHello's server name (the server's
// host, on its port), served by the HTTPS runtime with the k8s family's
// facets (app/families/k8s.ts) and Kubernetes-shaped denials (status.ts).
import type { BlockReader } from "../../policy/hcl/reader.ts";
import type { EndpointSpec } from "../spec.ts";
import { parseHostPort, readCaCert } from "../attrs.ts";

export const KUBERNETES_DEFAULT_PORT = 443;

/** endpoint.settings of a kubernetes endpoint. */
export interface KubernetesSettings {
  /** `https://HOST[:PORT]`, normalised: what a device's kubeconfig names. */
  server: string;
}

export function kubernetesSettings(settings: Readonly<Record<string, unknown>> | undefined): KubernetesSettings {
  if (!settings || typeof settings.server !== "string") throw new Error("not a kubernetes endpoint's settings");
  return settings as unknown as KubernetesSettings;
}

/** `https://HOST[:PORT][/]`: the host (a name or an IP literal) and port, or why not. */
export function parseServer(text: string): { host: string; port: number; server: string } | { error: string } {
  const m = /^https:\/\/([^/?#@]+)\/?$/i.exec(text.trim());
  if (!m) return { error: `server: "${text}" is not https://HOST[:PORT] (no path, query or user)` };
  const hp = parseHostPort(m[1]!, KUBERNETES_DEFAULT_PORT);
  if (!hp) return { error: `server: "${text}" does not name a host and port` };
  const host = hp.host.includes(":") ? `[${hp.host}]` : hp.host;
  return { ...hp, server: `https://${host}${hp.port === KUBERNETES_DEFAULT_PORT ? "" : `:${hp.port}`}` };
}

function readServer(r: BlockReader): { host: string; port: number; server: string } | undefined {
  if (!r.required("server")) return undefined;
  const text = r.string("server");
  if (text === undefined) return undefined;
  const parsed = parseServer(text);
  if ("error" in parsed) {
    r.error(r.line("server"), parsed.error);
    return undefined;
  }
  return parsed;
}

export const kubernetesSpec: EndpointSpec = {
  type: "kubernetes",
  family: "k8s",
  defaultPorts: [KUBERNETES_DEFAULT_PORT],
  claim: "sni",
  serverSpeaksFirst: false,
  requiresVip: false,
  credentialTypes: ["bearer_token", "k8s_client_cert", "passthrough"],
  attributes: ["server", "ca_cert"],
  build(r, ctx) {
    const server = readServer(r);
    const caCertPem = readCaCert(r, ctx.readText);
    const settings: KubernetesSettings | undefined = server ? { server: server.server } : undefined;
    return {
      hosts: server ? [server.host] : [],
      ...(server ? { ports: [server.port] } : {}),
      ...(caCertPem ? { caCertPem } : {}),
      ...(settings ? { settings: settings as unknown as Record<string, unknown> } : {}),
    };
  },
};
