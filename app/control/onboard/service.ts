// Onboarding: the device-code flow that enrolls a WireGuard device.
//
// 1. start: the device sends its name and WireGuard public key (it makes its
//    own keypair; the gateway never sees a device's private key) and gets a
//    user code for the operator and an opaque device code to poll with.
// 2. poll: the device long-polls with the device code until the request is
//    decided or the wait runs out.
// 3. approve / deny: the operator decides (CLI through the control socket,
//    later the dashboard). Approval picks the profile, allocates the tunnel
//    address, creates the device row and calls `onDeviceApproved` so the
//    gateway adds the peer.
// 4. claim: the first poll after approval gets the configuration and an API
//    token minted at that moment (stored hashed). Every later poll of the
//    same device code answers `claimed`, never a second token.
//
// Request states: pending → approved → claimed, pending → denied,
// pending → expired (code TTL), approved → expired (never claimed: the device
// is revoked again). Time comes from the injected clock; the only timers are
// the long-poll waits, taken from the same clock.
import type { Database } from "bun:sqlite";
import { ApiError } from "../errors.ts";
import { AddressError, type AddressPool } from "../../store/addresses.ts";
import { DeviceError, validDeviceName, type DeviceInfo, type DeviceRegistry, type WireguardDevice } from "../../store/devices.ts";
import { log } from "../../log.ts";
import {
  formatUserCode,
  hashDeviceCode,
  newDeviceCode,
  newUserCode,
  normalizeUserCode,
  plausibleDeviceCode,
  validWireguardPublicKey,
} from "./codes.ts";
import { TokenBuckets, type RateLimit } from "./ratelimit.ts";
import { gatewayCommand } from "../operator-command.ts";

/**
 * Gateway settings the flow needs. From `gateway { wireguard { … } }`:
 * subnet_cidr, subnet6_cidr, endpoint, listen_port, public_url.
 */
export interface OnboardSettings {
  /** IPv4 tunnel subnet, e.g. `10.77.0.0/16`; the gateway is its first host. */
  subnetCidr: string;
  /** Optional IPv6 ULA subnet, e.g. `fd77:7a70::/64`. */
  subnet6Cidr?: string;
  /** host:port devices dial; default: public_url's host and listen_port. */
  endpoint?: string;
  /** The gateway's WireGuard UDP port. */
  listenPort: number;
  /** Base URL of the public API, e.g. `https://gw.example.com`. */
  publicUrl: string;
  /** How long a user code lives before it is approved (and then claimed). Default 10 min. */
  codeTtlMs?: number;
  /** Longest a poll waits for a decision. Default 25 s. */
  pollWaitMs?: number;
  /** Seconds a device should wait between polls (told to it in `start`). Default 5. */
  pollIntervalS?: number;
  /** `start` per source IP. Default 5 at once, 5 per minute. */
  startRateLimit?: RateLimit;
  /** Pending requests allowed at once (all sources). Default 100. */
  maxPending?: number;
  /** Keepalive told to devices (seconds). Default 25. */
  persistentKeepalive?: number;
}

/** The clock and its timers; tests pass a fake one. */
export interface OnboardClock {
  now(): number;
  /** Calls `fn` after `ms`; returns a cancel function. */
  setTimer(ms: number, fn: () => void): () => void;
}

export const systemClock: OnboardClock = {
  now: Date.now,
  setTimer(ms, fn) {
    const t = setTimeout(fn, ms);
    return () => clearTimeout(t);
  },
};

/** How the gateway keeps its WireGuard peers in step with the registry. */
export interface OnboardHooks {
  /** A device was approved: add its peer (awaited before the device can claim its token). */
  onDeviceApproved?(device: WireguardDevice): void | Promise<void>;
  /** A device was revoked: remove its peer and cut its flows. */
  onDeviceRevoked?(device: WireguardDevice): void | Promise<void>;
  /** A device moved to another profile (the gateway may drop cached lookups). */
  onDeviceProfileChanged?(device: DeviceInfo): void | Promise<void>;
}

