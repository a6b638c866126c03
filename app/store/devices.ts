// The device registry. Two kinds of device:
//  - proxy: presents `cpd_…` in Proxy-Authorization (added by the operator);
//  - wireguard: enrolled through the device-code flow (app/control/onboard/),
//    known by its WireGuard public key and its tunnel address(es), holding a
//    `cpa_…` API token for the gateway's device API.
// Only tokens' SHA-256 are stored, so the database alone cannot be used to
// impersonate a device. Lookups go to the database every time (one indexed
// read) so a revoke from the CLI takes effect on the next connection.
import type { Database } from "bun:sqlite";
import { createHash, randomBytes } from "node:crypto";
import type { AddressPool } from "./addresses.ts";

export const DEVICE_TOKEN_PREFIX = "cpd_";
export const API_TOKEN_PREFIX = "cpa_";

export type DeviceKind = "proxy" | "wireguard";
const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/;

export class DeviceError extends Error {
  override name = "DeviceError";
}

export interface DeviceInfo {
  name: string;
  kind: DeviceKind;
  profile: string;
  /** ms since epoch */
  createdAt: number;
  /** ms since epoch; absent while the device is active */
  revokedAt?: number;
  /** WireGuard only: the device's public key (base64). */
  publicKey?: string;
  /** WireGuard only: tunnel IPv4 address (a /32), e.g. `10.77.0.2`. */
  address?: string;
  /** WireGuard only: tunnel IPv6 address (a /128), when a ULA subnet is configured. */
  address6?: string;
  /** ms since epoch of the last flow or API call seen from the device. */
  lastSeen?: number;
}

/** What the gateway needs to add a WireGuard peer. */
export interface WireguardDevice {
  name: string;
  profile: string;
  publicKey: string;
  address: string;
  address6?: string;
}

export function validDeviceName(name: string): boolean {
  return NAME_RE.test(name);
}

export function hashDeviceToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

interface DeviceRow {
  id: number;
  name: string;
  kind: DeviceKind;
  profile: string;
  created_at: number;
  revoked_at: number | null;
  wg_public_key: string | null;
  address: string | null;
  address6: string | null;
  last_seen: number | null;
}

