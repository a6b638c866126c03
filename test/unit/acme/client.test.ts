// The ACME client against an in-memory CA (the twin of the transport): it
// checks every JWS signature and nonce like a real server, and each test
// changes one answer. pebble covers the real thing (test/integration/acme-pebble.test.ts).
import { expect, test } from "bun:test";
import { AcmeClient, type AcmeRequest, type AcmeResponse, type ChallengeResponder } from "../../../app/acme/client.ts";
import { publicJwk } from "../../../app/acme/jws.ts";
import { AcmeError, parseAuthorization } from "../../../app/acme/messages.ts";
import { ECDSA_SHA256, P256_KEY_ALGORITHM } from "../../../app/tls/pki.ts";

const TOKEN = "tok_0123456789abcdefABCDEF";
const PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

type Reply = { status: number; body?: unknown; headers?: Record<string, string> };
type Route = (payload: unknown, seen: number) => Reply;

function fakeCa(publicKey: CryptoKey, overrides: Record<string, Route> = {}) {
  let n = 0;
  const issued = new Set<string>();
  const calls: string[] = [];
  const counts = new Map<string, number>();
  const state = { authz: "pending", order: "pending" };
  const routes: Record<string, Route> = {
    "new-acct": () => ({ status: 201, body: { status: "valid" }, headers: { location: "https://ca/acct/1" } }),
    "new-order": () => ({ status: 201, body: order(), headers: { location: "https://ca/order/1" } }),
    "authz/1": () => ({ status: 200, body: authz() }),
    "chall/1": () => ((state.authz = "valid"), { status: 200, body: {} }),
    "order/1": () => ({ status: 200, body: order() }),
    finalize: () => ((state.order = "valid"), { status: 200, body: order() }),
    "cert/1": () => ({ status: 200, body: PEM }),
    ...overrides,
  };
  function order() {
    const status = state.order === "valid" ? "valid" : state.authz === "valid" ? "ready" : "pending";
    return { status, authorizations: ["https://ca/authz/1"], finalize: "https://ca/finalize", ...(status === "valid" ? { certificate: "https://ca/cert/1" } : {}) };
  }
  function authz() {
    return { status: state.authz, identifier: { type: "dns", value: "gw.example.com" }, challenges: [{ type: "http-01", url: "https://ca/chall/1", token: TOKEN, status: state.authz }] };
  }
  const nonce = () => {
    const v = `nonce-${++n}`;
    issued.add(v);
    return v;
  };
  const send = async (req: AcmeRequest): Promise<AcmeResponse> => {
    const path = req.url.replace("https://ca/", "");
    const reply = (r: Reply): AcmeResponse => {
      const headers: Record<string, string> = { "replay-nonce": nonce(), ...(r.headers ?? {}) };
      return { status: r.status, header: (h) => headers[h.toLowerCase()] ?? null, body: typeof r.body === "string" ? r.body : JSON.stringify(r.body ?? {}) };
    };
    if (path === "dir") return reply({ status: 200, body: { newNonce: "https://ca/nonce", newAccount: "https://ca/new-acct", newOrder: "https://ca/new-order" } });
    if (path === "nonce") return reply({ status: 200 });
    const jws = JSON.parse(req.body!) as { protected: string; payload: string; signature: string };
    const header = JSON.parse(Buffer.from(jws.protected, "base64url").toString()) as { nonce: string; url: string; kid?: string; jwk?: unknown };
    const ok = await crypto.subtle.verify(ECDSA_SHA256, publicKey, Buffer.from(jws.signature, "base64url"), Buffer.from(`${jws.protected}.${jws.payload}`));
    if (!ok || header.url !== req.url || (path === "new-acct") !== (header.jwk !== undefined)) return reply({ status: 400, body: { type: "urn:ietf:params:acme:error:malformed", detail: "bad JWS" } });
    if (!issued.delete(header.nonce)) return reply({ status: 400, body: { type: "urn:ietf:params:acme:error:badNonce", detail: "JWS has an invalid anti-replay nonce" } });
    calls.push(path);
    const seen = (counts.get(path) ?? 0) + 1;
    counts.set(path, seen);
    const payload = jws.payload === "" ? undefined : JSON.parse(Buffer.from(jws.payload, "base64url").toString());
    return reply(routes[path]!(payload, seen));
  };
  return { send, calls, state, spoil: () => issued.clear() };
}

