import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { errorOf, harness, type Harness } from "../api/harness.ts";
import { SESSION_ABSOLUTE_MS, SESSION_IDLE_MS } from "../../../app/store/operators.ts";
import { setLogWriter } from "../../../app/log.ts";

let h: Harness;
beforeEach(() => {
  setLogWriter(() => {});
  h = harness({ loginLimits: { perName: { max: 3, windowMs: 60_000 }, perSource: { max: 5, windowMs: 60_000 } }, heartbeatMs: 20 });
});
afterEach(() => h.close());

const login = (name: string, password: string, o: { ip?: string; base?: string; headers?: Record<string, string> } = {}) =>
  h.call("POST", "/api/auth/login", { body: { name, password }, base: o.base, headers: { ...(o.ip ? { "x-test-ip": o.ip } : {}), ...(o.headers ?? {}) } });

describe("login", () => {
  test("answers operator, role and CSRF token, and sets an HttpOnly SameSite=Strict cookie", async () => {
    const pw = await h.addOperator("ann", "approver", { oneTime: true });
    const res = await login("ann", pw);
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ operator: "ann", role: "approver", mustChangePassword: true });
    expect(body.csrf).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(body.expiresAt).toBe(new Date(h.clock.t + SESSION_IDLE_MS).toISOString());
    const cookie = res.headers.get("set-cookie")!;
    // Plain http to localhost: no Secure (browsers would not send it back), so no __Host- prefix.
    expect(cookie).toMatch(/^clawpatrol_session=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=\/; Max-Age=604800$/);
  });

  test("Secure and __Host- everywhere but plain http to loopback", async () => {
    const pw = await h.addOperator("ann", "approver");
    for (const base of ["https://localhost", "http://gw.example.com:8080", "https://gw.example.com", "http://10.0.0.5:8080"]) {
      const cookie = (await login("ann", pw, { base })).headers.get("set-cookie")!;
      expect(cookie).toMatch(/^__Host-clawpatrol_session=[A-Za-z0-9_-]{43}; Secure; HttpOnly; SameSite=Strict; Path=\/; Max-Age=\d+$/);
    }
    for (const base of ["http://127.0.0.1:8080", "http://[::1]:8080", "http://localhost:8080"]) {
      expect((await login("ann", pw, { base })).headers.get("set-cookie")).toStartWith("clawpatrol_session=");
    }
    const always = harness({ auth: { secureCookies: "always" } });
    try {
      const pw2 = await always.addOperator("bob", "viewer");
      const res = await always.call("POST", "/api/auth/login", { body: { name: "bob", password: pw2 } });
      expect(res.headers.get("set-cookie")).toStartWith("__Host-clawpatrol_session=");
    } finally {
      always.close();
    }
  });

  test("the session works over https with the __Host- cookie", async () => {
    const pw = await h.addOperator("ann", "approver");
    const s = await h.login("ann", pw, { base: "https://gw.example.com" });
    expect(s.cookie).toStartWith("__Host-clawpatrol_session=");
    const me = await h.call("GET", "/api/auth/me", { session: s, base: "https://gw.example.com" });
    expect(await me.json()).toMatchObject({ operator: "ann", role: "approver", via: "session", csrf: s.csrf });
  });

  test("wrong password and unknown name fail alike", async () => {
    await h.addOperator("ann", "approver");
    const a = await errorOf(await login("ann", "wrong"));
    const b = await errorOf(await login("nobody", "wrong"));
    expect(a).toEqual({ status: 401, code: "invalid_credentials", message: "wrong name or password" });
    expect(b).toEqual(a);
    expect((await errorOf(await login("", "x"))).code).toBe("bad_request");
    const res = await h.call("POST", "/api/auth/login", { body: "nope" });
    expect(res.status).toBe(400);
  });

  test("an unknown name is verified against a dummy hash (the same work as a known one)", async () => {
    await h.addOperator("ann", "approver");
    const original = Bun.password.verify;
    const seen: string[] = [];
    (Bun.password as { verify: typeof original }).verify = (pw, hash, algo) => {
      seen.push(String(hash).split("$")[1]!);
      return original(pw, hash, algo);
    };
    try {
      await login("nobody", "x");
      await login("ann", "x");
      await login("../../etc", "x"); // not even a valid name
    } finally {
      (Bun.password as { verify: typeof original }).verify = original;
    }
    expect(seen).toEqual(["argon2id", "argon2id", "argon2id"]);
  });

  test("a disabled operator cannot log in, and its sessions end", async () => {
    const pw = await h.addOperator("ann", "approver");
    const s = await h.login("ann", pw);
    h.store.setDisabled("ann", true);
    expect((await h.call("GET", "/api/auth/me", { session: s })).status).toBe(401);
    expect((await errorOf(await login("ann", pw))).code).toBe("invalid_credentials");
  });

  test("login checks Origin: a cross-site form cannot log a browser in", async () => {
    const pw = await h.addOperator("ann", "approver");
    expect((await errorOf(await login("ann", pw, { headers: { origin: "https://evil.example" } }))).code).toBe("bad_origin");
    expect((await login("ann", pw, { headers: { origin: "http://localhost" } })).status).toBe(200);
  });
});

