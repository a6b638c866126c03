// endpoint "postgres" "NAME" {
//   host       = "db.internal:5432"        # or hosts = ["a:5432", "b:5433"]
//   sslmode    = "verify-full"             # disable | prefer | require | verify-full
//   ca_cert    = "db-ca.pem"               # else the system store
//   allow_md5  = false                     # md5 upstream only when set
//   credential = postgres_password.NAME
// }
// Claimed by address: the device dials the database's name (a VIP when the
// DNS-VIP responder runs, else its real addresses, which the conn index
// knows) or an IP literal in hosts; the port is the one in host.
import type { BlockReader } from "../../policy/hcl/reader.ts";
import type { EndpointSpec } from "../spec.ts";
import { parseHostPort, readCaCert } from "../attrs.ts";

export const POSTGRES_DEFAULT_PORT = 5432;

export type SslMode = "disable" | "prefer" | "require" | "verify-full";

/** endpoint.settings of a postgres endpoint. */
export interface PostgresSettings {
  /** The real servers, by the name the flow was claimed under. */
  upstreams: { host: string; port: number }[];
  sslmode: SslMode;
  allowMd5: boolean;
}

export function postgresSettings(settings: Readonly<Record<string, unknown>> | undefined): PostgresSettings {
  // Built by this module's build(); anything else is a programming error.
  if (!settings || !Array.isArray(settings.upstreams)) throw new Error("not a postgres endpoint's settings");
  return settings as unknown as PostgresSettings;
}

function readUpstreams(r: BlockReader): { host: string; port: number }[] {
  if (r.has("host") && r.has("hosts")) {
    r.error(r.line("hosts"), "set host or hosts, not both");
    return [];
  }
  const attr = r.has("hosts") ? "hosts" : "host";
  if (!r.has(attr)) {
    r.error(r.block.line, 'missing host = "NAME:PORT" (or hosts = [...])');
    return [];
  }
  const values = attr === "hosts" ? r.list("hosts") : [r.string("host")].filter((v): v is string => v !== undefined);
  if (values === undefined) return [];
  if (values.length === 0) r.error(r.line(attr), `${attr} must name at least one server`);
  const out: { host: string; port: number }[] = [];
  for (const v of values) {
    const hp = parseHostPort(v, POSTGRES_DEFAULT_PORT);
    if (hp) out.push(hp);
    else r.error(r.line(attr), `${attr}: "${v}" is not HOST:PORT (a name or an IP literal; [v6]:port)`);
  }
  return out;
}

export const postgresSpec: EndpointSpec = {
  type: "postgres",
  family: "sql",
  defaultPorts: [POSTGRES_DEFAULT_PORT],
  claim: "address",
  serverSpeaksFirst: false,
  requiresVip: false,
  credentialTypes: ["postgres_password"],
  attributes: ["host", "hosts", "sslmode", "ca_cert", "allow_md5"],
  build(r, ctx) {
    const upstreams = readUpstreams(r);
    const sslmode = r.oneOf("sslmode", ["disable", "prefer", "require", "verify-full"] as const) ?? "prefer";
    const caCertPem = readCaCert(r, ctx.readText);
    if (caCertPem !== undefined && sslmode !== "verify-full" && sslmode !== "require") {
      r.error(r.line("ca_cert"), `ca_cert is only used with sslmode = "require" or "verify-full", not "${sslmode}"`);
    }
    const settings: PostgresSettings = { upstreams, sslmode, allowMd5: r.bool("allow_md5") ?? false };
    return {
      hosts: [...new Set(upstreams.map((u) => u.host))],
      ports: [...new Set(upstreams.map((u) => u.port))],
      ...(caCertPem ? { caCertPem } : {}),
      settings: settings as unknown as Record<string, unknown>,
    };
  },
  load: () => import("./serve.ts").then((m) => m.postgresHandler),
};