export interface OnboardDeps {
  db: Database;
  registry: DeviceRegistry;
  pool: AddressPool;
  settings: OnboardSettings;
  /** The configured profile names (read at each call: the policy reloads). */
  profileNames(): Iterable<string>;
  /** The gateway's WireGuard public key (base64). */
  gatewayPublicKey(): string;
  /** The interception CA certificate (PEM) the device will trust. */
  caCertPem(): string;
  /** The gateway's SSH CA and the ssh endpoint hosts `profile` sees, for the device's known_hosts; undefined when it sees none. */
  sshTrust?(profile: string): Promise<{ public_key: string; hosts: string[] } | undefined>;
  hooks?: OnboardHooks;
  clock?: OnboardClock;
}

export type OnboardState = "pending" | "approved" | "denied" | "claimed" | "expired";

export interface StartResponse {
  code: string;
  device_code: string;
  approval_url: string;
  /** seconds */
  expires_in: number;
  /** seconds */
  poll_interval: number;
  /** What the operator runs to approve, until the dashboard exists. */
  approve_command: string;
}

export interface ApprovedResponse {
  status: "approved";
  device: { name: string; profile: string; address: string; address6?: string; addresses: string[] };
  gateway: {
    public_key: string;
    endpoint: string;
    allowed_ips: string[];
    dns: string;
    address: string;
    persistent_keepalive: number;
  };
  ca_cert: string;
  api_token: string;
  /** Only when the device's profile sees an ssh endpoint. */
  ssh_ca?: { public_key: string; hosts: string[] };
}

export type PollResponse = { status: "pending" | "denied" | "expired" | "claimed" } | ApprovedResponse;

export interface PendingRequest {
  code: string;
  name: string;
  public_key: string;
  requested_profile: string | null;
  source_ip: string | null;
  /** ms since epoch */
  created_at: number;
  /** ms since epoch */
  expires_at: number;
}

/** A 429 that carries the Retry-After the routes send. */
export class RateLimited extends ApiError {
  constructor(
    readonly retryAfterS: number,
    message: string,
    code = "rate_limited",
    status = 429,
  ) {
    super(status, code, message);
  }
}

interface Row {
  id: number;
  code: string;
  device_name: string;
  public_key: string;
  requested_profile: string | null;
  source_ip: string | null;
  created_at: number;
  expires_at: number;
  state: OnboardState;
  decided_by: string | null;
  decided_at: number | null;
  device_id: number | null;
}

/** The fields of an onboarding row an operator sees (the gateway's and the dashboard role's `pending`). */
export type PendingRow = Pick<Row, "code" | "device_name" | "public_key" | "requested_profile" | "source_ip" | "created_at" | "expires_at">;

export function pendingRequestOf(r: PendingRow): PendingRequest {
  return {
    code: formatUserCode(r.code),
    name: r.device_name,
    public_key: r.public_key,
    requested_profile: r.requested_profile,
    source_ip: r.source_ip,
    created_at: r.created_at,
    expires_at: r.expires_at,
  };
}

const DEFAULTS = {
  codeTtlMs: 10 * 60_000,
  pollWaitMs: 25_000,
  pollIntervalS: 5,
  startRateLimit: { burst: 5, perMinute: 5 },
  maxPending: 100,
  persistentKeepalive: 25,
};
/** A waiting poll re-reads the database this often, so a decision made by another process is seen too. */
const RECHECK_MS = 1000;
/** Decided requests are kept this long for the record, then deleted. */
const KEEP_DECIDED_MS = 7 * 24 * 3600_000;
const MAX_OPERATOR_LEN = 128;

export class OnboardService {
  private readonly clock: OnboardClock;
  private readonly buckets: TokenBuckets;
  private readonly waiters = new Map<number, Set<() => void>>();
  private readonly s: Required<Omit<OnboardSettings, "subnet6Cidr" | "endpoint">> & { endpoint: string };