async function setup(overrides: Record<string, Route> = {}) {
  const keys = await crypto.subtle.generateKey(P256_KEY_ALGORITHM, true, ["sign", "verify"]);
  const ca = fakeCa(keys.publicKey, overrides);
  const client = new AcmeClient({ directoryUrl: "https://ca/dir", signer: { privateKey: keys.privateKey, jwk: await publicJwk(keys.publicKey) }, send: ca.send, sleep: async () => {}, maxPolls: 5 });
  const published: string[] = [];
  const live = new Map<string, string>();
  const responder: ChallengeResponder = {
    type: "http-01",
    publish: (t, k) => (published.push(k), void live.set(t, k)),
    withdraw: (t) => void live.delete(t),
  };
  const issue = () => client.issue({ email: "ops@example.com", names: ["gw.example.com"], csrDer: new Uint8Array([0x30, 0]), responder });
  return { ca, client, published, live, issue };
}

test("the whole flow: account, order, the challenge published then withdrawn, finalize, the chain", async () => {
  const t = await setup();
  expect(await t.issue()).toBe(PEM);
  expect(t.ca.calls).toEqual(["new-acct", "new-order", "authz/1", "chall/1", "authz/1", "order/1", "finalize", "cert/1"]);
  expect(t.published).toHaveLength(1);
  expect(t.published[0]).toStartWith(`${TOKEN}.`);
  expect(t.live.size).toBe(0);
});

test("a badNonce answer is retried with the nonce it carries", async () => {
  const t = await setup();
  await t.client.account("ops@example.com");
  t.ca.spoil(); // the nonce the client holds is no longer valid
  expect(await t.issue()).toBe(PEM);
  expect(t.ca.calls.filter((c) => c === "new-order")).toHaveLength(1);
});

test("an authorization already valid (reused) publishes nothing", async () => {
  const t = await setup();
  t.ca.state.authz = "valid";
  expect(await t.issue()).toBe(PEM);
  expect(t.published).toEqual([]);
  expect(t.ca.calls).not.toContain("chall/1");
});

test("a failed challenge: the challenge's own problem, and the token withdrawn", async () => {
  const problem = { type: "urn:ietf:params:acme:error:connection", detail: "127.0.0.2: Fetching http://gw.example.com/.well-known/acme-challenge/x: Connection refused" };
  const t = await setup({
    "authz/1": (_p, seen) => ({
      status: 200,
      body: { status: seen === 1 ? "pending" : "invalid", identifier: { type: "dns", value: "gw.example.com" }, challenges: [{ type: "http-01", url: "https://ca/chall/1", token: TOKEN, status: "invalid", ...(seen > 1 ? { error: problem } : {}) }] },
    }),
  });
  const e = await t.issue().catch((x: unknown) => x);
  expect(e).toBeInstanceOf(AcmeError);
  expect((e as AcmeError).problem).toEqual(problem);
  expect((e as AcmeError).short).toBe("connection");
  expect(t.live.size).toBe(0);
  expect(t.ca.calls).not.toContain("finalize");
});

test("the server's problem document becomes the error: type, detail, subproblems", async () => {
  const t = await setup({
    "new-order": () => ({
      status: 400,
      body: { type: "urn:ietf:params:acme:error:rejectedIdentifier", detail: "Error creating new order", subproblems: [{ type: "urn:ietf:params:acme:error:rejectedIdentifier", detail: "gw.example.com is blocked" }] },
    }),
  });
  const e = (await t.issue().catch((x: unknown) => x)) as AcmeError;
  expect(e.message).toBe("urn:ietf:params:acme:error:rejectedIdentifier: Error creating new order (urn:ietf:params:acme:error:rejectedIdentifier: gw.example.com is blocked)");
  expect(e.problem.status).toBe(400);
});

test("a pending authorization that never ends: a timeout problem after maxPolls, not a hang", async () => {
  const t = await setup({ "chall/1": () => ({ status: 200, body: {} }) });
  const e = (await t.issue().catch((x: unknown) => x)) as AcmeError;
  expect(e.problem.type).toBe("clawpatrol:acme:timeout");
});

test("malformed answers are problems too, and a token that is not base64url is never served", async () => {
  const t = await setup({ "new-order": () => ({ status: 201, body: "<html>", headers: { location: "https://ca/order/1" } }) });
  const e = (await t.issue().catch((x: unknown) => x)) as AcmeError;
  expect(e.problem.type).toBe("clawpatrol:acme:malformed-response");
  const a = parseAuthorization({ status: "pending", identifier: { type: "dns", value: "h" }, challenges: [{ type: "http-01", url: "u", token: "../../etc/passwd/xxxxxxxx" }, { type: "http-01", url: "u", token: TOKEN }] });
  expect(a.challenges.map((c) => c.token)).toEqual([TOKEN]);
});