describe("login rate limit", () => {
  test("per name: after 3 failures even the right password is refused until the bucket drains", async () => {
    const pw = await h.addOperator("ann", "approver");
    for (let i = 0; i < 3; i++) expect((await login("ann", "wrong", { ip: `198.51.100.${i}` })).status).toBe(401);
    const refused = await login("ann", pw, { ip: "198.51.100.9" });
    expect(await errorOf(refused)).toMatchObject({ status: 429, code: "rate_limited" });
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
    // Names are keyed case-insensitively.
    expect((await login("ANN", pw, { ip: "198.51.100.9" })).status).toBe(429);
    h.clock.advance(20_000); // one failure drains (3 per minute)
    expect((await login("ann", pw, { ip: "198.51.100.9" })).status).toBe(200);
    // A success clears the name's failures.
    for (let i = 0; i < 2; i++) await login("ann", "wrong", { ip: "198.51.100.10" });
    expect((await login("ann", pw, { ip: "198.51.100.11" })).status).toBe(200);
  });

  test("per source: one address guessing many names is stopped", async () => {
    const pw = await h.addOperator("ann", "approver");
    for (let i = 0; i < 5; i++) expect((await login(`user${i}`, "guess", { ip: "203.0.113.7" })).status).toBe(401);
    expect((await login("ann", pw, { ip: "203.0.113.7" })).status).toBe(429);
    expect((await login("ann", pw, { ip: "203.0.113.8" })).status).toBe(200);
    // Refused attempts are not audited one by one; failures are.
    expect(h.auditRows("login.failed")).toHaveLength(5);
  });

  test("holds under concurrent attempts: each is counted before its hash is verified", async () => {
    const pw = await h.addOperator("ann", "approver");
    const statuses = await Promise.all(Array.from({ length: 30 }, (_, i) => login("ann", "wrong", { ip: `198.51.100.${i}` }).then((r) => r.status)));
    expect(statuses.filter((s) => s === 401)).toHaveLength(3);
    expect(statuses.filter((s) => s === 429)).toHaveLength(27);
    expect((await login("ann", pw, { ip: "198.51.100.99" })).status).toBe(429);
    // Per source too: 30 names guessed at once from one address.
    const bySource = await Promise.all(Array.from({ length: 30 }, (_, i) => login(`user${i}`, "guess", { ip: "203.0.113.7" }).then((r) => r.status)));
    expect(bySource.filter((s) => s === 401)).toHaveLength(5);
  });

  test("a success gives its reserved attempt back to the source", async () => {
    const pw = await h.addOperator("ann", "approver");
    for (let i = 0; i < 10; i++) expect((await login("ann", pw, { ip: "203.0.113.9" })).status).toBe(200);
  });
});

