// The upstream authentication state machine, driven message by message
// against a SCRAM server written here from RFC 5802 (independently of
// scram.ts), and through every method the gateway allows or refuses.
import { describe, expect, test } from "bun:test";
import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";
import { UpstreamAuth, type AuthStep, type UpstreamAuthOptions } from "../../../app/endpoints/postgres/auth/upstream.ts";
import { md5PasswordResponse } from "../../../app/endpoints/postgres/auth/md5.ts";
import {
  BackendParser,
  serializeAuthenticationCleartextPassword,
  serializeAuthenticationCode,
  serializeAuthenticationMD5Password,
  serializeAuthenticationOk,
  serializeAuthenticationSASL,
  serializeAuthenticationSASLContinue,
  serializeAuthenticationSASLFinal,
  serializeBackendKeyData,
  serializeErrorResponse,
  serializeNoticeResponse,
  serializeParameterStatus,
  serializeReadyForQuery,
  type BackendMessage,
} from "../../../app/endpoints/postgres/wire/backend.ts";
import { FrontendParser, decodePasswordMessage, decodeSASLInitialResponse } from "../../../app/endpoints/postgres/wire/frontend.ts";

const USER = "app_rw";
const PASSWORD = "s3cret-Pässword";

/** One backend message from its bytes. */
function msg(bytes: Uint8Array): BackendMessage {
  const p = new BackendParser();
  p.push(bytes);
  const r = p.next();
  if (r.kind !== "message") throw new Error(`fixture did not parse: ${JSON.stringify(r)}`);
  return r.message;
}

/** The 'p' message body the state machine asked to send. */
function sentBody(step: AuthStep): Uint8Array {
  if (step.kind !== "send") throw new Error(`expected send, got ${JSON.stringify(step)}`);
  const p = new FrontendParser({ phase: "normal" });
  p.push(step.bytes);
  const r = p.next();
  if (r.kind !== "message" || r.message.type !== "PasswordMessage") throw new Error("not a 'p' message");
  return r.message.body;
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);
const enc = (s: string) => new TextEncoder().encode(s);

/** A SCRAM-SHA-256 server as PostgreSQL runs it, from the RFC formulas. */
class ScramServer {
  readonly salt = randomBytes(16);
  readonly iterations = 4096;
  readonly serverNonce = randomBytes(18).toString("base64");
  private clientFirstBare = "";
  private serverFirst = "";
  gs2 = "";
  constructor(private readonly password: string, private readonly bindingData?: Uint8Array) {}

  first(initial: Uint8Array): string {
    const d = decodeSASLInitialResponse(initial);
    if ("code" in d) throw new Error(d.reason);
    const m = text(d.data!);
    const match = /^((?:n|y|p=tls-server-end-point),,)(n=[^,]*,r=(.+))$/.exec(m);
    if (!match) throw new Error(`bad client-first ${m}`);
    this.gs2 = match[1]!;
    this.clientFirstBare = match[2]!;
    this.serverFirst = `r=${match[3]}${this.serverNonce},s=${this.salt.toString("base64")},i=${this.iterations}`;
    return this.serverFirst;
  }

  /** Checks the proof; returns server-final, optionally tampered. */
  final(response: Uint8Array, tamper = false): string {
    const m = text(response);
    const [withoutProof, proofB64] = m.split(",p=") as [string, string];
    const cbind = Buffer.concat([Buffer.from(this.gs2), this.gs2.startsWith("p=") ? this.bindingData! : Buffer.alloc(0)]).toString("base64");
    if (!withoutProof.startsWith(`c=${cbind},r=`)) throw new Error(`channel binding mismatch: ${withoutProof}`);
    const prepared = this.password.normalize("NFKC");
    const salted = pbkdf2Sync(prepared, this.salt, this.iterations, 32, "sha256");
    const clientKey = createHmac("sha256", salted).update("Client Key").digest();
    const storedKey = createHash("sha256").update(clientKey).digest();
    const authMessage = `${this.clientFirstBare},${this.serverFirst},${withoutProof}`;
    const clientSig = createHmac("sha256", storedKey).update(authMessage).digest();
    const proof = Buffer.from(proofB64, "base64");
    const recovered = Buffer.alloc(32);
    for (let i = 0; i < 32; i++) recovered[i] = proof[i]! ^ clientSig[i]!;
    if (!createHash("sha256").update(recovered).digest().equals(storedKey)) return "e=invalid-proof";
    const serverKey = createHmac("sha256", salted).update("Server Key").digest();
    const sig = createHmac("sha256", serverKey).update(authMessage).digest();
    if (tamper) sig[0] = sig[0]! ^ 1;
    return `v=${sig.toString("base64")}`;
  }
}

