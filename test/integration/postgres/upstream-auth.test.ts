// The upstream authentication state machine against a real PostgreSQL 15:
// a tiny socket shell here (node:net, node:tls) carries its commands out.
// SCRAM with the server signature verified, SCRAM-SHA-256-PLUS over TLS (and
// a wrong binding refused by the server), md5 allowed and refused,
// cleartext over TLS allowed and over plain TCP refused, a wrong password
// reported without the password, a non-ASCII password prepared as the
// server prepares it.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { tlsServerEndPoint } from "../../../app/endpoints/postgres/auth/channel-binding.ts";
import { UpstreamAuth, type AuthFailure, type UpstreamAuthOptions, type UpstreamSession } from "../../../app/endpoints/postgres/auth/upstream.ts";
import { BackendParser, type BackendMessage } from "../../../app/endpoints/postgres/wire/backend.ts";
import { serializeQuery, serializeSSLRequest, serializeStartupMessage, serializeTerminate } from "../../../app/endpoints/postgres/wire/frontend.ts";
import { canRunRootTests } from "../support/netns.ts";
import { startPostgres, type TestPostgres } from "../support/postgres.ts";

type Outcome = { kind: "ok"; session: UpstreamSession; currentUser: string; ssl: string } | { kind: "failed"; failure: AuthFailure; sent: number };

interface Dial {
  tls: boolean;
  /** Replace the certificate's binding data (to prove the server checks it). */
  bindingOverride?: Uint8Array | null;
  user?: string;
  password?: string;
  auth?: Partial<UpstreamAuthOptions>;
}

/** Reads one byte (the answer to SSLRequest). */
function readByte(sock: Socket): Promise<number> {
  return new Promise((resolve, reject) => {
    const onData = (d: Buffer) => {
      sock.off("error", reject);
      if (d.length !== 1) reject(new Error(`${d.length} bytes after SSLRequest`));
      else resolve(d[0]!);
    };
    sock.once("data", onData);
    sock.once("error", reject);
  });
}

