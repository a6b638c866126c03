// endpoint "clickhouse_native" "NAME" {
//   hosts      = ["ch.internal:9000"]   # HOST[:PORT], port 9000 by default
//   tls        = false                  # true: TLS on both legs (the agent's with a gateway leaf)
//   ca_cert    = "ch-ca.pem"            # with tls: trusted for the upstream besides the system store
//   credential = clickhouse_password.NAME
// }
// Claimed by address: a VIP for a name in hosts, an IP literal in hosts, or
// a resolved address of a name (the conn index), on the port given.
import type { EndpointSpec } from "../spec.ts";
import { parseHostPort, readCaCert } from "../attrs.ts";

export const CLICKHOUSE_NATIVE_DEFAULT_PORT = 9000;

/** endpoint.settings of a clickhouse_native endpoint. */
export interface ClickHouseNativeSettings {
  upstreams: { host: string; port: number }[];
  tls: boolean;
}

export function clickhouseNativeSettings(settings: Readonly<Record<string, unknown>> | undefined): ClickHouseNativeSettings {
  // Built by this module's build(); anything else is a programming error.
  if (!settings || !Array.isArray(settings.upstreams) || typeof settings.tls !== "boolean") throw new Error("not a clickhouse_native endpoint's settings");
  return settings as unknown as ClickHouseNativeSettings;
}

export const clickhouseNativeSpec: EndpointSpec = {
  type: "clickhouse_native",
  family: "sql",
  defaultPorts: [CLICKHOUSE_NATIVE_DEFAULT_PORT],
  claim: "address",
  // The client speaks first (its Hello); the gateway reads nothing before the flow is claimed.
  serverSpeaksFirst: false,
  requiresVip: false,
  credentialTypes: ["clickhouse_password"],
  attributes: ["hosts", "tls", "ca_cert"],
  build(r, ctx) {
    const values = r.list("hosts");
    const upstreams: { host: string; port: number }[] = [];
    if (values === undefined) r.error(r.block.line, 'missing hosts = ["NAME:PORT", ...]');
    else {
      if (values.length === 0) r.error(r.line("hosts"), "hosts must name at least one server");
      for (const v of values) {
        const hp = parseHostPort(v, CLICKHOUSE_NATIVE_DEFAULT_PORT);
        if (hp) upstreams.push(hp);
        else r.error(r.line("hosts"), `hosts: "${v}" is not HOST[:PORT] (a name or an IP literal; [v6]:port)`);
      }
    }
    const tls = r.bool("tls") ?? false;
    const caCertPem = readCaCert(r, ctx.readText);
    if (caCertPem !== undefined && !tls) r.error(r.line("ca_cert"), "ca_cert is only used with tls = true");
    const settings: ClickHouseNativeSettings = { upstreams, tls };
    return {
      hosts: [...new Set(upstreams.map((u) => u.host))],
      ports: [...new Set(upstreams.map((u) => u.port))],
      ...(caCertPem ? { caCertPem } : {}),
      settings: settings as unknown as Record<string, unknown>,
    };
  },
  load: () => import("./serve.ts").then((m) => m.clickhouseNativeHandler),
};
