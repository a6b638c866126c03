// Operator accounts, their API tokens and their login sessions.
//   - Passwords: argon2id through Bun.password (parameters live in the hash).
//     A password set by the CLI (`operator add`, `operator passwd`) is a
//     one-time password: it logs in once (password_temporary 1 -> 2, in one
//     conditional UPDATE, so two concurrent logins cannot both use it), and
//     stays temporary until the operator changes it.
//   - API tokens (`cpo_…`) and session ids are 256-bit random strings; only
//     their SHA-256 is stored (high entropy: a fast hash suffices), so the
//     database alone lets no one log in.
//   - Sessions end after IDLE_MS without use or ABSOLUTE_MS after login,
//     whichever is first. The CSRF token is stored as is: it is not a
//     credential by itself (it is only ever sent beside the session cookie).
// Time is passed in. The CLI writes the same database as the running
// gateway (WAL), so every lookup reads the database: a removal or a password
// reset takes effect on the caller's next request.
import type { Database } from "bun:sqlite";
import { createHash, randomBytes, randomInt } from "node:crypto";

export type Role = "admin" | "approver" | "viewer";
export const ROLES: readonly Role[] = ["viewer", "approver", "admin"];

/** admin ⊃ approver ⊃ viewer. */
export function roleRank(r: Role): number {
  return ROLES.indexOf(r);
}

export function roleAtLeast(have: Role, need: Role): boolean {
  return roleRank(have) >= roleRank(need);
}

export function isRole(v: unknown): v is Role {
  return typeof v === "string" && (ROLES as readonly string[]).includes(v);
}

export const OPERATOR_TOKEN_PREFIX = "cpo_";
/** A session ends after this long unused… */
export const SESSION_IDLE_MS = 12 * 60 * 60_000;
/** …and this long after login, used or not. */
export const SESSION_ABSOLUTE_MS = 7 * 24 * 60 * 60_000;
/** last_seen / last_used are written at most this often per session or token. */
const TOUCH_EVERY_MS = 60_000;

/** password_temporary: a permanent password, a one-time one not yet used, one used. */
const PERMANENT = 0;
const ONE_TIME_UNUSED = 1;
const ONE_TIME_USED = 2;

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.@-]{0,63}$/;
/** No 0/O, 1/l/I: read aloud, typed from a terminal. */
const PASSWORD_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

export class OperatorError extends Error {
  override name = "OperatorError";
}

export interface PasswordHashing {
  /** argon2id cost; the defaults are Bun's (64 MiB, t=2). Tests pass tiny ones. */
  memoryCost?: number;
  timeCost?: number;
}

export interface OperatorInfo {
  id: number;
  name: string;
  role: Role;
  createdAt: number;
  disabled: boolean;
  /** The password was set by the CLI and not yet changed by the operator. */
  passwordTemporary: boolean;
}

export interface TokenInfo {
  name: string;
  operator: string;
  role: Role;
  createdAt: number;
  lastUsed?: number;
}

export interface SessionInfo {
  operator: OperatorInfo;
  csrf: string;
  createdAt: number;
  lastSeen: number;
  /** When it ends if unused from now: min(last use + idle, login + absolute). */
  expiresAt: number;
}

export function validOperatorName(name: string): boolean {
  return NAME_RE.test(name);
}

export function sha256Hex(s: string): string {
  return createHash("sha256").update(s, "utf8").digest("hex");
}

/** 20 characters from a 57-letter alphabet (~117 bits), in four groups of five. */
export function generatePassword(): string {
  const chars: string[] = [];
  for (let i = 0; i < 20; i++) chars.push(PASSWORD_ALPHABET[randomInt(PASSWORD_ALPHABET.length)]!);
  return [0, 5, 10, 15].map((i) => chars.slice(i, i + 5).join("")).join("-");
}

function randomToken(): string {
  return randomBytes(32).toString("base64url");
}

interface OperatorRow {
  id: number;
  name: string;
  role: Role;
  password_hash: string;
  password_temporary: number;
  created_at: number;
  disabled: number;
}

function toInfo(r: OperatorRow): OperatorInfo {
  return {
    id: r.id,
    name: r.name,
    role: r.role,
    createdAt: r.created_at,
    disabled: r.disabled !== 0,
    passwordTemporary: r.password_temporary !== 0,
  };
}