/** The shell: socket I/O around UpstreamAuth, then `SELECT current_user, ssl` to prove the session works. */
async function authenticate(pg: TestPostgres, dial: Dial): Promise<Outcome> {
  const plain = netConnect(pg.port, pg.host);
  await new Promise<void>((resolve, reject) => plain.once("connect", resolve).once("error", reject));
  let sock: Socket | TLSSocket = plain;
  let channelBinding: Uint8Array | null = null;
  if (dial.tls) {
    plain.write(serializeSSLRequest());
    expect(String.fromCharCode(await readByte(plain))).toBe("S");
    const t = tlsConnect({ socket: plain, host: pg.host, ca: pg.caCertPem, servername: "localhost" });
    await new Promise<void>((resolve, reject) => t.once("secureConnect", resolve).once("error", reject));
    channelBinding = tlsServerEndPoint(new Uint8Array(t.getPeerCertificate().raw));
    expect(channelBinding).not.toBeNull();
    sock = t;
  }
  const user = dial.user ?? pg.user;
  const auth = new UpstreamAuth({
    user,
    password: dial.password ?? pg.password,
    allowMd5: false,
    overTls: dial.tls,
    channelBinding: dial.bindingOverride !== undefined ? dial.bindingOverride : channelBinding,
    ...dial.auth,
  });
  const parser = new BackendParser();
  const messages: BackendMessage[] = [];
  let wake: (() => void) | undefined;
  let closed = false;
  sock.on("data", (d: Buffer) => {
    parser.push(new Uint8Array(d));
    wake?.();
  });
  sock.on("close", () => {
    closed = true;
    wake?.();
  });
  sock.on("error", () => {});
  const nextMessage = async (): Promise<BackendMessage | null> => {
    for (;;) {
      const r = parser.next();
      if (r.kind === "message") return r.message;
      if (r.kind === "error") throw new Error(r.error.reason);
      if (closed) return null;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  };

  sock.write(serializeStartupMessage([["user", user], ["database", pg.database], ["application_name", "pgwire-test"]]));
  let sent = 0;
  try {
    for (;;) {
      const m = await nextMessage();
      if (m === null) throw new Error("server closed during authentication");
      const step = auth.receive(m);
      if (step.kind === "send") {
        sent++;
        sock.write(step.bytes);
      } else if (step.kind === "failed") {
        return { kind: "failed", failure: step.failure, sent };
      } else if (step.kind === "ok") {
        sock.write(serializeQuery("SELECT current_user, coalesce((SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()), 'none')"));
        let row: string[] = [];
        for (;;) {
          const q = await nextMessage();
          if (q === null) throw new Error("closed during query");
          messages.push(q);
          if (q.type === "DataRow") row = decodeDataRow(q.raw);
          if (q.type === "ErrorResponse") throw new Error(q.fields.message);
          if (q.type === "ReadyForQuery") break;
        }
        sock.write(serializeTerminate());
        return { kind: "ok", session: step.session, currentUser: row[0]!, ssl: row[1]! };
      }
    }
  } finally {
    sock.destroy();
  }
}

/** Text columns of a DataRow (test-only decoding). */
function decodeDataRow(raw: Uint8Array): string[] {
  const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const n = v.getInt16(5);
  const out: string[] = [];
  let at = 7;
  for (let i = 0; i < n; i++) {
    const len = v.getInt32(at);
    at += 4;
    out.push(len < 0 ? "" : new TextDecoder().decode(raw.subarray(at, at + len)));
    at += Math.max(len, 0);
  }
  return out;
}

function expectCleanFailure(o: Outcome, pg: TestPostgres, secrets: string[]): AuthFailure {
  if (o.kind !== "failed") throw new Error(`expected a failure, got ${JSON.stringify(o)}`);
  const all = JSON.stringify(o.failure);
  for (const s of secrets) expect(all).not.toContain(s);
  expect(o.failure.agentMessage).not.toContain(pg.user);
  return o.failure;
}

describe.skipIf(!canRunRootTests)("upstream authentication against PostgreSQL 15", () => {
  let scram: TestPostgres;
  let md5: TestPostgres;
  let cleartext: TestPostgres;
  const nonAscii = { user: "intl_user", password: "pässwörd\u00a0\u2168\u00ad-ok" };

  beforeAll(async () => {
    // three clusters started in parallel: unique dirs and ports
    [scram, md5, cleartext] = await Promise.all([
      startPostgres({ auth: "scram-sha-256", tls: true }),
      startPostgres({ auth: "md5" }),
      startPostgres({ auth: "password", tls: true }),
    ]);
    scram.superuserSql(`CREATE ROLE ${nonAscii.user} LOGIN PASSWORD '${nonAscii.password}'; GRANT CONNECT ON DATABASE ${scram.database} TO ${nonAscii.user};`);
  }, 120_000);

  afterAll(async () => {
    await Promise.all([scram?.stop(), md5?.stop(), cleartext?.stop()]);
  });

  test("SCRAM-SHA-256 over plain TCP: server signature verified, session usable", async () => {
    const o = await authenticate(scram, { tls: false });
    expect(o).toMatchObject({ kind: "ok", currentUser: scram.user, ssl: "false" });
    if (o.kind !== "ok") return;
    expect(o.session.method).toBe("scram-sha-256");
    expect(o.session.backendKey?.secretKey.length).toBe(4);
    expect(o.session.parameters.find(([k]) => k === "server_version")?.[1]).toMatch(/^15\./);
    expect(o.session.transactionStatus).toBe("I");
  });

  test("SCRAM-SHA-256-PLUS over TLS with tls-server-end-point", async () => {
    const o = await authenticate(scram, { tls: true });
    expect(o).toMatchObject({ kind: "ok", currentUser: scram.user, ssl: "true", session: { method: "scram-sha-256-plus" } });
  });

  test("SCRAM-SHA-256-PLUS with the wrong certificate hash is refused by the server", async () => {
    const o = await authenticate(scram, { tls: true, bindingOverride: new Uint8Array(32).fill(7) });
    const f = expectCleanFailure(o, scram, [scram.password]);
    expect(f.logDetail).toMatch(/channel binding/);
  });

  test("over TLS without binding data: SCRAM-SHA-256", async () => {
    const o = await authenticate(scram, { tls: true, bindingOverride: null });
    expect(o).toMatchObject({ kind: "ok", ssl: "true", session: { method: "scram-sha-256" } });
  });

  test("a wrong password: 28P01, neither password anywhere in the failure", async () => {
    const wrong = "not-the-password-123";
    const o = await authenticate(scram, { tls: false, password: wrong });
    const f = expectCleanFailure(o, scram, [scram.password, wrong]);
    expect(f.sqlstate).toBe("28P01");
    expect(f.logDetail).toMatch(/password authentication failed/);
  });

  test("a non-ASCII password is SASLprep'd as the server does", async () => {
    const o = await authenticate(scram, { tls: false, ...nonAscii });
    expect(o).toMatchObject({ kind: "ok", currentUser: nonAscii.user });
  });

  test("md5 when allowed", async () => {
    const o = await authenticate(md5, { tls: false, auth: { allowMd5: true } });
    expect(o).toMatchObject({ kind: "ok", currentUser: md5.user, session: { method: "md5" } });
  });

  test("md5 refused when not allowed, before anything is sent", async () => {
    const o = await authenticate(md5, { tls: false });
    const f = expectCleanFailure(o, md5, [md5.password]);
    expect(f.sqlstate).toBe("28000");
    expect(o.kind === "failed" && o.sent).toBe(0);
  });

  test("cleartext password over TLS", async () => {
    const o = await authenticate(cleartext, { tls: true });
    expect(o).toMatchObject({ kind: "ok", ssl: "true", session: { method: "password" } });
  });

  test("cleartext password over plain TCP is refused, the password never sent", async () => {
    const o = await authenticate(cleartext, { tls: false });
    const f = expectCleanFailure(o, cleartext, [cleartext.password]);
    expect(f.logDetail).toMatch(/cleartext password over a connection without TLS/);
    expect(o.kind === "failed" && o.sent).toBe(0);
  });
});
