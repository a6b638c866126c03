// The account routes of the operator API:
//   POST   /api/auth/login     {name, password} → {operator, role, csrf, expiresAt, mustChangePassword} + session cookie
//   POST   /api/auth/logout    ends the session (CSRF)
//   GET    /api/auth/me        who is calling (and the CSRF token, for a page reloaded)
//   POST   /api/auth/password  {current, new} (session only; CSRF); other sessions end
//   GET    /api/auth/tokens    the caller's API tokens
//   POST   /api/auth/tokens    {name, role?} → {token, …} shown once (session only; CSRF)
//   DELETE /api/auth/tokens/:name
// Login failures are limited per source address and per account name; a
// refused attempt never reaches the password hash. Each attempt is counted
// as a failure before the hash is verified and refunded when it succeeds, so
// the limit holds under concurrent attempts. A session made with a one-time
// password may only change it (auth.ts); it cannot mint tokens.
import type { Database } from "bun:sqlite";
import { ApiError } from "../errors.ts";
import { OperatorError, isRole, roleAtLeast, type OperatorStore } from "../../store/operators.ts";
import { writeAudit, type AuditEntry } from "../../store/audit.ts";
import { FailureLimiter, type FailureLimit } from "./ratelimit.ts";
import { caller, requireRole, type OperatorAuth } from "./auth.ts";
import { noStoreJson, readJson, TooManyAttempts, withErrors, type ClientIp, type ServerLike } from "./http.ts";

export const MIN_PASSWORD = 12;
export const MAX_PASSWORD = 1024;

export interface LoginLimits {
  /** Default: 20 failures, draining over 15 minutes. */
  perSource?: FailureLimit;
  /** Default: 5 failures, draining over 15 minutes. */
  perName?: FailureLimit;
}

/** What every operator route group shares. */
export interface AuthContext {
  db: Database;
  auth: OperatorAuth;
  store: OperatorStore;
  now: () => number;
  clientIp: ClientIp;
}

/** Record an operator action. */
export function audit(ctx: AuthContext, e: Omit<AuditEntry, "time">): void {
  writeAudit(ctx.db, { time: ctx.now(), ...e });
}

export function sourceOf(ctx: AuthContext, request: Request, server: unknown): string {
  return ctx.clientIp(request, server as ServerLike);
}

