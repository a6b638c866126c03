// Who is calling, and may they? For every operator route:
//   1. identify: `Authorization: Bearer cpo_…` (an API token) if present —
//      an invalid one is refused, never passed over for a cookie — else the
//      session cookie. Nothing else authenticates.
//   2. role: admin ⊃ approver ⊃ viewer; a token acts with min(its role, its
//      operator's role).
//   3. CSRF, for an unsafe method (POST/PUT/PATCH/DELETE) on a session: the
//      `X-CSRF-Token` header must equal the session's token, and `Origin` and
//      `Sec-Fetch-Site`, where the browser sent them, must say same-origin.
//      API tokens are exempt: a browser never attaches them on its own.
//   4. one-time password: while the operator's password is one the CLI set,
//      a caller may only read /api/auth/me, log out, and change it.
// Failures are ApiErrors: 401 `unauthenticated`, 403 `forbidden`,
// 403 `csrf_failed`, 403 `bad_origin`, 403 `password_change_required`.
//
// The cookie. `Secure; HttpOnly; SameSite=Strict; Path=/`, named
// `__Host-clawpatrol_session`. `Secure` (and with it the `__Host-` prefix)
// is left out only when the request is plain `http:` to a loopback host
// (localhost, 127.0.0.0/8, ::1) — the default `dashboard_listen`, where
// browsers would otherwise drop or not send it — and the plain
// `clawpatrol_session` name is read only on such requests. Any other request
// (a public address, a TLS-terminating proxy in front) gets `Secure`.
// `secureCookies: "always"` forces it everywhere.
import { timingSafeEqual } from "node:crypto";
import { ApiError } from "../errors.ts";
import { roleAtLeast, type OperatorInfo, type OperatorStore, type Role, SESSION_ABSOLUTE_MS } from "../../store/operators.ts";

export const SECURE_COOKIE = "__Host-clawpatrol_session";
export const LOCAL_COOKIE = "clawpatrol_session";
export const CSRF_HEADER = "x-csrf-token";

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);
/** All a caller with a one-time password may reach. */
const ONE_TIME_ROUTES: ReadonlySet<string> = new Set(["/api/auth/me", "/api/auth/logout", "/api/auth/password"]);

export interface Caller {
  operator: string;
  operatorId: number;
  role: Role;
  via: "session" | "token";
  /** The token's name (via token). */
  token?: string;
  /** The session (via session): its cookie value, CSRF token and current expiry. */
  session?: { id: string; csrf: string; expiresAt: number };
  passwordTemporary: boolean;
}

export interface AuthOptions {
  /** "auto" (default): Secure except plain http to loopback; "always": Secure everywhere. */
  secureCookies?: "auto" | "always";
  /** Extra origins (e.g. `https://gw.example.com`) accepted besides the request's own host. */
  allowedOrigins?: string[];
}

export class OperatorAuth {
  constructor(
    readonly store: OperatorStore,
    readonly now: () => number,
    private readonly opts: AuthOptions = {},
  ) {}