const afterOk = [
  serializeParameterStatus("server_version", "15.10"),
  serializeParameterStatus("client_encoding", "UTF8"),
  serializeNoticeResponse({ severity: "NOTICE", code: "00000", message: "welcome" }),
  serializeBackendKeyData(4242, new Uint8Array([1, 2, 3, 4])),
];

function finishStartup(auth: UpstreamAuth): AuthStep {
  for (const b of afterOk) expect(auth.receive(msg(b))).toEqual({ kind: "continue" });
  return auth.receive(msg(serializeReadyForQuery("I")));
}

function options(o: Partial<UpstreamAuthOptions> = {}): UpstreamAuthOptions {
  return { user: USER, password: PASSWORD, allowMd5: false, overTls: false, nonce: () => "fixedclientnonce", ...o };
}

function expectFailure(step: AuthStep, sqlstate: string, detail: RegExp): void {
  if (step.kind !== "failed") throw new Error(`expected failure, got ${JSON.stringify(step)}`);
  expect(step.failure.sqlstate).toBe(sqlstate);
  expect(step.failure.logDetail).toMatch(detail);
  const all = JSON.stringify(step.failure);
  expect(all).not.toContain(PASSWORD);
  expect(step.failure.agentMessage).not.toContain(USER);
}

/** Runs SASL up to and including SASLFinal; returns the step SASLFinal produced. */
function scram(auth: UpstreamAuth, server: ScramServer, mechanisms: string[], tamper = false): { step: AuthStep; mechanism: string; clientFirst: string } {
  const initial = decodeSASLInitialResponse(sentBody(auth.receive(msg(serializeAuthenticationSASL(mechanisms)))));
  if ("code" in initial) throw new Error(initial.reason);
  const serverFirst = server.first(sentBody({ kind: "send", bytes: resend(initial.mechanism, initial.data!) }));
  const response = sentBody(auth.receive(msg(serializeAuthenticationSASLContinue(enc(serverFirst)))));
  const serverFinal = server.final(response, tamper);
  const step = auth.receive(msg(serializeAuthenticationSASLFinal(enc(serverFinal))));
  return { step, mechanism: initial.mechanism, clientFirst: text(initial.data!) };
}