export function authRoutes(ctx: AuthContext, limits: LoginLimits = {}) {
  const bySource = new FailureLimiter(limits.perSource ?? { max: 20, windowMs: 15 * 60_000 });
  const byName = new FailureLimiter(limits.perName ?? { max: 5, windowMs: 15 * 60_000 });
  const { auth, store } = ctx;
  const viewer = requireRole(auth, "viewer");

  return withErrors()
    .post(
      "/api/auth/login",
      async ({ request, server }) => {
        auth.checkOrigin(request);
        const b = await readJson(request, 8192);
        const name = typeof b.name === "string" ? b.name : undefined;
        const password = typeof b.password === "string" ? b.password : undefined;
        if (!name || password === undefined || password.length > MAX_PASSWORD) {
          throw new ApiError(400, "bad_request", 'send {"name": …, "password": …}');
        }
        const source = sourceOf(ctx, request, server);
        const nameKey = name.toLowerCase().slice(0, 128);
        const now = ctx.now();
        const wait = Math.max(bySource.blockedFor(source, now), byName.blockedFor(nameKey, now));
        if (wait > 0) throw new TooManyAttempts(Math.ceil(wait / 1000));
        // Reserved before the (slow, awaited) hash: no await between check and reserve.
        bySource.fail(source, now);
        byName.fail(nameKey, now);
        const op = await store.verify(name, password);
        if (!op) {
          audit(ctx, { operator: name.slice(0, 128), action: "login.failed", source });
          throw new ApiError(401, "invalid_credentials", "wrong name or password");
        }
        bySource.refund(source, ctx.now());
        byName.reset(nameKey);
        store.pruneSessions(); // the table stays as small as the live sessions
        const s = store.createSession(op.id, source);
        audit(ctx, { operator: op.name, action: "login", source });
        return noStoreJson(
          { operator: op.name, role: op.role, csrf: s.csrf, expiresAt: new Date(s.expiresAt).toISOString(), mustChangePassword: op.passwordTemporary },
          200,
          { "set-cookie": auth.setCookie(request, s.id) },
        );
      },
      { parse: "none" },
    )
    .post(
      "/api/auth/logout",
      ({ request, server }) => {
        const who = caller(request);
        if (who.session) store.deleteSession(who.session.id);
        audit(ctx, { operator: who.operator, action: "logout", source: sourceOf(ctx, request, server) });
        return noStoreJson({ ok: true }, 200, { "set-cookie": auth.clearCookie(request) });
      },
      { parse: "none", beforeHandle: viewer },
    )
    .get(
      "/api/auth/me",
      ({ request }) => {
        const who = caller(request);
        return noStoreJson({
          operator: who.operator,
          role: who.role,
          via: who.via,
          ...(who.token !== undefined ? { token: who.token } : {}),
          ...(who.session ? { csrf: who.session.csrf, expiresAt: new Date(who.session.expiresAt).toISOString() } : {}),
          mustChangePassword: who.passwordTemporary,
        });
      },
      { beforeHandle: viewer },
    )
    .post(
      "/api/auth/password",
      async ({ request, server }) => {
        const who = caller(request);
        if (!who.session) throw new ApiError(403, "session_required", "change a password from a login session, not with an API token");
        const b = await readJson(request, 8192);
        const current = typeof b.current === "string" ? b.current : "";
        const next = typeof b.new === "string" ? b.new : "";
        if (next.length < MIN_PASSWORD || next.length > MAX_PASSWORD) {
          throw new ApiError(400, "weak_password", `a password has ${MIN_PASSWORD} to ${MAX_PASSWORD} characters`);
        }
        const key = who.operator.toLowerCase();
        const wait = byName.blockedFor(key, ctx.now());
        if (wait > 0) throw new TooManyAttempts(Math.ceil(wait / 1000));
        byName.fail(key, ctx.now());
        if (!(await store.checkPassword(who.operatorId, current))) {
          throw new ApiError(403, "invalid_credentials", "the current password is wrong");
        }
        byName.reset(key);
        await store.setPassword(who.operatorId, next, false, who.session.id);
        audit(ctx, { operator: who.operator, action: "password.change", target: who.operator, source: sourceOf(ctx, request, server) });
        return { ok: true };
      },
      { parse: "none", beforeHandle: viewer },
    )
    .get(
      "/api/auth/tokens",
      ({ request }) => ({
        tokens: store.listTokens(caller(request).operator).map((t) => ({
          name: t.name,
          role: t.role,
          createdAt: new Date(t.createdAt).toISOString(),
          lastUsed: t.lastUsed === undefined ? null : new Date(t.lastUsed).toISOString(),
        })),
      }),
      { beforeHandle: viewer },
    )
    .post(
      "/api/auth/tokens",
      async ({ request, server }) => {
        const who = caller(request);
        // A token cannot mint tokens: a leaked one must not make itself permanent.
        if (!who.session) throw new ApiError(403, "session_required", "create API tokens from a login session");
        if (who.passwordTemporary) throw new ApiError(403, "password_change_required", "change your one-time password first");
        const b = await readJson(request, 8192);
        const name = typeof b.name === "string" ? b.name : "";
        const role = b.role === undefined ? who.role : b.role;
        if (!isRole(role)) throw new ApiError(400, "bad_request", "role must be admin, approver or viewer");
        if (!roleAtLeast(who.role, role)) throw new ApiError(403, "forbidden", `a token's role cannot exceed yours (${who.role})`);
        let issued;
        try {
          issued = store.createToken(who.operator, name, role);
        } catch (e) {
          if (e instanceof OperatorError) throw new ApiError(400, "bad_request", e.message);
          throw e;
        }
        audit(ctx, { operator: who.operator, action: "token.create", target: name, detail: { role }, source: sourceOf(ctx, request, server) });
        return noStoreJson({ token: issued.token, name, role }, 201);
      },
      { parse: "none", beforeHandle: viewer },
    )
    .delete(
      "/api/auth/tokens/:name",
      ({ request, params, server }) => {
        const who = caller(request);
        if (!store.removeToken(who.operator, params.name)) throw new ApiError(404, "not_found", `you have no token named ${JSON.stringify(params.name)}`);
        audit(ctx, { operator: who.operator, action: "token.revoke", target: params.name, source: sourceOf(ctx, request, server) });
        return { ok: true };
      },
      { parse: "none", beforeHandle: viewer },
    );
}