  constructor(private readonly deps: OnboardDeps) {
    this.clock = deps.clock ?? systemClock;
    const st = deps.settings;
    this.s = {
      subnetCidr: st.subnetCidr,
      listenPort: st.listenPort,
      publicUrl: st.publicUrl.replace(/\/+$/, ""),
      endpoint: st.endpoint ?? defaultEndpoint(st.publicUrl, st.listenPort),
      codeTtlMs: st.codeTtlMs ?? DEFAULTS.codeTtlMs,
      pollWaitMs: st.pollWaitMs ?? DEFAULTS.pollWaitMs,
      pollIntervalS: st.pollIntervalS ?? DEFAULTS.pollIntervalS,
      startRateLimit: st.startRateLimit ?? DEFAULTS.startRateLimit,
      maxPending: st.maxPending ?? DEFAULTS.maxPending,
      persistentKeepalive: st.persistentKeepalive ?? DEFAULTS.persistentKeepalive,
    };
    this.buckets = new TokenBuckets(this.s.startRateLimit);
  }

  // -------------------------------------------------------------------------
  // The device's side (public API, no auth)
  // -------------------------------------------------------------------------

  /** `requestHost`: as for poll(); the approval URL uses it when public_url names no host. */
  start(body: unknown, sourceIp: string, requestHost?: string): StartResponse {
    const now = this.clock.now();
    const verdict = this.buckets.take(sourceIp, now);
    if (!verdict.ok) {
      const s = Math.max(1, Math.ceil(verdict.retryAfterMs / 1000));
      throw new RateLimited(s, `too many onboarding requests from this address; retry in ${s} s`);
    }
    const b = asObject(body);
    const name = b.name;
    const publicKey = b.public_key;
    const profile = b.profile;
    if (typeof name !== "string" || !validDeviceName(name)) {
      throw new ApiError(400, "invalid_name", "name: 1-64 of a-z A-Z 0-9 _ . -, starting with a letter or digit");
    }
    if (!validWireguardPublicKey(publicKey)) {
      throw new ApiError(400, "invalid_public_key", "public_key: a WireGuard public key (32 bytes, base64, as `wg pubkey` prints)");
    }
    if (profile !== undefined && profile !== null && (typeof profile !== "string" || !/^[A-Za-z0-9_.-]{1,64}$/.test(profile))) {
      throw new ApiError(400, "invalid_profile", "profile: a profile name");
    }
    this.sweep();
    if (this.deps.registry.lookupByPublicKey(publicKey)) {
      throw new ApiError(409, "key_in_use", "this WireGuard key already belongs to an enrolled device; generate a new key");
    }
    const existing = this.deps.registry.get(name);
    if (existing && existing.revokedAt === undefined) {
      throw new ApiError(409, "name_taken", `a device named "${name}" is already enrolled; choose another name or ask the operator to revoke it`);
    }
    const deviceCode = newDeviceCode();
    const code = this.deps.db
      .transaction((): string => {
        // A device that starts again replaces its earlier, undecided request.
        this.deps.db
          .query("UPDATE onboarding SET state = 'expired', decided_by = 'superseded', decided_at = ? WHERE public_key = ? AND state = 'pending'")
          .run(now, publicKey);
        const live = this.deps.db.query("SELECT count(*) AS n FROM onboarding WHERE state = 'pending'").get() as { n: number };
        if (live.n >= this.s.maxPending) {
          throw new RateLimited(60, "too many onboarding requests are waiting for an operator; retry later", "onboarding_busy", 503);
        }
        for (let attempt = 0; ; attempt++) {
          const candidate = newUserCode();
          const taken = this.deps.db
            .query("SELECT 1 FROM onboarding WHERE code = ? AND state IN ('pending', 'approved')")
            .get(candidate);
          if (taken) {
            if (attempt > 20) throw new Error("onboarding: cannot find a free user code");
            continue;
          }
          this.deps.db
            .query(
              `INSERT INTO onboarding (code, device_code_hash, device_name, public_key, requested_profile, source_ip, created_at, expires_at, state)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')`,
            )
            .run(candidate, hashDeviceCode(deviceCode), name, publicKey, profile ?? null, sourceIp, now, now + this.s.codeTtlMs);
          return candidate;
        }
      })
      .immediate();
    const shown = formatUserCode(code);
    log.info("onboarding requested", { code: shown, device: name, requested_profile: profile ?? undefined, source: sourceIp });
    return {
      code: shown,
      device_code: deviceCode,
      approval_url: `${this.publicBaseFor(requestHost)}/approve/${shown}`,
      expires_in: Math.round(this.s.codeTtlMs / 1000),
      poll_interval: this.s.pollIntervalS,
      approve_command: `${gatewayCommand()} devices approve ${shown} --profile ${typeof profile === "string" ? profile : "PROFILE"}`,
    };
  }