  /** The caller, or undefined when no valid credential came. Records the use (moves the idle expiry). */
  identify(request: Request, opts: { touch?: boolean } = { touch: true }): Caller | undefined | "bad_token" {
    const authz = request.headers.get("authorization");
    if (authz !== null) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(authz);
      const hit = m ? this.store.lookupToken(m[1]!) : undefined;
      if (!hit) return "bad_token";
      return callerOf(hit.operator, hit.role, "token", { token: hit.token });
    }
    const id = this.sessionCookie(request);
    if (id === undefined) return undefined;
    const s = this.store.lookupSession(id, opts);
    if (!s) return undefined;
    return callerOf(s.operator, s.operator.role, "session", { session: { id, csrf: s.csrf, expiresAt: s.expiresAt } });
  }

  /** identify + role + CSRF; throws the ApiError to answer with. */
  authorize(request: Request, need: Role): Caller {
    const who = this.identify(request);
    if (who === "bad_token") throw new ApiError(401, "unauthenticated", "the API token is not valid");
    if (!who) throw new ApiError(401, "unauthenticated", "log in or present an API token");
    if (who.via === "session" && UNSAFE.has(request.method.toUpperCase())) this.checkCsrf(request, who);
    if (who.passwordTemporary && !ONE_TIME_ROUTES.has(new URL(request.url).pathname)) {
      throw new ApiError(403, "password_change_required", "change your one-time password first (POST /api/auth/password)");
    }
    if (!roleAtLeast(who.role, need)) {
      throw new ApiError(403, "forbidden", `this needs the ${need} role; ${who.operator} is ${article(who.role)} ${who.role}`);
    }
    return who;
  }

  checkCsrf(request: Request, who: Caller): void {
    this.checkOrigin(request);
    const sent = request.headers.get(CSRF_HEADER);
    if (!sent || !who.session || !equalStrings(sent, who.session.csrf)) {
      throw new ApiError(403, "csrf_failed", `missing or wrong ${CSRF_HEADER} header`);
    }
  }

  /** Origin and Sec-Fetch-Site, where present, must say the request comes from our own pages. */
  checkOrigin(request: Request): void {
    const site = request.headers.get("sec-fetch-site");
    if (site !== null && site !== "same-origin" && site !== "none") {
      throw new ApiError(403, "bad_origin", "cross-site requests are refused");
    }
    const origin = request.headers.get("origin");
    if (origin === null) return;
    if ((this.opts.allowedOrigins ?? []).includes(origin)) return;
    let host: string | undefined;
    try {
      host = origin === "null" ? undefined : new URL(origin).host;
    } catch {
      host = undefined;
    }
    if (host === undefined || host !== new URL(request.url).host) {
      throw new ApiError(403, "bad_origin", "cross-origin requests are refused");
    }
  }

  /** The session id from the request's cookie, if any. */
  sessionCookie(request: Request): string | undefined {
    const cookies = parseCookies(request.headers.get("cookie"));
    return cookies.get(SECURE_COOKIE) ?? (this.secure(request) ? undefined : cookies.get(LOCAL_COOKIE));
  }

  /** Whether cookies set in answer to this request carry `Secure`. */
  secure(request: Request): boolean {
    if (this.opts.secureCookies === "always") return true;
    const url = new URL(request.url);
    return !(url.protocol === "http:" && isLoopbackHost(url.hostname));
  }

  setCookie(request: Request, sessionId: string): string {
    const secure = this.secure(request);
    const maxAge = Math.floor(SESSION_ABSOLUTE_MS / 1000);
    return `${secure ? SECURE_COOKIE : LOCAL_COOKIE}=${sessionId}; ${secure ? "Secure; " : ""}HttpOnly; SameSite=Strict; Path=/; Max-Age=${maxAge}`;
  }

  clearCookie(request: Request): string {
    const secure = this.secure(request);
    return `${secure ? SECURE_COOKIE : LOCAL_COOKIE}=; ${secure ? "Secure; " : ""}HttpOnly; SameSite=Strict; Path=/; Max-Age=0`;
  }
}

function callerOf(op: OperatorInfo, role: Role, via: "session" | "token", extra: Partial<Caller>): Caller {
  return { operator: op.name, operatorId: op.id, role, via, passwordTemporary: op.passwordTemporary, ...extra };
}

function article(role: Role): string {
  return role === "admin" || role === "approver" ? "an" : "a";
}

export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h.endsWith(".localhost") || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

export function parseCookies(header: string | null): Map<string, string> {
  const out = new Map<string, string>();
  if (!header) return out;
  for (const raw of header.split(";")) {
    const part = raw.trim();
    const eq = part.indexOf("=");
    if (eq <= 0) continue;
    const k = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (!out.has(k)) out.set(k, v);
  }
  return out;
}

function equalStrings(a: string, b: string): boolean {
  const x = Buffer.from(a, "utf8");
  const y = Buffer.from(b, "utf8");
  return x.length === y.length && timingSafeEqual(x, y);
}

// ------------------------------------------------------------ Elysia glue

const callers = new WeakMap<Request, Caller>();

/**
 * A `beforeHandle` for a route: authenticates, checks the role (and CSRF),
 * and leaves the caller for `caller(request)`. Usage:
 * `.post("/x", ({ request }) => use(caller(request)), { beforeHandle: requireRole(auth, "approver") })`.
 */
export function requireRole(auth: OperatorAuth, need: Role) {
  return ({ request }: { request: Request }): void => {
    callers.set(request, auth.authorize(request, need));
  };
}

/** The caller a `requireRole` guard let through; throws (500) when the route has no guard, so a forgotten guard fails closed. */
export function caller(request: Request): Caller {
  const c = callers.get(request);
  if (!c) throw new Error("route has no requireRole guard");
  return c;
}