/** Re-frames a SASLInitialResponse (the fake server reads the framed form). */
function resend(mechanism: string, data: Uint8Array): Uint8Array {
  const body = Buffer.concat([Buffer.from(mechanism + "\0"), Buffer.from([data.length >>> 24, (data.length >>> 16) & 255, (data.length >>> 8) & 255, data.length & 255]), data]);
  const out = Buffer.alloc(5 + body.length);
  out[0] = 0x70;
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

describe("SCRAM-SHA-256", () => {
  test("a full exchange: proof accepted, server signature verified, startup collected", () => {
    const auth = new UpstreamAuth(options());
    const r = scram(auth, new ScramServer(PASSWORD), ["SCRAM-SHA-256"]);
    expect(r.mechanism).toBe("SCRAM-SHA-256");
    expect(r.clientFirst).toBe("n,,n=,r=fixedclientnonce");
    expect(r.step).toEqual({ kind: "continue" });
    expect(auth.receive(msg(serializeAuthenticationOk()))).toEqual({ kind: "continue" });
    const done = finishStartup(auth);
    if (done.kind !== "ok") throw new Error(JSON.stringify(done));
    expect(done.session.method).toBe("scram-sha-256");
    expect(done.session.parameters).toEqual([["server_version", "15.10"], ["client_encoding", "UTF8"]]);
    expect(done.session.backendKey).toEqual({ processId: 4242, secretKey: new Uint8Array([1, 2, 3, 4]) });
    expect(done.session.transactionStatus).toBe("I");
    expect(done.session.notices.length).toBe(1);
    expect(done.session.raw.length).toBe(4);
    expect(auth.finished).toBe(true);
    expect(() => auth.receive(msg(serializeReadyForQuery("I")))).toThrow();
  });

  test("a wrong server signature is refused before AuthenticationOk", () => {
    const auth = new UpstreamAuth(options());
    const r = scram(auth, new ScramServer(PASSWORD), ["SCRAM-SHA-256"], true);
    expectFailure(r.step, "28P01", /server signature does not match/);
  });

  test("a server that skips SASLFinal and says Ok is refused", () => {
    const auth = new UpstreamAuth(options());
    const server = new ScramServer(PASSWORD);
    const initial = decodeSASLInitialResponse(sentBody(auth.receive(msg(serializeAuthenticationSASL(["SCRAM-SHA-256"])))));
    if ("code" in initial) throw new Error(initial.reason);
    const serverFirst = server.first(resend(initial.mechanism, initial.data!).subarray(5));
    sentBody(auth.receive(msg(serializeAuthenticationSASLContinue(enc(serverFirst)))));
    expectFailure(auth.receive(msg(serializeAuthenticationOk())), "08P01", /skipped the SCRAM final message/);
  });

  test("a server that does not know the password: its e= answer, or its ErrorResponse", () => {
    const wrong = new UpstreamAuth(options());
    const server = new ScramServer("another password");
    expectFailure(scram(wrong, server, ["SCRAM-SHA-256"]).step, "28P01", /server refused: invalid-proof/);

    const auth = new UpstreamAuth(options());
    const initial = sentBody(auth.receive(msg(serializeAuthenticationSASL(["SCRAM-SHA-256"]))));
    void initial;
    const step = auth.receive(msg(serializeErrorResponse({ severity: "FATAL", code: "28P01", message: `password authentication failed for user "${USER}"` })));
    expectFailure(step, "28P01", /password authentication failed/);
    if (step.kind === "failed") expect(step.failure.agentMessage).toMatch(/refused the gateway's credential/);
  });

  test("a server first message whose nonce does not extend ours is refused", () => {
    const auth = new UpstreamAuth(options());
    sentBody(auth.receive(msg(serializeAuthenticationSASL(["SCRAM-SHA-256"]))));
    expectFailure(auth.receive(msg(serializeAuthenticationSASLContinue(enc("r=othernonce123,s=c2FsdA==,i=4096")))), "08P01", /does not extend/);
  });

  test("an iteration count over the limit is refused without hashing", () => {
    const auth = new UpstreamAuth(options({ maxIterations: 10000 }));
    sentBody(auth.receive(msg(serializeAuthenticationSASL(["SCRAM-SHA-256"]))));
    expectFailure(auth.receive(msg(serializeAuthenticationSASLContinue(enc("r=fixedclientnonceXYZ,s=c2FsdA==,i=500000")))), "08P01", /over the limit 10000/);
  });

  test("a hostile server echoing the password in its error: the log detail never holds it", () => {
    const auth = new UpstreamAuth(options());
    const step = auth.receive(msg(serializeErrorResponse({ severity: "FATAL", code: "28P01", message: `bad password ${PASSWORD}!` })));
    expectFailure(step, "28P01", /bad password \[password\]!/);
  });

  test("no SCRAM mechanism offered", () => {
    expectFailure(new UpstreamAuth(options()).receive(msg(serializeAuthenticationSASL(["OAUTHBEARER"]))), "28000", /no supported SASL mechanism/);
  });

  test("SASLContinue before any request is a protocol violation", () => {
    expectFailure(new UpstreamAuth(options()).receive(msg(serializeAuthenticationSASLContinue(enc("r=x")))), "08P01", /AuthenticationSASLContinue where an authentication request/);
  });
});

describe("SCRAM-SHA-256-PLUS", () => {
  const binding = new Uint8Array(createHash("sha256").update("a certificate").digest());

  test("over TLS with binding data and -PLUS offered: binds, and the server checks it", () => {
    const auth = new UpstreamAuth(options({ overTls: true, channelBinding: binding }));
    const r = scram(auth, new ScramServer(PASSWORD, binding), ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]);
    expect(r.mechanism).toBe("SCRAM-SHA-256-PLUS");
    expect(r.clientFirst).toBe("p=tls-server-end-point,,n=,r=fixedclientnonce");
    expect(r.step).toEqual({ kind: "continue" });
    auth.receive(msg(serializeAuthenticationOk()));
    const done = finishStartup(auth);
    expect(done).toMatchObject({ kind: "ok", session: { method: "scram-sha-256-plus" } });
  });

  test("a different certificate hash on the server side fails the exchange", () => {
    const auth = new UpstreamAuth(options({ overTls: true, channelBinding: binding }));
    const other = new Uint8Array(32);
    expect(() => scram(auth, new ScramServer(PASSWORD, other), ["SCRAM-SHA-256-PLUS"])).toThrow(/channel binding mismatch/);
  });

  test("over TLS with binding data but -PLUS not offered: SCRAM-SHA-256 with the 'y' flag", () => {
    const auth = new UpstreamAuth(options({ overTls: true, channelBinding: binding }));
    const r = scram(auth, new ScramServer(PASSWORD), ["SCRAM-SHA-256"]);
    expect(r.mechanism).toBe("SCRAM-SHA-256");
    expect(r.clientFirst).toBe("y,,n=,r=fixedclientnonce");
    expect(r.step).toEqual({ kind: "continue" });
  });

  test("over TLS without binding data (e.g. an Ed25519 certificate): SCRAM-SHA-256 with 'n'", () => {
    const auth = new UpstreamAuth(options({ overTls: true, channelBinding: null }));
    const r = scram(auth, new ScramServer(PASSWORD), ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]);
    expect(r.mechanism).toBe("SCRAM-SHA-256");
    expect(r.clientFirst).toBe("n,,n=,r=fixedclientnonce");
  });

  test("-PLUS offered on a connection without TLS is refused (a stripped TLS)", () => {
    expectFailure(new UpstreamAuth(options()).receive(msg(serializeAuthenticationSASL(["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]))), "08P01", /without TLS/);
  });

  test("requireChannelBinding refuses plain SCRAM", () => {
    const auth = new UpstreamAuth(options({ overTls: true, channelBinding: binding, requireChannelBinding: true }));
    expectFailure(auth.receive(msg(serializeAuthenticationSASL(["SCRAM-SHA-256"]))), "28000", /channel binding required/);
  });
});

describe("md5, cleartext, trust, and refused methods", () => {
  test("md5 allowed: the PostgreSQL md5 response", () => {
    const salt = new Uint8Array([9, 8, 7, 6]);
    const auth = new UpstreamAuth(options({ allowMd5: true }));
    const body = sentBody(auth.receive(msg(serializeAuthenticationMD5Password(salt))));
    expect(decodePasswordMessage(body)).toEqual({ password: md5PasswordResponse(USER, PASSWORD, salt) });
    auth.receive(msg(serializeAuthenticationOk()));
    expect(finishStartup(auth)).toMatchObject({ kind: "ok", session: { method: "md5" } });
  });

  test("md5 refused without allowMd5", () => {
    const step = new UpstreamAuth(options()).receive(msg(serializeAuthenticationMD5Password(new Uint8Array(4))));
    expectFailure(step, "28000", /allow_md5 is off/);
    if (step.kind === "failed") expect(step.failure.agentMessage).toMatch(/method the gateway does not allow/);
  });

  test("cleartext over TLS sends the password", () => {
    const auth = new UpstreamAuth(options({ overTls: true }));
    expect(decodePasswordMessage(sentBody(auth.receive(msg(serializeAuthenticationCleartextPassword()))))).toEqual({ password: PASSWORD });
    auth.receive(msg(serializeAuthenticationOk()));
    expect(finishStartup(auth)).toMatchObject({ kind: "ok", session: { method: "password" } });
  });

  test("cleartext without TLS is refused and nothing is sent", () => {
    expectFailure(new UpstreamAuth(options()).receive(msg(serializeAuthenticationCleartextPassword())), "28000", /cleartext password over a connection without TLS/);
  });

  test("trust is refused unless allowed", () => {
    expectFailure(new UpstreamAuth(options()).receive(msg(serializeAuthenticationOk())), "28000", /trust/);
    const auth = new UpstreamAuth(options({ allowTrust: true }));
    expect(auth.receive(msg(serializeAuthenticationOk()))).toEqual({ kind: "continue" });
    expect(finishStartup(auth)).toMatchObject({ kind: "ok", session: { method: "trust" } });
  });

  for (const [code, name] of [[2, "KerberosV5"], [7, "GSS"], [9, "SSPI"], [6, "SCMCredential"], [42, "code 42"]] as const) {
    test(`${name} is refused`, () => {
      expectFailure(new UpstreamAuth(options()).receive(msg(serializeAuthenticationCode(code))), "28000", new RegExp(`asked for ${name} authentication`));
    });
  }

  test("a server error after authentication (database does not exist) keeps the server's SQLSTATE", () => {
    const auth = new UpstreamAuth(options({ allowTrust: true }));
    auth.receive(msg(serializeAuthenticationOk()));
    const step = auth.receive(msg(serializeErrorResponse({ severity: "FATAL", code: "3D000", message: 'database "nope" does not exist' })));
    expectFailure(step, "3D000", /does not exist/);
    if (step.kind === "failed") expect(step.failure.agentMessage).toBe("upstream connection failed during startup");
  });

  test("a query result during startup is a protocol violation", () => {
    const auth = new UpstreamAuth(options({ allowTrust: true }));
    auth.receive(msg(serializeAuthenticationOk()));
    expectFailure(auth.receive(msg(new Uint8Array([0x44, 0, 0, 0, 6, 0, 0]))), "08P01", /DataRow where ParameterStatus/);
  });

  test("a wire error maps to a protocol failure", () => {
    expect(UpstreamAuth.wireFailure({ code: "malformed", sqlstate: "08P01", reason: "x" })).toMatchObject({ sqlstate: "08P01" });
  });
});
