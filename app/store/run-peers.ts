// Per-run WireGuard peers: each `clawpatrol run` registers an ephemeral key
// (made in the run's memory, never on disk) and gets a tunnel address of its
// own, so concurrent runs of one device are distinct peers. A run peer IS its
// device: same name, profile, events, revocation.
//
// A row (table run_peers, migration 6) is one tunnel address that belongs to
// a device; a run holds it while `public_key` is set. Addresses follow the
// device rule "never reused while a device exists": a row's address is only
// ever given to another run of the same device (the same identity, so flows
// and history stay attributed to the same device), and the rows go with the
// device row (ON DELETE CASCADE). So a device holds as many run addresses as
// it ever had runs at once, not one per run.
import type { Database } from "bun:sqlite";
import { randomBytes } from "node:crypto";
import type { AddressPool } from "./addresses.ts";

export class RunPeerError extends Error {
  override name = "RunPeerError";
  constructor(
    message: string,
    /** key_in_use: the key is a device's or another run's; too_many_runs: the device's cap. */
    readonly code: "key_in_use" | "too_many_runs" | "no_such_device",
  ) {
    super(message);
  }
}

export interface RunPeer {
  /** Opaque id the run deregisters with (`run_…`). */
  id: string;
  device: string;
  profile: string;
  publicKey: string;
  address: string;
  address6?: string;
  /** ms since epoch */
  startedAt: number;
}

/** Runs of one device at once; more is a misbehaving client, not a use. */
export const MAX_RUNS_PER_DEVICE = 32;

interface Row {
  run_id: string;
  name: string;
  profile: string;
  public_key: string;
  address: string;
  address6: string | null;
  started_at: number;
}

const ACTIVE = `SELECT r.run_id, d.name, d.profile, r.public_key, r.address, r.address6, r.started_at
  FROM run_peers r JOIN devices d ON d.id = r.device_id
  WHERE r.public_key IS NOT NULL AND d.revoked_at IS NULL`;

function toPeer(r: Row): RunPeer {
  const p: RunPeer = {
    id: r.run_id,
    device: r.name,
    profile: r.profile,
    publicKey: r.public_key,
    address: r.address,
    startedAt: r.started_at,
  };
  if (r.address6 !== null) p.address6 = r.address6;
  return p;
}

export class RunPeerStore {
  private readonly now: () => number;

  constructor(
    private readonly db: Database,
    opts: { now?: () => number } = {},
  ) {
    this.now = opts.now ?? Date.now;
  }