export class OperatorStore {
  private readonly now: () => number;
  private readonly hashing: PasswordHashing;
  private dummyHash: Promise<string> | undefined;

  constructor(
    private readonly db: Database,
    opts: { now?: () => number; hashing?: PasswordHashing } = {},
  ) {
    this.now = opts.now ?? Date.now;
    this.hashing = opts.hashing ?? {};
  }

  // ------------------------------------------------------------ accounts

  /** Create an operator with a generated password; returns it (shown once). */
  async add(name: string, role: Role): Promise<{ password: string; operator: OperatorInfo }> {
    checkName(name);
    if (!isRole(role)) throw new OperatorError(`role must be one of ${ROLES.join(", ")}`);
    if (this.get(name)) throw new OperatorError(`operator ${JSON.stringify(name)} already exists`);
    const password = generatePassword();
    const hash = await this.hash(password);
    try {
      this.db
        .query("INSERT INTO operators (name, role, password_hash, password_temporary, created_at) VALUES (?, ?, ?, 1, ?)")
        .run(name, role, hash, this.now());
    } catch (e) {
      if (String(e).includes("UNIQUE")) throw new OperatorError(`operator ${JSON.stringify(name)} already exists`);
      throw e;
    }
    return { password, operator: this.get(name)! };
  }

  get(name: string): OperatorInfo | undefined {
    const r = this.db.query("SELECT * FROM operators WHERE name = ?").get(name) as OperatorRow | null;
    return r ? toInfo(r) : undefined;
  }

  list(): OperatorInfo[] {
    return (this.db.query("SELECT * FROM operators ORDER BY name").all() as OperatorRow[]).map(toInfo);
  }

  /** Delete the operator with its tokens and sessions; false when there is none. */
  remove(name: string): boolean {
    return this.db
      .transaction(() => {
        const op = this.get(name);
        if (!op) return false;
        this.db.query("DELETE FROM operator_sessions WHERE operator_id = ?").run(op.id);
        this.db.query("DELETE FROM operator_tokens WHERE operator_id = ?").run(op.id);
        this.db.query("DELETE FROM operators WHERE id = ?").run(op.id);
        return true;
      })
      .immediate();
  }

  /** A new generated (temporary) password; every session of the operator ends. */
  async resetPassword(name: string): Promise<string> {
    const op = this.get(name);
    if (!op) throw new OperatorError(`no operator named ${JSON.stringify(name)}`);
    const password = generatePassword();
    await this.setPassword(op.id, password, true);
    return password;
  }

  /** Set a password; `temporary` marks one the operator should change. Other sessions end. */
  async setPassword(operatorId: number, password: string, temporary: boolean, keepSession?: string): Promise<void> {
    const hash = await this.hash(password);
    this.db.transaction(() => {
      this.db.query("UPDATE operators SET password_hash = ?, password_temporary = ? WHERE id = ?").run(hash, temporary ? ONE_TIME_UNUSED : PERMANENT, operatorId);
      this.db
        .query("DELETE FROM operator_sessions WHERE operator_id = ? AND id_hash != ?")
        .run(operatorId, keepSession === undefined ? "" : sha256Hex(keepSession));
    })();
  }

  setRole(name: string, role: Role): boolean {
    if (!isRole(role)) throw new OperatorError(`role must be one of ${ROLES.join(", ")}`);
    return this.db.query("UPDATE operators SET role = ? WHERE name = ?").run(role, name).changes > 0;
  }

  /** A disabled operator cannot log in; its sessions and tokens stop working. */
  setDisabled(name: string, disabled: boolean): boolean {
    return this.db.transaction(() => {
      const op = this.get(name);
      if (!op) return false;
      this.db.query("UPDATE operators SET disabled = ? WHERE id = ?").run(disabled ? 1 : 0, op.id);
      if (disabled) this.db.query("DELETE FROM operator_sessions WHERE operator_id = ?").run(op.id);
      return true;
    })();
  }

