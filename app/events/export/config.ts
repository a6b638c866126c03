// `gateway { events { clickhouse { ... } } }`: the audit export's settings,
// read and checked with FILE:LINE errors.
//
//   clickhouse {
//     url            = "https://ch.example:8443"   # required; http or https
//     database       = "clawpatrol"                # default
//     table          = "events"                    # default
//     credential     = clickhouse_password.audit   # the user and its password; unset: `default`, no password
//     gateway_name   = "gw-eu-1"                   # default: the host name
//     spool_max      = "256MiB"                    # on-disk queue cap; events beyond it are dropped and counted
//     batch_size     = 1000                        # rows per insert at most
//     flush_interval = "1s"                        # a partial batch waits at most this long
//   }
import { readDuration } from "../../approvers/config.ts";
import type { BlockReader } from "../../policy/hcl/reader.ts";
import type { SourceRef } from "../../policy/types.ts";

export interface ClickHouseExportSettings {
  /** Base URL of ClickHouse's HTTP interface, without credentials. */
  url: string;
  database: string;
  table: string;
  /** A `clickhouse_password.NAME` ref, or unset for the `default` user without a password. */
  credential?: string;
  /** Unset: the machine's host name (app/gateway.ts). */
  gatewayName?: string;
  spoolMaxBytes: number;
  batchSize: number;
  flushIntervalMs: number;
  source: SourceRef;
}

export const EXPORT_DEFAULTS = {
  database: "clawpatrol",
  table: "events",
  spoolMaxBytes: 256 * 1024 * 1024,
  batchSize: 1000,
  flushIntervalMs: 1000,
} as const;

/** Below this a spool could not hold one batch of ordinary events. */
const MIN_SPOOL_BYTES = 64 * 1024;
const MAX_BATCH_SIZE = 100_000;
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

export interface ExportConfigContext {
  /** Resolves `credential` against the declared credentials (errors reported by the caller's resolver). */
  resolveCredential(r: BlockReader, attr: string): string | undefined;
  parseSize(v: unknown): number | undefined;
}

export function readClickHouseExportBlock(r: BlockReader, ctx: ExportConfigContext): ClickHouseExportSettings | undefined {
  r.allow(["url", "database", "table", "credential", "gateway_name", "spool_max", "batch_size", "flush_interval"]);
  let ok = true;
  const bad = (attr: string, message: string) => {
    r.error(r.line(attr), message);
    ok = false;
  };

  const url = r.required("url") ? r.string("url") : undefined;
  if (url === undefined) ok = false;
  else {
    const problem = urlProblem(url);
    if (problem) bad("url", problem);
  }
  const database = r.string("database") ?? EXPORT_DEFAULTS.database;
  if (!IDENTIFIER.test(database)) bad("database", `database must be a plain identifier (letters, digits, _), not "${database}"`);
  const table = r.string("table") ?? EXPORT_DEFAULTS.table;
  if (!IDENTIFIER.test(table)) bad("table", `table must be a plain identifier (letters, digits, _), not "${table}"`);

  let credential: string | undefined;
  if (r.has("credential")) {
    credential = ctx.resolveCredential(r, "credential");
    if (credential === undefined) ok = false;
    else if (!credential.startsWith("clickhouse_password.")) bad("credential", `credential must be a clickhouse_password, not ${credential}`);
  }

  const gatewayName = r.string("gateway_name");
  if (gatewayName !== undefined && (gatewayName === "" || /[\x00-\x1f]/.test(gatewayName))) bad("gateway_name", "gateway_name must be a non-empty single line");

  let spoolMaxBytes: number = EXPORT_DEFAULTS.spoolMaxBytes;
  if (r.has("spool_max")) {
    const size = ctx.parseSize(r.raw("spool_max"));
    if (size === undefined || size < MIN_SPOOL_BYTES) bad("spool_max", `spool_max must be a size of at least 64KiB, like "256MiB"`);
    else spoolMaxBytes = size;
  }
  const batchSize = r.has("batch_size") ? r.integer("batch_size", 1) : EXPORT_DEFAULTS.batchSize;
  if (batchSize === undefined) ok = false;
  else if (batchSize > MAX_BATCH_SIZE) bad("batch_size", `batch_size must be at most ${MAX_BATCH_SIZE}, not ${batchSize}`);
  const flushIntervalMs = r.has("flush_interval") ? readDuration(r, "flush_interval", 100) : EXPORT_DEFAULTS.flushIntervalMs;
  if (flushIntervalMs === undefined) ok = false;

  if (!ok || url === undefined || batchSize === undefined || flushIntervalMs === undefined) return undefined;
  return {
    url: url.replace(/\/+$/, ""),
    database,
    table,
    ...(credential !== undefined ? { credential } : {}),
    ...(gatewayName !== undefined ? { gatewayName } : {}),
    spoolMaxBytes,
    batchSize,
    flushIntervalMs,
    source: { file: r.block.file, line: r.block.line },
  };
}

function urlProblem(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'url must be an http(s) URL like "https://clickhouse.example:8443"';
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") return `url must be http:// or https://, not ${u.protocol}//`;
  // Never echo a URL that carries a password back into an error message.
  if (u.username !== "" || u.password !== "") return "url must not carry a user or password: name a clickhouse_password credential instead";
  if (u.search !== "" || u.hash !== "") return "url must not carry a query or fragment";
  return undefined;
}
