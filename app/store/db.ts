// The state database: one SQLite file in the state directory, shared by the
// gateway (which writes) and the operator CLI and dnsvip (which read, and
// write the odd secret or device). WAL lets readers run beside the writer;
// busy_timeout absorbs the short write locks the processes take.
//
// Schema changes are an ordered list of migrations; `PRAGMA user_version`
// counts how many have been applied. Append to MIGRATIONS, never edit one
// that has shipped.
import { Database } from "bun:sqlite";
import * as fs from "node:fs";
import * as path from "node:path";

export const STATE_DB_FILE = "state.db";

export const MIGRATIONS: readonly string[] = [
  // 1: secrets, proxy-mode devices, the action log.
  `
  CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    nonce      BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE TABLE devices (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    profile    TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
  );
  CREATE TABLE actions (
    id          INTEGER PRIMARY KEY,
    time        INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    flow_id     TEXT NOT NULL,
    device      TEXT NOT NULL,
    profile     TEXT NOT NULL,
    endpoint    TEXT,
    host        TEXT NOT NULL,
    port        INTEGER NOT NULL,
    method      TEXT,
    path        TEXT,
    status      INTEGER,
    bytes_up    INTEGER NOT NULL,
    bytes_down  INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    rule        TEXT,
    verdict     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    credential  TEXT,
    detail      TEXT
  );
  CREATE INDEX actions_time ON actions(time);
  CREATE INDEX actions_device ON actions(device, id);
  `,
  // 2: WireGuard devices (key, tunnel addresses, API token), the onboarding
  // requests of the device-code flow, and the address allocator's cursor.
  // SQLite cannot drop NOT NULL, so devices is rebuilt: a WireGuard device
  // has no proxy token.
  `
  CREATE TABLE devices_v2 (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    kind           TEXT NOT NULL DEFAULT 'proxy' CHECK (kind IN ('proxy', 'wireguard')),
    profile        TEXT NOT NULL,
    token_hash     TEXT UNIQUE,
    wg_public_key  TEXT UNIQUE,
    address        TEXT UNIQUE,
    address6       TEXT UNIQUE,
    api_token_hash TEXT UNIQUE,
    created_at     INTEGER NOT NULL,
    revoked_at     INTEGER,
    last_seen      INTEGER
  );
  INSERT INTO devices_v2 (id, name, kind, profile, token_hash, created_at, revoked_at)
    SELECT id, name, 'proxy', profile, token_hash, created_at, revoked_at FROM devices;
  DROP TABLE devices;
  ALTER TABLE devices_v2 RENAME TO devices;
  CREATE TABLE onboarding (
    id                INTEGER PRIMARY KEY,
    code              TEXT NOT NULL,
    device_code_hash  TEXT NOT NULL UNIQUE,
    device_name       TEXT NOT NULL,
    public_key        TEXT NOT NULL,
    requested_profile TEXT,
    source_ip         TEXT,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    state             TEXT NOT NULL DEFAULT 'pending'
                      CHECK (state IN ('pending', 'approved', 'denied', 'claimed', 'expired')),
    decided_by        TEXT,
    decided_at        INTEGER,
    device_id         INTEGER REFERENCES devices(id) ON DELETE SET NULL
  );
  CREATE UNIQUE INDEX onboarding_live_code ON onboarding(code) WHERE state IN ('pending', 'approved');
  CREATE INDEX onboarding_state ON onboarding(state, expires_at);
  CREATE TABLE address_cursor (
    subnet TEXT PRIMARY KEY,
    last   TEXT NOT NULL
  );
  `,
  // 3: who approved a held request, and how long it was held.
  `
  ALTER TABLE actions ADD COLUMN approvers TEXT;
  ALTER TABLE actions ADD COLUMN operator TEXT;
  ALTER TABLE actions ADD COLUMN approval_ms INTEGER;
  ALTER TABLE actions ADD COLUMN remembered INTEGER;
  `,
  // 4: operator accounts, their API tokens and login sessions (only hashes of
  // passwords, tokens and session ids), and the audit trail of their actions.
  `
  CREATE TABLE operators (
    id                 INTEGER PRIMARY KEY,
    name               TEXT NOT NULL UNIQUE,
    role               TEXT NOT NULL CHECK (role IN ('admin', 'approver', 'viewer')),
    password_hash      TEXT NOT NULL,
    password_temporary INTEGER NOT NULL DEFAULT 1,
    created_at         INTEGER NOT NULL,
    disabled           INTEGER NOT NULL DEFAULT 0
  );
  CREATE TABLE operator_tokens (
    id          INTEGER PRIMARY KEY,
    operator_id INTEGER NOT NULL REFERENCES operators(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'approver', 'viewer')),
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    last_used   INTEGER,
    UNIQUE (operator_id, name)
  );
  CREATE TABLE operator_sessions (
    id_hash     TEXT PRIMARY KEY,
    operator_id INTEGER NOT NULL REFERENCES operators(id) ON DELETE CASCADE,
    csrf        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    source      TEXT
  );
  CREATE INDEX operator_sessions_operator ON operator_sessions(operator_id);
  CREATE TABLE audit (
    id       INTEGER PRIMARY KEY,
    time     INTEGER NOT NULL,
    operator TEXT NOT NULL,
    action   TEXT NOT NULL,
    target   TEXT,
    detail   TEXT,
    source   TEXT
  );
  CREATE INDEX audit_time ON audit(time);
  CREATE INDEX audit_operator ON audit(operator, id);
  `,
  // 5: the DNS VIP table: hostname -> virtual IP. A hostname that leaves the
  // policy is released (released_at), not deleted: its address is reused
  // only when the range runs out, and it gets the same one if it returns.
  `
  CREATE TABLE vips (
    hostname     TEXT PRIMARY KEY,
    address      TEXT NOT NULL UNIQUE,
    allocated_at INTEGER NOT NULL,
    released_at  INTEGER
  );
  `,
  // 6: per-run WireGuard peers of a device (`clawpatrol run`). A row is one
  // tunnel address that belongs to the device for as long as the device row
  // exists (never reused by another device); a run holds it while public_key
  // is set, and the next run of the same device takes a free one.
  `
  CREATE TABLE run_peers (
    id          INTEGER PRIMARY KEY,
    device_id   INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    address     TEXT NOT NULL UNIQUE,
    address6    TEXT UNIQUE,
    run_id      TEXT UNIQUE,
    public_key  TEXT UNIQUE,
    started_at  INTEGER,
    created_at  INTEGER NOT NULL
  );
  CREATE INDEX run_peers_device ON run_peers(device_id);
  `,
  // 7: every rule family records its actions here: the family (http, sql),
  // a one-line summary and the structured action (JSON) beside the HTTP columns.
  `
  ALTER TABLE actions ADD COLUMN family TEXT;
  ALTER TABLE actions ADD COLUMN summary TEXT;
  ALTER TABLE actions ADD COLUMN action TEXT;
  `,
  // 8: what shadow rules would have decided, beside the real verdict (JSON
  // [{rule, would}]); and the rate-limit buckets, saved so that a restart
  // within a rule's window keeps its count.
  `
  ALTER TABLE actions ADD COLUMN shadow TEXT;
  CREATE TABLE rate_limits (
    key    TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    at     INTEGER NOT NULL
  );
  `,
  // 9: SSH endpoints. The host key the gateway shows agents, one per endpoint,
  // made on first use and kept (encrypted with the master key) so a device's
  // known_hosts stays valid across restarts; and each upstream's host key as
  // first seen (trust on first use), so a later change is refused.
  `
  CREATE TABLE ssh_host_keys (
    endpoint    TEXT PRIMARY KEY,
    nonce       BLOB NOT NULL,
    private_key BLOB NOT NULL,
    public_key  TEXT NOT NULL,
    created_at  INTEGER NOT NULL
  );
  CREATE TABLE ssh_upstream_keys (
    host       TEXT NOT NULL,
    port       INTEGER NOT NULL,
    key_type   TEXT NOT NULL,
    key_blob   TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    PRIMARY KEY (host, port)
  );
  `,
  // 10: LLM spend. The usage an API reported for a request (JSON: model,
  // tokens, USD) beside its event; and the day's spend per device, profile,
  // credential and model, which daily budgets are checked against and which
  // a restart keeps.
  `
  ALTER TABLE actions ADD COLUMN usage TEXT;
  CREATE TABLE spend_daily (
    day                TEXT NOT NULL,
    device             TEXT NOT NULL,
    profile            TEXT NOT NULL,
    credential         TEXT NOT NULL,
    model              TEXT NOT NULL,
    usd                REAL NOT NULL,
    input_tokens       INTEGER NOT NULL,
    output_tokens      INTEGER NOT NULL,
    cache_read_tokens  INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    requests           INTEGER NOT NULL,
    PRIMARY KEY (day, device, profile, credential, model)
  );
  `,
  // 11: the command gate's kill switch, engaged: one row per device stopped
  // (or "*" for every device), so a gateway restart does not release it.
  `
  CREATE TABLE gate_kills (
    scope    TEXT PRIMARY KEY,
    operator TEXT NOT NULL,
    reason   TEXT NOT NULL,
    since    INTEGER NOT NULL
  );
  `,
];

