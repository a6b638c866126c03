// endpoint "clickhouse_https" "NAME" {
//   hosts      = ["ch.internal"]        # names (or IP literals) of the HTTPS interface
//   ports      = [8443]                 # default [443, 8443]
//   ca_cert    = "ch-ca.pem"            # trusted for the upstream besides the system store
//   credential = clickhouse_password.NAME
// }
// Intercepted HTTPS, claimed by the ClientHello's server name (an IP literal
// in hosts binds for clients that send none), served by the https path with
// the clickhouse_http family: rules see http.* and the SQL as sql.*.
import type { EndpointSpec } from "../spec.ts";
import { readCaCert, readHosts, readPorts } from "../attrs.ts";

export const clickhouseHttpsSpec: EndpointSpec = {
  type: "clickhouse_https",
  family: "clickhouse_http",
  defaultPorts: [443, 8443],
  claim: "sni",
  serverSpeaksFirst: false,
  requiresVip: false,
  credentialTypes: ["clickhouse_password"],
  attributes: ["hosts", "ports", "ca_cert"],
  build(r, ctx) {
    const hosts = r.required("hosts") ? readHosts(r, { wildcards: false }) : [];
    const ports = readPorts(r);
    const caCertPem = readCaCert(r, ctx.readText);
    return { hosts, ...(ports ? { ports } : {}), ...(caCertPem ? { caCertPem } : {}) };
  },
};