  /** Long-poll: waits up to `pollWaitMs` (or `waitMs`) for a decision. */
  /**
   * `requestHost`: the host the device reached the public API at (its
   * request's Host). It becomes the WireGuard endpoint's host when neither
   * `endpoint` nor a `public_url` with a real host is configured (the
   * appliance's default listens on [::]).
   */
  async poll(body: unknown, opts: { signal?: AbortSignal; waitMs?: number; requestHost?: string } = {}): Promise<PollResponse> {
    const deviceCode = asObject(body).device_code;
    if (!plausibleDeviceCode(deviceCode)) throw new ApiError(400, "invalid_device_code", "device_code: the value returned by start");
    const hash = hashDeviceCode(deviceCode);
    const deadline = this.clock.now() + Math.min(opts.waitMs ?? this.s.pollWaitMs, this.s.pollWaitMs);
    for (;;) {
      const row = this.deps.db.query("SELECT * FROM onboarding WHERE device_code_hash = ?").get(hash) as Row | null;
      if (!row) throw new ApiError(404, "unknown_device_code", "no onboarding request has this device code (it may have been removed); run join again");
      const state = this.expireIfDue(row);
      switch (state) {
        case "approved":
          return this.withSshTrust(this.claim(row, opts.requestHost));
        case "denied":
        case "expired":
        case "claimed":
          return { status: state };
        case "pending":
          break;
        default: {
          const never: never = state;
          throw new Error(`onboarding: unknown state ${String(never)}`);
        }
      }
      const now = this.clock.now();
      const until = Math.min(deadline, row.expires_at);
      if (now >= until || opts.signal?.aborted) return { status: "pending" };
      await this.wait(row.id, Math.min(until - now, RECHECK_MS), opts.signal);
    }
  }

  // -------------------------------------------------------------------------
  // The operator's side (control socket)
  // -------------------------------------------------------------------------

  pending(): PendingRequest[] {
    this.sweep();
    const rows = this.deps.db.query("SELECT * FROM onboarding WHERE state = 'pending' ORDER BY created_at, id").all() as Row[];
    return rows.map(pendingRequestOf);
  }