  /**
   * Check a name and password. An unknown name costs one hash verification
   * too (against a dummy hash), so timing tells little about which names
   * exist. Disabled operators fail like a wrong password.
   */
  async verify(name: string, password: string): Promise<OperatorInfo | undefined> {
    const r = (validOperatorName(name) ? this.db.query("SELECT * FROM operators WHERE name = ?").get(name) : null) as OperatorRow | null;
    const hash = r?.password_hash ?? (await this.dummy());
    let ok = false;
    try {
      ok = await Bun.password.verify(password, hash);
    } catch {
      ok = false;
    }
    if (!r || !ok || r.disabled) return undefined;
    if (r.password_temporary !== PERMANENT) {
      // Consume the one-time password; whoever loses the race (or comes second) fails.
      const used = this.db
        .query("UPDATE operators SET password_temporary = ? WHERE id = ? AND password_temporary = ? AND password_hash = ?")
        .run(ONE_TIME_USED, r.id, ONE_TIME_UNUSED, r.password_hash);
      if (used.changes === 0) return undefined;
      return toInfo({ ...r, password_temporary: ONE_TIME_USED });
    }
    return toInfo(r);
  }

  /** Used by the CLI and the API to check a current password. */
  async checkPassword(operatorId: number, password: string): Promise<boolean> {
    const r = this.db.query("SELECT password_hash FROM operators WHERE id = ?").get(operatorId) as { password_hash: string } | null;
    if (!r) return false;
    try {
      return await Bun.password.verify(password, r.password_hash);
    } catch {
      return false;
    }
  }

  // ------------------------------------------------------------ API tokens

  /**
   * Issue a named API token for an operator; returns it once. Its role may
   * not exceed the operator's (and is capped by it at use, should the
   * operator be demoted later).
   */
  createToken(operatorName: string, tokenName: string, role: Role): { token: string; info: TokenInfo } {
    const op = this.get(operatorName);
    if (!op) throw new OperatorError(`no operator named ${JSON.stringify(operatorName)}`);
    checkName(tokenName, "token");
    if (!isRole(role)) throw new OperatorError(`role must be one of ${ROLES.join(", ")}`);
    if (!roleAtLeast(op.role, role)) throw new OperatorError(`a token's role cannot exceed its operator's (${op.role})`);
    const token = OPERATOR_TOKEN_PREFIX + randomToken();
    const now = this.now();
    try {
      this.db
        .query("INSERT INTO operator_tokens (operator_id, name, role, token_hash, created_at) VALUES (?, ?, ?, ?, ?)")
        .run(op.id, tokenName, role, sha256Hex(token), now);
    } catch (e) {
      if (String(e).includes("UNIQUE")) throw new OperatorError(`${operatorName} already has a token named ${JSON.stringify(tokenName)}`);
      throw e;
    }
    return { token, info: { name: tokenName, operator: op.name, role, createdAt: now } };
  }

  listTokens(operatorName?: string): TokenInfo[] {
    const rows = this.db
      .query(
        `SELECT t.name, o.name AS operator, t.role, t.created_at, t.last_used FROM operator_tokens t JOIN operators o ON o.id = t.operator_id
         ${operatorName === undefined ? "" : "WHERE o.name = ?"} ORDER BY o.name, t.name`,
      )
      .all(...(operatorName === undefined ? [] : [operatorName])) as { name: string; operator: string; role: Role; created_at: number; last_used: number | null }[];
    return rows.map((r) => ({
      name: r.name,
      operator: r.operator,
      role: r.role,
      createdAt: r.created_at,
      ...(r.last_used === null ? {} : { lastUsed: r.last_used }),
    }));
  }

  removeToken(operatorName: string, tokenName: string): boolean {
    return (
      this.db
        .query("DELETE FROM operator_tokens WHERE name = ? AND operator_id = (SELECT id FROM operators WHERE name = ?)")
        .run(tokenName, operatorName).changes > 0
    );
  }

