// Proxy-mode device tokens. A device presents `cpd_…` in Proxy-Authorization;
// only the token's SHA-256 is stored, so the database alone cannot be used
// to impersonate a device. Lookups go to the database every time (one
// indexed read) so a revoke from the CLI takes effect on the next connection.
import type { Database } from "bun:sqlite";
import { createHash, randomBytes } from "node:crypto";

export const DEVICE_TOKEN_PREFIX = "cpd_";
const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/;

export class DeviceError extends Error {
  override name = "DeviceError";
}

export interface DeviceInfo {
  name: string;
  profile: string;
  /** ms since epoch */
  createdAt: number;
  /** ms since epoch; absent while the device is active */
  revokedAt?: number;
}

export function validDeviceName(name: string): boolean {
  return NAME_RE.test(name);
}

export function hashDeviceToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

interface DeviceRow {
  name: string;
  profile: string;
  created_at: number;
  revoked_at: number | null;
}

export class DeviceRegistry {
  private readonly now: () => number;

  constructor(
    private readonly db: Database,
    opts: { now?: () => number } = {},
  ) {
    this.now = opts.now ?? Date.now;
  }

  /**
   * Register a device and return its token; the token is shown once and
   * cannot be recovered. A revoked device's name may be reused.
   */
  add(name: string, profile: string): { token: string } {
    if (!NAME_RE.test(name)) {
      throw new DeviceError(
        `invalid device name ${JSON.stringify(name)}: 1-64 of a-z A-Z 0-9 _ . -, starting with a letter or digit`,
      );
    }
    if (profile.length === 0) throw new DeviceError("a device needs a profile");
    const token = DEVICE_TOKEN_PREFIX + randomBytes(32).toString("base64url");
    this.db
      .transaction(() => {
        const existing = this.row(name);
        if (existing && existing.revoked_at === null) {
          throw new DeviceError(`device ${JSON.stringify(name)} already exists; revoke it first to issue a new token`);
        }
        if (existing) this.db.query("DELETE FROM devices WHERE name = ?").run(name);
        this.db
          .query("INSERT INTO devices (name, profile, token_hash, created_at) VALUES (?, ?, ?, ?)")
          .run(name, profile, hashDeviceToken(token), this.now());
      })
      .immediate();
    return { token };
  }

  /** The active device holding this token, if any. */
  lookupByToken(token: string): { name: string; profile: string } | undefined {
    if (!token.startsWith(DEVICE_TOKEN_PREFIX)) return undefined;
    const row = this.db
      .query("SELECT name, profile FROM devices WHERE token_hash = ? AND revoked_at IS NULL")
      .get(hashDeviceToken(token)) as { name: string; profile: string } | null;
    return row ? { name: row.name, profile: row.profile } : undefined;
  }

  get(name: string): DeviceInfo | undefined {
    const row = this.row(name);
    return row ? toInfo(row) : undefined;
  }

  /** All devices, revoked ones included, by name. */
  list(): DeviceInfo[] {
    const rows = this.db
      .query("SELECT name, profile, created_at, revoked_at FROM devices ORDER BY name")
      .all() as DeviceRow[];
    return rows.map(toInfo);
  }

  /** Revoke an active device; false when there is none by that name. */
  revoke(name: string): boolean {
    const res = this.db
      .query("UPDATE devices SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL")
      .run(this.now(), name);
    return res.changes > 0;
  }

  /** Move an active device to another profile; false when there is none by that name. */
  setProfile(name: string, profile: string): boolean {
    if (profile.length === 0) throw new DeviceError("a device needs a profile");
    const res = this.db
      .query("UPDATE devices SET profile = ? WHERE name = ? AND revoked_at IS NULL")
      .run(profile, name);
    return res.changes > 0;
  }

  private row(name: string): DeviceRow | undefined {
    const row = this.db
      .query("SELECT name, profile, created_at, revoked_at FROM devices WHERE name = ?")
      .get(name) as DeviceRow | null;
    return row ?? undefined;
  }
}

function toInfo(row: DeviceRow): DeviceInfo {
  const info: DeviceInfo = { name: row.name, profile: row.profile, createdAt: row.created_at };
  if (row.revoked_at !== null) info.revokedAt = row.revoked_at;
  return info;
}