describe("one-time passwords", () => {
  test("log in exactly once, also when two logins race", async () => {
    const otp = await h.addOperator("ann", "admin", { oneTime: true });
    expect((await login("ann", otp)).status).toBe(200);
    expect(await errorOf(await login("ann", otp))).toMatchObject({ status: 401, code: "invalid_credentials" });
    const otp2 = await h.addOperator("bob", "admin", { oneTime: true });
    const raced = await Promise.all(Array.from({ length: 5 }, () => login("bob", otp2).then((r) => r.status)));
    // One wins; the others fail (401, or 429 once the name's limit is reached).
    expect(raced.filter((st) => st === 200)).toHaveLength(1);
    expect(raced.every((st) => st === 200 || st === 401 || st === 429)).toBe(true);
  });

  test("a session made with one can only change the password; then it is an ordinary session", async () => {
    const otp = await h.addOperator("ann", "admin", { oneTime: true });
    const s = await h.login("ann", otp);
    expect(await (await h.call("GET", "/api/auth/me", { session: s })).json()).toMatchObject({ mustChangePassword: true });
    for (const [method, path] of [["GET", "/api/auth/tokens"], ["POST", "/api/auth/tokens"], ["GET", "/api/approvals"], ["POST", "/api/reload"]] as const) {
      const r = await h.call(method, path, { session: s, body: method === "POST" ? { name: "ci" } : undefined });
      expect(await errorOf(r)).toMatchObject({ status: 403, code: "password_change_required" });
    }
    expect(h.store.listTokens("ann")).toEqual([]);
    expect((await h.call("POST", "/api/auth/password", { session: s, body: { current: otp, new: "a-long-new-password" } })).status).toBe(200);
    expect(await (await h.call("GET", "/api/auth/me", { session: s })).json()).toMatchObject({ mustChangePassword: false });
    expect((await h.call("POST", "/api/auth/tokens", { session: s, body: { name: "ci" } })).status).toBe(201);
  });

  test("an operator whose password was reset cannot use an older API token until it is changed", async () => {
    await h.addOperator("ann", "admin");
    const { token } = h.store.createToken("ann", "ci", "admin");
    await h.store.resetPassword("ann");
    expect(await errorOf(await h.call("GET", "/api/approvals", { token }))).toMatchObject({ status: 403, code: "password_change_required" });
  });
});