/**
 * Open (creating if needed) `stateDir/state.db`, apply pending migrations and
 * return the handle. The directory is made 0700 and the file 0600; SQLite
 * gives its -wal and -shm files the database file's mode.
 */
export function openStateDb(stateDir: string): Database {
  if (!fs.existsSync(stateDir)) fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const file = path.join(stateDir, STATE_DB_FILE);
  // Create the file ourselves so it never exists with the umask's mode.
  fs.closeSync(fs.openSync(file, "a", 0o600));
  tightenMode(file);

  const db = new Database(file, { create: true, strict: true });
  try {
    db.run("PRAGMA busy_timeout = 5000");
    db.run("PRAGMA journal_mode = WAL");
    db.run("PRAGMA synchronous = NORMAL");
    db.run("PRAGMA foreign_keys = ON");
    migrate(db);
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

function tightenMode(file: string): void {
  try {
    const mode = fs.statSync(file).mode & 0o777;
    if (mode & 0o077) fs.chmodSync(file, mode & 0o700);
  } catch {
    // Not ours to chmod (e.g. owned by another user); leave it as the operator set it.
  }
}

/** Apply every migration past `user_version`, each in its own transaction. */
export function migrate(db: Database, migrations: readonly string[] = MIGRATIONS): void {
  for (;;) {
    // IMMEDIATE takes the write lock before reading the version, so two
    // processes starting together cannot both apply the same step.
    const applied = db
      .transaction((): boolean => {
        const version = userVersion(db);
        if (version > migrations.length) {
          throw new Error(
            `state database schema version ${version} is newer than this build knows (${migrations.length}); upgrade clawpatrol`,
          );
        }
        const sql = migrations[version];
        if (sql === undefined) return false;
        db.run(sql);
        db.run(`PRAGMA user_version = ${version + 1}`);
        return true;
      })
      .immediate();
    if (!applied) return;
  }
}

export function userVersion(db: Database): number {
  const row = db.query("PRAGMA user_version").get() as { user_version: number } | null;
  return row?.user_version ?? 0;
}

/**
 * SQLite's `PRAGMA data_version`: changes whenever another connection (in
 * this process or another) commits. Cheap enough to check on every request.
 */
export function dataVersion(db: Database): number {
  const row = db.query("PRAGMA data_version").get() as { data_version: number } | null;
  return row?.data_version ?? 0;
}