  async approve(codeInput: string, profile: string | undefined, operator: string): Promise<DeviceInfo> {
    const row = this.pendingRow(codeInput);
    const names = [...this.deps.profileNames()];
    if (!profile) throw new ApiError(400, "profile_required", `a profile is required (configured: ${names.join(", ") || "none"})`);
    if (!names.includes(profile)) {
      throw new ApiError(400, "unknown_profile", `unknown profile "${profile}" (configured: ${names.join(", ") || "none"})`);
    }
    const who = operatorName(operator);
    const now = this.clock.now();
    let device: WireguardDevice & { id: number };
    try {
      device = this.deps.db
        .transaction(() => {
          const dev = this.deps.registry.addWireguard(row.device_name, profile, row.public_key, this.deps.pool);
          const res = this.deps.db
            .query(
              `UPDATE onboarding SET state = 'approved', decided_by = ?, decided_at = ?, device_id = ?, expires_at = max(expires_at, ?)
               WHERE id = ? AND state = 'pending'`,
            )
            .run(who, now, dev.id, now + this.s.codeTtlMs, row.id);
          if (res.changes !== 1) throw new ApiError(409, "already_decided", "this request was decided meanwhile");
          return dev;
        })
        .immediate();
    } catch (e) {
      if (e instanceof DeviceError) {
        const code = /key/.test(e.message) ? "key_in_use" : "name_taken";
        throw new ApiError(409, code, e.message);
      }
      if (e instanceof AddressError) throw new ApiError(409, e.code, e.message);
      throw e;
    }
    const { id: _id, ...peer } = device;
    try {
      await this.deps.hooks?.onDeviceApproved?.(peer);
    } catch (e) {
      // Without its peer the device could claim a configuration that cannot work.
      log.error("onboarding: adding the WireGuard peer failed; approval undone", { device: peer.name, error: e });
      this.deps.db.transaction(() => {
        this.deps.registry.revoke(peer.name);
        this.deps.db
          .query("UPDATE onboarding SET state = 'denied', decided_by = 'system: peer setup failed', decided_at = ? WHERE id = ?")
          .run(this.clock.now(), row.id);
      })();
      this.notify(row.id);
      throw new ApiError(500, "peer_setup_failed", `the gateway could not add the WireGuard peer: ${(e as Error).message}`);
    }
    log.info("device approved", { device: peer.name, profile, address: peer.address, operator: who, code: formatUserCode(row.code) });
    this.notify(row.id);
    return this.deps.registry.get(peer.name)!;
  }

  deny(codeInput: string, operator: string): void {
    const row = this.pendingRow(codeInput);
    const who = operatorName(operator);
    const res = this.deps.db
      .query("UPDATE onboarding SET state = 'denied', decided_by = ?, decided_at = ? WHERE id = ? AND state = 'pending'")
      .run(who, this.clock.now(), row.id);
    if (res.changes !== 1) throw new ApiError(409, "already_decided", "this request was decided meanwhile");
    log.info("onboarding denied", { device: row.device_name, operator: who, code: formatUserCode(row.code) });
    this.notify(row.id);
  }

  devices(): DeviceInfo[] {
    return this.deps.registry.list();
  }

  /** Revoke an active device (either kind) and remove its peer. */
  async revoke(name: string, operator = "unknown"): Promise<DeviceInfo> {
    if (!this.deps.registry.revoke(name)) throw new ApiError(404, "no_such_device", `no active device named "${name}"`);
    log.info("device revoked", { device: name, operator: operatorName(operator) });
    const peer = this.deps.registry.wireguardPeer(name);
    if (peer) await this.deps.hooks?.onDeviceRevoked?.(peer);
    return this.deps.registry.get(name)!;
  }

  async setProfile(name: string, profile: unknown): Promise<DeviceInfo> {
    const names = [...this.deps.profileNames()];
    if (typeof profile !== "string" || !names.includes(profile)) {
      throw new ApiError(400, "unknown_profile", `unknown profile ${JSON.stringify(profile)} (configured: ${names.join(", ") || "none"})`);
    }
    if (!this.deps.registry.setProfile(name, profile)) throw new ApiError(404, "no_such_device", `no active device named "${name}"`);
    const info = this.deps.registry.get(name)!;
    await this.deps.hooks?.onDeviceProfileChanged?.(info);
    return info;
  }

  /**
   * Expire what is due: pending requests past their TTL, and approved ones
   * never claimed (their device is revoked again and its peer removed). Runs
   * on start/pending; the gateway may also call it every minute. Returns the
   * devices revoked.
   */
  sweep(): string[] {
    const now = this.clock.now();
    const expiredPending = this.deps.db
      .query("UPDATE onboarding SET state = 'expired' WHERE state = 'pending' AND expires_at <= ? RETURNING id")
      .all(now) as { id: number }[];
    const unclaimed = this.deps.db
      .query("SELECT * FROM onboarding WHERE state = 'approved' AND expires_at <= ?")
      .all(now) as Row[];
    const revoked: string[] = [];
    for (const r of unclaimed) if (this.expireApproved(r)) revoked.push(r.device_name);
    this.deps.db.query("DELETE FROM onboarding WHERE state IN ('denied', 'claimed', 'expired') AND created_at < ?").run(now - KEEP_DECIDED_MS);
    for (const { id } of expiredPending) this.notify(id);
    return revoked;
  }