  /**
   * A new run peer for the active WireGuard device `device`: a free address
   * the device already holds, else the pool's next one. Throws RunPeerError
   * (and AddressError("subnet_full") from the pool).
   */
  register(device: string, publicKey: string, pool: AddressPool, reserved: readonly string[] = []): RunPeer {
    return this.db
      .transaction((): RunPeer => {
        const dev = this.db
          .query("SELECT id, name, profile FROM devices WHERE name = ? AND kind = 'wireguard' AND revoked_at IS NULL")
          .get(device) as { id: number; name: string; profile: string } | null;
        if (!dev) throw new RunPeerError(`no active WireGuard device named ${JSON.stringify(device)}`, "no_such_device");
        // One key, one peer: a run may not take over a device's or another run's key.
        const clash =
          reserved.includes(publicKey) ||
          this.db.query("SELECT 1 FROM devices WHERE wg_public_key = ?").get(publicKey) !== null ||
          this.db.query("SELECT 1 FROM run_peers WHERE public_key = ?").get(publicKey) !== null;
        if (clash) throw new RunPeerError("this WireGuard key is already in use; generate a new one", "key_in_use");
        const live = this.db.query("SELECT count(*) AS n FROM run_peers WHERE device_id = ? AND public_key IS NOT NULL").get(dev.id) as {
          n: number;
        };
        if (live.n >= MAX_RUNS_PER_DEVICE) {
          throw new RunPeerError(`device ${JSON.stringify(device)} already has ${live.n} runs (the limit); end some first`, "too_many_runs");
        }
        const runId = "run_" + randomBytes(12).toString("base64url");
        const startedAt = this.now();
        const free = this.db
          .query("SELECT id FROM run_peers WHERE device_id = ? AND public_key IS NULL ORDER BY id LIMIT 1")
          .get(dev.id) as { id: number } | null;
        if (free) {
          this.db.query("UPDATE run_peers SET run_id = ?, public_key = ?, started_at = ? WHERE id = ?").run(runId, publicKey, startedAt, free.id);
        } else {
          const a = pool.allocate();
          this.db
            .query("INSERT INTO run_peers (device_id, address, address6, run_id, public_key, started_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
            .run(dev.id, a.address, a.address6 ?? null, runId, publicKey, startedAt, startedAt);
        }
        return this.byId(runId)!;
      })
      .immediate();
  }

  /** Ends a run of `device` (its address stays the device's); the ended peer, or undefined. */
  release(runId: string, device?: string): RunPeer | undefined {
    return this.db.transaction((): RunPeer | undefined => {
      const p = this.anyById(runId);
      if (!p || (device !== undefined && p.device !== device)) return undefined;
      this.db.query("UPDATE run_peers SET run_id = NULL, public_key = NULL, started_at = NULL WHERE run_id = ?").run(runId);
      return p;
    })();
  }

  /** Ends every run of a device (revocation); the peers ended. */
  releaseDevice(device: string): RunPeer[] {
    return this.db.transaction((): RunPeer[] => {
      const rows = this.db
        .query(
          `SELECT r.run_id, d.name, d.profile, r.public_key, r.address, r.address6, r.started_at
           FROM run_peers r JOIN devices d ON d.id = r.device_id WHERE d.name = ? AND r.public_key IS NOT NULL`,
        )
        .all(device) as Row[];
      for (const r of rows) this.db.query("UPDATE run_peers SET run_id = NULL, public_key = NULL, started_at = NULL WHERE run_id = ?").run(r.run_id);
      return rows.map(toPeer);
    })();
  }

  /** Runs of revoked devices (left by a revoke made while the gateway was down): ended at start. */
  releaseRevoked(): RunPeer[] {
    const rows = this.db
      .query(
        `SELECT r.run_id, d.name, d.profile, r.public_key, r.address, r.address6, r.started_at
         FROM run_peers r JOIN devices d ON d.id = r.device_id WHERE d.revoked_at IS NOT NULL AND r.public_key IS NOT NULL`,
      )
      .all() as Row[];
    for (const r of rows) this.release(r.run_id);
    return rows.map(toPeer);
  }

  /** Every live run peer of an active device (the peers the gateway loads at start). */
  active(device?: string): RunPeer[] {
    const rows = (
      device === undefined
        ? this.db.query(`${ACTIVE} ORDER BY r.started_at, r.id`).all()
        : this.db.query(`${ACTIVE} AND d.name = ? ORDER BY r.started_at, r.id`).all(device)
    ) as Row[];
    return rows.map(toPeer);
  }

  byId(runId: string): RunPeer | undefined {
    const r = this.db.query(`${ACTIVE} AND r.run_id = ?`).get(runId) as Row | null;
    return r ? toPeer(r) : undefined;
  }

  /** The device of a live run address (IPv4 or IPv6 text): who a tunnel flow belongs to. */
  lookupByAddress(address: string): { name: string; profile: string } | undefined {
    const r = this.db.query(`${ACTIVE} AND (r.address = ? OR r.address6 = ?)`).get(address, address) as Row | null;
    return r ? { name: r.name, profile: r.profile } : undefined;
  }

  /** Addresses (free or held) that belong to a device's runs. */
  addressesOf(device: string): string[] {
    const rows = this.db
      .query("SELECT r.address FROM run_peers r JOIN devices d ON d.id = r.device_id WHERE d.name = ? ORDER BY r.id")
      .all(device) as { address: string }[];
    return rows.map((r) => r.address);
  }

  private anyById(runId: string): RunPeer | undefined {
    const r = this.db
      .query(
        `SELECT r.run_id, d.name, d.profile, r.public_key, r.address, r.address6, r.started_at
         FROM run_peers r JOIN devices d ON d.id = r.device_id WHERE r.run_id = ?`,
      )
      .get(runId) as Row | null;
    return r ? toPeer(r) : undefined;
  }
}