const COLUMNS = "id, name, kind, profile, created_at, revoked_at, wg_public_key, address, address6, last_seen";

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
    checkName(name);
    if (profile.length === 0) throw new DeviceError("a device needs a profile");
    const token = DEVICE_TOKEN_PREFIX + randomBytes(32).toString("base64url");
    this.db
      .transaction(() => {
        this.freeName(name);
        this.db
          .query("INSERT INTO devices (name, kind, profile, token_hash, created_at) VALUES (?, 'proxy', ?, ?, ?)")
          .run(name, profile, hashDeviceToken(token), this.now());
      })
      .immediate();
    return { token };
  }

  /**
   * Register a WireGuard device and give it the pool's next address(es), in
   * one transaction. A revoked device of the same name is replaced (its
   * address released); a revoked device holding the same key gives it up.
   * Throws DeviceError when an active device has the name or the key, and
   * AddressError("subnet_full") when no address is left.
   */
  addWireguard(name: string, profile: string, publicKey: string, pool: AddressPool): WireguardDevice & { id: number } {
    checkName(name);
    if (profile.length === 0) throw new DeviceError("a device needs a profile");
    return this.db
      .transaction(() => {
        const holder = this.db
          .query("SELECT name, revoked_at FROM devices WHERE wg_public_key = ?")
          .get(publicKey) as { name: string; revoked_at: number | null } | null;
        if (holder && holder.revoked_at === null) {
          throw new DeviceError(`this WireGuard key already belongs to device ${JSON.stringify(holder.name)}`);
        }
        if (holder) this.db.query("UPDATE devices SET wg_public_key = NULL WHERE wg_public_key = ?").run(publicKey);
        this.freeName(name);
        const { address, address6 } = pool.allocate();
        const res = this.db
          .query(
            "INSERT INTO devices (name, kind, profile, wg_public_key, address, address6, created_at) VALUES (?, 'wireguard', ?, ?, ?, ?, ?)",
          )
          .run(name, profile, publicKey, address, address6 ?? null, this.now());
        const dev: WireguardDevice & { id: number } = { id: Number(res.lastInsertRowid), name, profile, publicKey, address };
        if (address6 !== undefined) dev.address6 = address6;
        return dev;
      })
      .immediate();
  }

  /**
   * Issue (or replace) the API token of an active device; returns it once.
   * Undefined when there is no active device by that name.
   */
  issueApiToken(name: string): string | undefined {
    const token = API_TOKEN_PREFIX + randomBytes(32).toString("base64url");
    const res = this.db
      .query("UPDATE devices SET api_token_hash = ? WHERE name = ? AND revoked_at IS NULL")
      .run(hashDeviceToken(token), name);
    return res.changes > 0 ? token : undefined;
  }

  /** The active device holding this API token, if any. */
  lookupByApiToken(token: string): DeviceInfo | undefined {
    if (!token.startsWith(API_TOKEN_PREFIX)) return undefined;
    const row = this.db
      .query(`SELECT ${COLUMNS} FROM devices WHERE api_token_hash = ? AND revoked_at IS NULL`)
      .get(hashDeviceToken(token)) as DeviceRow | null;
    return row ? toInfo(row) : undefined;
  }

  /** The active WireGuard device with this public key (base64), if any. */
  lookupByPublicKey(publicKey: string): DeviceInfo | undefined {
    const row = this.db
      .query(`SELECT ${COLUMNS} FROM devices WHERE wg_public_key = ? AND revoked_at IS NULL`)
      .get(publicKey) as DeviceRow | null;
    return row ? toInfo(row) : undefined;
  }

  /** The active WireGuard device with this tunnel address (IPv4 or IPv6 text), if any. */
  lookupByAddress(address: string): DeviceInfo | undefined {
    const row = this.db
      .query(`SELECT ${COLUMNS} FROM devices WHERE (address = ? OR address6 = ?) AND revoked_at IS NULL`)
      .get(address, address) as DeviceRow | null;
    return row ? toInfo(row) : undefined;
  }

  /** Every active WireGuard device: the peers the gateway loads at start. */
  activeWireguard(): WireguardDevice[] {
    const rows = this.db
      .query(`SELECT ${COLUMNS} FROM devices WHERE kind = 'wireguard' AND revoked_at IS NULL AND wg_public_key IS NOT NULL ORDER BY id`)
      .all() as DeviceRow[];
    return rows.map((r) => toWireguard(r)!);
  }

  /** Record activity; the caller throttles (e.g. once a minute per device). */
  markSeen(name: string, at: number = this.now()): void {
    this.db.query("UPDATE devices SET last_seen = ? WHERE name = ? AND revoked_at IS NULL").run(at, name);
  }

  /** The active device holding this token, if any. */
  lookupByToken(token: string): { name: string; profile: string } | undefined {
    if (!token.startsWith(DEVICE_TOKEN_PREFIX)) return undefined;
    const row = this.db
      .query("SELECT name, profile FROM devices WHERE token_hash = ? AND kind = 'proxy' AND revoked_at IS NULL")
      .get(hashDeviceToken(token)) as { name: string; profile: string } | null;
    return row ? { name: row.name, profile: row.profile } : undefined;
  }

  get(name: string): DeviceInfo | undefined {
    const row = this.row(name);
    return row ? toInfo(row) : undefined;
  }

  /** All devices, revoked ones included, by name. */
  list(): DeviceInfo[] {
    const rows = this.db.query(`SELECT ${COLUMNS} FROM devices ORDER BY name`).all() as DeviceRow[];
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

  /** The WireGuard peer of a device (revoked or not), for the revoke hook. */
  wireguardPeer(name: string): WireguardDevice | undefined {
    const row = this.row(name);
    return row ? toWireguard(row) : undefined;
  }

  private row(name: string): DeviceRow | undefined {
    const row = this.db.query(`SELECT ${COLUMNS} FROM devices WHERE name = ?`).get(name) as DeviceRow | null;
    return row ?? undefined;
  }

  /** In a transaction: fail if an active device has the name, else delete a revoked one. */
  private freeName(name: string): void {
    const existing = this.row(name);
    if (existing && existing.revoked_at === null) {
      throw new DeviceError(`device ${JSON.stringify(name)} already exists; revoke it first to issue a new token`);
    }
    if (existing) this.db.query("DELETE FROM devices WHERE name = ?").run(name);
  }
}

function checkName(name: string): void {
  if (!NAME_RE.test(name)) {
    throw new DeviceError(
      `invalid device name ${JSON.stringify(name)}: 1-64 of a-z A-Z 0-9 _ . -, starting with a letter or digit`,
    );
  }
}

function toInfo(row: DeviceRow): DeviceInfo {
  const info: DeviceInfo = { name: row.name, kind: row.kind, profile: row.profile, createdAt: row.created_at };
  if (row.revoked_at !== null) info.revokedAt = row.revoked_at;
  if (row.wg_public_key !== null) info.publicKey = row.wg_public_key;
  if (row.address !== null) info.address = row.address;
  if (row.address6 !== null) info.address6 = row.address6;
  if (row.last_seen !== null) info.lastSeen = row.last_seen;
  return info;
}

function toWireguard(row: DeviceRow): WireguardDevice | undefined {
  if (row.kind !== "wireguard" || row.wg_public_key === null || row.address === null) return undefined;
  const dev: WireguardDevice = { name: row.name, profile: row.profile, publicKey: row.wg_public_key, address: row.address };
  if (row.address6 !== null) dev.address6 = row.address6;
  return dev;
}
