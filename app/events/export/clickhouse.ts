// The audit export's target: ClickHouse over its HTTP interface with
// @clickhouse/client, and the one call that assembles the export for the
// gateway (spool under the state dir + exporter + this target).
//
// Tested against ClickHouse 18.16 (Debian 12's clickhouse-server): the
// client's defaults work there as they are (JSONEachRow inserts, plain
// CREATE statements, gzip request bodies); no DateTime64 or Nullable in the
// table (rows.ts). The client's own logger is off: failures are ours to log,
// once per outage, and never with the password.
import path from "node:path";
import { ClickHouseLogLevel, createClient, type ClickHouseClient } from "@clickhouse/client";
import type { ResolvedSecret } from "../../credentials/resolve.ts";
import type { Credential } from "../../policy/types.ts";
import type { ClickHouseExportSettings } from "./config.ts";
import { Exporter, type ExportTarget } from "./exporter.ts";
import { createDatabaseSql, createTableSql, qualifiedTable } from "./rows.ts";
import { Spool } from "./spool.ts";

export type ExportAuth = { ok: true; username: string; password: string } | { ok: false; reason: string };

export interface ClickHouseTargetOptions {
  /** Read at every (re)connect, so a rotated password is picked up. */
  auth: () => ExportAuth;
  /** PEM roots for an https URL (default: the client's, i.e. Node's). */
  caRoots?: () => string[];
  /** Per request (default 30 s). */
  requestTimeoutMs?: number;
}

export class ClickHouseTarget implements ExportTarget {
  private client: ClickHouseClient | undefined;
  private clientKey = "";

  constructor(
    private readonly settings: ClickHouseExportSettings,
    private readonly opts: ClickHouseTargetOptions,
  ) {}

  async prepare(signal: AbortSignal): Promise<void> {
    const client = await this.connect();
    await client.command({ query: createDatabaseSql(this.settings.database), abort_signal: signal });
    await client.command({ query: createTableSql(this.settings.database, this.settings.table), abort_signal: signal });
  }

  async insert(rows: Record<string, unknown>[], signal: AbortSignal): Promise<void> {
    const client = await this.connect();
    await client.insert({
      table: qualifiedTable(this.settings.database, this.settings.table),
      values: rows,
      format: "JSONEachRow",
      abort_signal: signal,
    });
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    await c?.close();
  }

  /** The client for the current credentials; a new one when they changed. */
  private async connect(): Promise<ClickHouseClient> {
    const auth = this.opts.auth();
    if (!auth.ok) throw new Error(auth.reason);
    const key = `${auth.username}\0${auth.password}`;
    if (this.client && key === this.clientKey) return this.client;
    await this.close();
    const https = this.settings.url.startsWith("https:");
    const roots = https ? this.opts.caRoots?.() : undefined;
    this.client = createClient({
      url: this.settings.url,
      username: auth.username,
      password: auth.password,
      application: "clawpatrol",
      request_timeout: this.opts.requestTimeoutMs ?? 30_000,
      compression: { request: true, response: false },
      log: { level: ClickHouseLogLevel.OFF },
      ...(roots && roots.length > 0 ? { tls: { ca_cert: Buffer.from(roots.join("\n")) } } : {}),
    });
    this.clientKey = key;
    return this.client;
  }
}

export interface StartExportOptions {
  stateDir: string;
  /** The `gateway` column. */
  gatewayName: string;
  auth: () => ExportAuth;
  caRoots?: () => string[];
  /** Test hooks: retry delays. */
  backoff?: { minMs: number; maxMs: number };
}

/** The spool directory of an export, under the state dir; one per database.table. */
export function spoolDirFor(stateDir: string, s: ClickHouseExportSettings): string {
  return path.join(stateDir, "export", `clickhouse-${s.database}.${s.table}`);
}

export function startClickHouseExport(settings: ClickHouseExportSettings, opts: StartExportOptions): Exporter {
  const spool = new Spool({ dir: spoolDirFor(opts.stateDir, settings), maxBytes: settings.spoolMaxBytes });
  const target = new ClickHouseTarget(settings, { auth: opts.auth, ...(opts.caRoots ? { caRoots: opts.caRoots } : {}) });
  return new Exporter({
    spool,
    target,
    gateway: opts.gatewayName,
    batchSize: settings.batchSize,
    flushIntervalMs: settings.flushIntervalMs,
    name: "clickhouse export",
    ...(opts.backoff ? { backoff: opts.backoff } : {}),
  });
}

/** The user and password a `clickhouse_password` credential names, looked up now; `default` without one. */
export function exportAuth(
  ref: string | undefined,
  credentials: ReadonlyMap<string, Credential>,
  resolve: (cred: Credential) => ResolvedSecret,
): ExportAuth {
  if (ref === undefined) return { ok: true, username: "default", password: "" };
  const cred = credentials.get(ref);
  if (!cred) return { ok: false, reason: `credential ${ref} is not configured` };
  const secret = resolve(cred);
  if (!secret.ok) return { ok: false, reason: secret.reason };
  return { ok: true, username: cred.settings.user ?? "default", password: secret.value };
}