  /** Wake every waiting poll (they answer `pending`); for shutdown. */
  close(): void {
    for (const id of [...this.waiters.keys()]) this.notify(id);
  }

  // -------------------------------------------------------------------------

  private claim(row: Row, requestHost: string | undefined): PollResponse {
    const result = this.deps.db
      .transaction((): PollResponse => {
        const fresh = this.deps.db.query("SELECT state, device_id FROM onboarding WHERE id = ?").get(row.id) as Pick<
          Row,
          "state" | "device_id"
        >;
        if (fresh.state !== "approved") return { status: fresh.state === "pending" ? "pending" : fresh.state };
        const device = fresh.device_id === null ? undefined : this.deviceById(fresh.device_id);
        if (!device || device.revokedAt !== undefined || device.kind !== "wireguard" || !device.address) {
          // Revoked (or deleted) between approval and claim.
          this.deps.db.query("UPDATE onboarding SET state = 'denied' WHERE id = ?").run(row.id);
          return { status: "denied" };
        }
        const token = this.deps.registry.issueApiToken(device.name)!;
        this.deps.db.query("UPDATE onboarding SET state = 'claimed' WHERE id = ? AND state = 'approved'").run(row.id);
        const gw = this.deps.pool.gateway();
        const addresses = [`${device.address}/32`];
        if (device.address6) addresses.push(`${device.address6}/128`);
        const out: ApprovedResponse = {
          status: "approved",
          device: { name: device.name, profile: device.profile, address: device.address, addresses },
          gateway: {
            public_key: this.deps.gatewayPublicKey(),
            endpoint: this.endpointFor(requestHost),
            allowed_ips: ["0.0.0.0/0", "::/0"],
            dns: gw.address,
            address: gw.address,
            persistent_keepalive: this.s.persistentKeepalive,
          },
          ca_cert: this.deps.caCertPem(),
          api_token: token,
        };
        if (device.address6) out.device.address6 = device.address6;
        return out;
      })
      .immediate();
    if (result.status === "approved") log.info("device claimed its configuration", { device: row.device_name });
    return result;
  }

  /** An approved answer with the SSH CA for the device's profile, when it sees an ssh endpoint (never at the cost of the claim). */
  private async withSshTrust(r: PollResponse): Promise<PollResponse> {
    if (r.status !== "approved" || !this.deps.sshTrust) return r;
    try {
      const trust = await this.deps.sshTrust(r.device.profile);
      return trust ? { ...r, ssh_ca: trust } : r;
    } catch (e) {
      log.warn("onboarding: the SSH CA could not be given to the device", { device: r.device.name, error: (e as Error).message });
      return r;
    }
  }

  private publicBaseFor(requestHost: string | undefined): string {
    const host = requestHost === undefined ? null : hostOnly(requestHost);
    if (host === null) return this.s.publicUrl;
    let url: URL;
    try {
      url = new URL(this.s.publicUrl);
    } catch {
      return this.s.publicUrl;
    }
    if (!unspecifiedEndpointHost(bracketed(url.hostname, 1))) return this.s.publicUrl;
    url.hostname = host;
    return url.toString().replace(/\/+$/, "");
  }

  private endpointFor(requestHost: string | undefined): string {
    if (this.deps.settings.endpoint !== undefined || requestHost === undefined || !unspecifiedEndpointHost(this.s.endpoint)) return this.s.endpoint;
    const host = hostOnly(requestHost);
    return host === null ? this.s.endpoint : bracketed(host, this.s.listenPort);
  }

  private deviceById(id: number): DeviceInfo | undefined {
    const r = this.deps.db.query("SELECT name FROM devices WHERE id = ?").get(id) as { name: string } | null;
    return r ? this.deps.registry.get(r.name) : undefined;
  }