  /** The operator behind a token, with the effective role min(token, operator); undefined if unknown or disabled. */
  lookupToken(token: string): { operator: OperatorInfo; token: string; role: Role } | undefined {
    if (!token.startsWith(OPERATOR_TOKEN_PREFIX) || token.length > 200) return undefined;
    const r = this.db
      .query(
        `SELECT o.*, t.id AS token_id, t.name AS token_name, t.role AS token_role, t.last_used FROM operator_tokens t
         JOIN operators o ON o.id = t.operator_id WHERE t.token_hash = ?`,
      )
      .get(sha256Hex(token)) as (OperatorRow & { token_id: number; token_name: string; token_role: Role; last_used: number | null }) | null;
    if (!r || r.disabled) return undefined;
    const now = this.now();
    if (r.last_used === null || now - r.last_used >= TOUCH_EVERY_MS) {
      this.db.query("UPDATE operator_tokens SET last_used = ? WHERE id = ?").run(now, r.token_id);
    }
    const operator = toInfo(r);
    const role = roleRank(r.token_role) <= roleRank(operator.role) ? r.token_role : operator.role;
    return { operator, token: r.token_name, role };
  }

  // ------------------------------------------------------------ sessions

  /** Start a session; the id (for the cookie) and the CSRF token are returned once. */
  createSession(operatorId: number, source?: string): { id: string; csrf: string; expiresAt: number } {
    const id = randomToken();
    const csrf = randomToken();
    const now = this.now();
    this.db
      .query("INSERT INTO operator_sessions (id_hash, operator_id, csrf, created_at, last_seen, source) VALUES (?, ?, ?, ?, ?, ?)")
      .run(sha256Hex(id), operatorId, csrf, now, now, source ?? null);
    return { id, csrf, expiresAt: Math.min(now + SESSION_IDLE_MS, now + SESSION_ABSOLUTE_MS) };
  }

  /**
   * The live session with this id, or undefined (unknown, expired — then
   * deleted — or its operator disabled). `touch` records the use (throttled),
   * which moves the idle expiry.
   */
  lookupSession(id: string, opts: { touch?: boolean } = {}): SessionInfo | undefined {
    if (id.length === 0 || id.length > 200) return undefined;
    const hash = sha256Hex(id);
    const r = this.db
      .query(
        `SELECT o.*, s.csrf, s.created_at AS s_created, s.last_seen FROM operator_sessions s
         JOIN operators o ON o.id = s.operator_id WHERE s.id_hash = ?`,
      )
      .get(hash) as (OperatorRow & { csrf: string; s_created: number; last_seen: number }) | null;
    if (!r) return undefined;
    const now = this.now();
    const expiresAt = Math.min(r.last_seen + SESSION_IDLE_MS, r.s_created + SESSION_ABSOLUTE_MS);
    if (now >= expiresAt || r.disabled) {
      this.db.query("DELETE FROM operator_sessions WHERE id_hash = ?").run(hash);
      return undefined;
    }
    let lastSeen = r.last_seen;
    if (opts.touch && now - r.last_seen >= TOUCH_EVERY_MS) {
      this.db.query("UPDATE operator_sessions SET last_seen = ? WHERE id_hash = ?").run(now, hash);
      lastSeen = now;
    }
    return {
      operator: toInfo(r),
      csrf: r.csrf,
      createdAt: r.s_created,
      lastSeen,
      expiresAt: Math.min(lastSeen + SESSION_IDLE_MS, r.s_created + SESSION_ABSOLUTE_MS),
    };
  }

  deleteSession(id: string): void {
    this.db.query("DELETE FROM operator_sessions WHERE id_hash = ?").run(sha256Hex(id));
  }

  /** Delete expired sessions; returns how many went. */
  pruneSessions(): number {
    const now = this.now();
    return this.db
      .query("DELETE FROM operator_sessions WHERE last_seen + ? <= ? OR created_at + ? <= ?")
      .run(SESSION_IDLE_MS, now, SESSION_ABSOLUTE_MS, now).changes;
  }

  // ------------------------------------------------------------ hashing

  private hash(password: string): Promise<string> {
    return Bun.password.hash(password, { algorithm: "argon2id", ...this.hashing });
  }

  /** Compute the dummy hash now, so the first unknown-name login costs what later ones do. */
  warm(): void {
    void this.dummy();
  }

  private dummy(): Promise<string> {
    this.dummyHash ??= this.hash(randomToken());
    return this.dummyHash;
  }
}

function checkName(name: string, what = "operator"): void {
  if (!NAME_RE.test(name)) {
    throw new OperatorError(`invalid ${what} name ${JSON.stringify(name)}: 1-64 of a-z A-Z 0-9 _ . @ -, starting with a letter or digit`);
  }
}