describe("sessions", () => {
  test("expire after 12 h idle (the injected clock), and use moves the idle expiry", async () => {
    const pw = await h.addOperator("ann", "viewer");
    const s = await h.login("ann", pw);
    h.clock.advance(SESSION_IDLE_MS - 60_000);
    expect((await h.call("GET", "/api/auth/me", { session: s })).status).toBe(200);
    h.clock.advance(SESSION_IDLE_MS - 60_000);
    expect((await h.call("GET", "/api/auth/me", { session: s })).status).toBe(200);
    h.clock.advance(SESSION_IDLE_MS);
    expect(await errorOf(await h.call("GET", "/api/auth/me", { session: s }))).toMatchObject({ status: 401, code: "unauthenticated" });
    expect(h.db.query("SELECT count(*) AS n FROM operator_sessions").get()).toEqual({ n: 0 });
  });

  test("expire 7 d after login however busy", async () => {
    const pw = await h.addOperator("ann", "viewer");
    const s = await h.login("ann", pw);
    let t = 0;
    while (t + 6 * 3600_000 < SESSION_ABSOLUTE_MS) {
      h.clock.advance(6 * 3600_000);
      t += 6 * 3600_000;
      expect((await h.call("GET", "/api/approvals", { session: s })).status).toBe(200);
    }
    h.clock.advance(SESSION_ABSOLUTE_MS - t);
    expect((await h.call("GET", "/api/approvals", { session: s })).status).toBe(401);
  });

  test("logout ends the session and clears the cookie; it needs the CSRF token", async () => {
    const pw = await h.addOperator("ann", "viewer");
    const s = await h.login("ann", pw);
    expect((await h.call("POST", "/api/auth/logout", { session: s, csrf: null })).status).toBe(403);
    const res = await h.call("POST", "/api/auth/logout", { session: s });
    expect(res.status).toBe(200);
    expect(res.headers.get("set-cookie")).toBe("clawpatrol_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    expect((await h.call("GET", "/api/auth/me", { session: s })).status).toBe(401);
    expect(h.auditRows("logout")).toHaveLength(1);
  });

  test("a password reset from the CLI or removal ends sessions and tokens at once", async () => {
    const pw = await h.addOperator("ann", "approver");
    const s = await h.login("ann", pw);
    const { token } = h.store.createToken("ann", "ci", "viewer");
    await h.store.resetPassword("ann");
    expect((await h.call("GET", "/api/auth/me", { session: s })).status).toBe(401);
    expect((await h.call("GET", "/api/auth/me", { token })).status).toBe(200);
    h.store.remove("ann");
    expect((await h.call("GET", "/api/auth/me", { token })).status).toBe(401);
  });

  test("the event stream ends when the session does", async () => {
    const pw = await h.addOperator("ann", "viewer");
    const s = await h.login("ann", pw);
    const res = await h.call("GET", "/api/events/stream", { session: s });
    const reader = res.body!.getReader();
    let text = "";
    const read = async () => {
      const { value, done } = await reader.read();
      if (!done) text += typeof value === "string" ? value : new TextDecoder().decode(value);
      return done;
    };
    while (!text.includes("event: ready")) await read();
    h.clock.advance(SESSION_IDLE_MS + 1);
    for (let i = 0; i < 100 && !(await read()); i++);
    expect(text).toContain("event: end");
  });
});

describe("account routes", () => {
  test("change password: needs the current one; clears mustChangePassword; other sessions end", async () => {
    const pw = await h.addOperator("ann", "viewer");
    const a = await h.login("ann", pw);
    const b = await h.login("ann", pw);
    expect((await h.call("POST", "/api/auth/password", { session: a, body: { current: "nope", new: "a-long-new-password" } })).status).toBe(403);
    expect((await errorOf(await h.call("POST", "/api/auth/password", { session: a, body: { current: pw, new: "short" } }))).code).toBe("weak_password");
    expect((await h.call("POST", "/api/auth/password", { session: a, body: { current: pw, new: "a-long-new-password" } })).status).toBe(200);
    expect(await (await h.call("GET", "/api/auth/me", { session: a })).json()).toMatchObject({ mustChangePassword: false });
    expect((await h.call("GET", "/api/auth/me", { session: b })).status).toBe(401);
    expect((await h.call("POST", "/api/auth/login", { body: { name: "ann", password: pw } })).status).toBe(401);
    expect((await h.call("POST", "/api/auth/login", { body: { name: "ann", password: "a-long-new-password" } })).status).toBe(200);
    expect(h.auditRows("password.change")).toHaveLength(1);
  });

  test("tokens: create (not above your role), list, use, revoke", async () => {
    const pw = await h.addOperator("ann", "approver");
    const s = await h.login("ann", pw);
    expect((await h.call("POST", "/api/auth/tokens", { session: s, body: { name: "ci", role: "admin" } })).status).toBe(403);
    const res = await h.call("POST", "/api/auth/tokens", { session: s, body: { name: "ci" } });
    expect(res.status).toBe(201);
    const { token, role } = (await res.json()) as { token: string; role: string };
    expect(role).toBe("approver");
    expect(token).toMatch(/^cpo_[A-Za-z0-9_-]{43}$/);
    expect((await h.call("POST", "/api/auth/tokens", { session: s, body: { name: "ci" } })).status).toBe(400);
    expect(await (await h.call("GET", "/api/auth/me", { token })).json()).toEqual({ operator: "ann", role: "approver", via: "token", token: "ci", mustChangePassword: false });
    h.clock.advance(5000);
    const list = (await (await h.call("GET", "/api/auth/tokens", { session: s })).json()) as { tokens: { name: string; lastUsed: string }[] };
    expect(list.tokens).toEqual([{ name: "ci", role: "approver", createdAt: new Date(h.clock.t - 5000).toISOString(), lastUsed: new Date(h.clock.t - 5000).toISOString() }] as never);
    expect((await h.call("DELETE", "/api/auth/tokens/ci", { session: s })).status).toBe(200);
    expect((await h.call("GET", "/api/auth/me", { token })).status).toBe(401);
    expect(h.auditRows("token.").map((r) => r.action)).toEqual(["token.revoke", "token.create"]);
  });

  test("a demoted operator's token is demoted with it", async () => {
    await h.addOperator("ann", "admin");
    const { token } = h.store.createToken("ann", "ci", "admin");
    h.store.setRole("ann", "viewer");
    expect(await (await h.call("GET", "/api/auth/me", { token })).json()).toMatchObject({ role: "viewer" });
    expect((await h.call("POST", "/api/reload", { token })).status).toBe(403);
  });
});