  /** The state after applying expiry to one row (poll's view). */
  private expireIfDue(row: Row): OnboardState {
    if (row.expires_at > this.clock.now()) return row.state;
    if (row.state === "pending") {
      this.deps.db.query("UPDATE onboarding SET state = 'expired' WHERE id = ? AND state = 'pending'").run(row.id);
      return "expired";
    }
    if (row.state === "approved") {
      this.expireApproved(row);
      return "expired";
    }
    return row.state;
  }

  private expireApproved(row: Row): boolean {
    const res = this.deps.db.query("UPDATE onboarding SET state = 'expired' WHERE id = ? AND state = 'approved'").run(row.id);
    if (res.changes !== 1 || row.device_id === null) return false;
    const device = this.deviceById(row.device_id);
    if (!device || device.revokedAt !== undefined) return false;
    this.deps.registry.revoke(device.name);
    log.warn("approved device never claimed its configuration; revoked", { device: device.name });
    const peer = this.deps.registry.wireguardPeer(device.name);
    if (peer) {
      Promise.resolve(this.deps.hooks?.onDeviceRevoked?.(peer)).catch((e: unknown) =>
        log.error("onboarding: removing the WireGuard peer failed", { device: peer.name, error: e }),
      );
    }
    return true;
  }

  private pendingRow(codeInput: string): Row {
    const code = normalizeUserCode(codeInput);
    if (!code) throw new ApiError(400, "invalid_code", `"${codeInput}" is not a user code (8 characters, like ABCD-EFGH)`);
    const row = this.deps.db
      .query("SELECT * FROM onboarding WHERE code = ? ORDER BY id DESC LIMIT 1")
      .get(code) as Row | null;
    if (!row) throw new ApiError(404, "unknown_code", `no onboarding request has the code ${formatUserCode(code)}`);
    const state = this.expireIfDue(row);
    if (state === "expired") throw new ApiError(410, "code_expired", `the code ${formatUserCode(code)} has expired; the device must run join again`);
    if (state !== "pending") throw new ApiError(409, "already_decided", `the code ${formatUserCode(code)} was already ${state}`);
    return row;
  }

  private wait(id: number, ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      let set = this.waiters.get(id);
      if (!set) this.waiters.set(id, (set = new Set()));
      const waiters = set;
      const done = () => {
        cancel();
        waiters.delete(done);
        if (waiters.size === 0) this.waiters.delete(id);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      const cancel = this.clock.setTimer(ms, done);
      waiters.add(done);
      signal?.addEventListener("abort", done);
    });
  }

  private notify(id: number): void {
    const set = this.waiters.get(id);
    if (!set) return;
    for (const fn of [...set]) fn();
  }
}

function asObject(body: unknown): Record<string, unknown> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new ApiError(400, "bad_request", "expected a JSON object");
  }
  return body as Record<string, unknown>;
}

function operatorName(operator: unknown): string {
  if (typeof operator !== "string" || operator.trim() === "") return "unknown";
  return operator.replace(/[\x00-\x1f\x7f]/g, "").slice(0, MAX_OPERATOR_LEN);
}

function bracketed(host: string, port: number): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** An endpoint on 0.0.0.0 or [::] names no machine a device can reach. */
function unspecifiedEndpointHost(endpoint: string): boolean {
  return /^(0\.0\.0\.0|\[::\]|\[0*(:0*)*\]|):\d+$/.test(endpoint);
}

/** The host part of a Host header value (no port), or null when it is not a plain host name or address. */
function hostOnly(value: string): string | null {
  let url: URL;
  try {
    url = new URL(`http://${value}`);
  } catch {
    return null;
  }
  if (url.username || url.password || url.pathname !== "/" || url.search || url.hash) return null;
  const host = url.hostname;
  if (host === "" || unspecifiedEndpointHost(bracketed(host, 1))) return null;
  return host;
}

function defaultEndpoint(publicUrl: string, port: number): string {
  try {
    return bracketed(new URL(publicUrl).hostname, port);
  } catch {
    throw new Error(`onboarding: public_url ${JSON.stringify(publicUrl)} is not a URL`);
  }
}
