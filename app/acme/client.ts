// An ACME client (RFC 8555) for one job: a certificate for a few DNS names.
//
//   1. directory   GET the directory (§7.1.1), once
//   2. nonce       HEAD newNonce, then each response's Replay-Nonce (§7.2);
//                  a badNonce answer is retried with the nonce it carries
//   3. account     POST newAccount with the JWK (§7.3): creates the account,
//                  or finds the existing one for this key; its URL is the kid
//   4. order       POST newOrder with the identifiers (§7.4)
//   5. authorize   for each pending authorization: publish the challenge's
//                  key authorization, POST the challenge, poll until valid
//                  or invalid (§7.5.1), withdraw
//   6. finalize    poll the order to "ready", POST the CSR, poll to "valid"
//   7. download    POST-as-GET the certificate URL: the PEM chain (§7.4.2)
//
// No sockets here: requests go through the `send` function the shell gives
// (real fetch in production, anything in a test), waits through `sleep`.
import { jwkThumbprint, keyAuthorization, signJws, type JwsSigner } from "./jws.ts";
import {
  AcmeError,
  malformed,
  parseAuthorization,
  parseDirectory,
  parseJson,
  parseOrder,
  parseProblem,
  type Authorization,
  type Directory,
  type Order,
} from "./messages.ts";

export interface AcmeRequest {
  method: "GET" | "HEAD" | "POST";
  url: string;
  headers: Record<string, string>;
  body?: string;
}
export interface AcmeResponse {
  status: number;
  header(name: string): string | null;
  body: string;
}
export type AcmeSend = (req: AcmeRequest) => Promise<AcmeResponse>;

/** Where challenge answers are served while the CA validates (the :80 listener for HTTP-01). */
export interface ChallengeResponder {
  type: "http-01";
  publish(token: string, keyAuthorization: string): void;
  withdraw(token: string): void;
}

export interface AcmeClientOptions {
  directoryUrl: string;
  signer: JwsSigner;
  send: AcmeSend;
  sleep: (ms: number) => Promise<void>;
  /** Polls of one authorization or order before giving up (default 60). */
  maxPolls?: number;
}

const BAD_NONCE_RETRIES = 5;
const POLL_DEFAULT_MS = 1000;
const POLL_MAX_MS = 10_000;

export class AcmeClient {
  private dir: Directory | undefined;
  private nonce: string | undefined;
  private kid: string | undefined;
  private thumbprint: Promise<string> | undefined;

  constructor(private readonly o: AcmeClientOptions) {}

  async directory(): Promise<Directory> {
    if (!this.dir) {
      const r = await this.o.send({ method: "GET", url: this.o.directoryUrl, headers: { accept: "application/json" } });
      if (r.status !== 200) throw problemOf(r, "the directory");
      this.dir = parseDirectory(parseJson(r.body, "the directory"));
    }
    return this.dir;
  }

  /** §7.3: the account URL for this key, registering it (terms agreed, contact) when new. */
  async account(email: string): Promise<string> {
    if (this.kid) return this.kid;
    const d = await this.directory();
    const r = await this.post(d.newAccount, { termsOfServiceAgreed: true, contact: [`mailto:${email}`] }, { useJwk: true });
    if (r.status !== 200 && r.status !== 201) throw problemOf(r, "new-account");
    const kid = r.header("location");
    if (!kid) throw malformed("new-account answered without a Location");
    this.kid = kid;
    return kid;
  }

  /** Steps 4–7: the PEM chain for `names`, whose key signed `csrDer`. */
  async issue(opts: { email: string; names: string[]; csrDer: Uint8Array; responder: ChallengeResponder }): Promise<string> {
    await this.account(opts.email);
    const d = await this.directory();
    const created = await this.post(d.newOrder, { identifiers: opts.names.map((value) => ({ type: "dns", value })) });
    if (created.status !== 201 && created.status !== 200) throw problemOf(created, "new-order");
    const orderUrl = created.header("location");
    if (!orderUrl) throw malformed("new-order answered without a Location");
    let order = parseOrder(parseJson(created.body, "the order"));

    for (const url of order.authorizations) await this.authorize(url, opts.responder);

    order = await this.pollOrder(orderUrl, order, ["pending"]);
    if (order.status !== "ready") throw orderFailed(order, "ready");
    const fin = await this.post(order.finalize, { csr: Buffer.from(opts.csrDer).toString("base64url") });
    if (fin.status !== 200) throw problemOf(fin, "finalize");
    order = await this.pollOrder(orderUrl, parseOrder(parseJson(fin.body, "the order")), ["ready", "processing"]);
    if (order.status !== "valid" || !order.certificate) throw orderFailed(order, "valid");

    const cert = await this.post(order.certificate, undefined, { accept: "application/pem-certificate-chain" });
    if (cert.status !== 200) throw problemOf(cert, "the certificate download");
    if (!cert.body.includes("-----BEGIN CERTIFICATE-----")) throw malformed("the certificate download holds no PEM certificate");
    return cert.body;
  }

  private async authorize(url: string, responder: ChallengeResponder): Promise<void> {
    let authz = await this.fetchAuthz(url);
    if (authz.status === "valid") return; // reused (§7.1.4): nothing to prove
    if (authz.status !== "pending") throw authzFailed(authz);
    const challenge = authz.challenges.find((c) => c.type === responder.type);
    if (!challenge) throw new AcmeError({ type: "clawpatrol:acme:no-challenge", detail: `the CA offers no ${responder.type} challenge for ${authz.identifier.value}` });
    this.thumbprint ??= jwkThumbprint(this.o.signer.jwk);
    responder.publish(challenge.token, keyAuthorization(challenge.token, await this.thumbprint));
    try {
      const r = await this.post(challenge.url, {});
      if (r.status !== 200) throw problemOf(r, "the challenge response");
      for (let i = 0; authz.status === "pending"; i++) {
        if (i >= (this.o.maxPolls ?? 60)) throw new AcmeError({ type: "clawpatrol:acme:timeout", detail: `the authorization for ${authz.identifier.value} stayed pending` });
        await this.o.sleep(POLL_DEFAULT_MS);
        authz = await this.fetchAuthz(url);
      }
      if (authz.status !== "valid") throw authzFailed(authz);
    } finally {
      responder.withdraw(challenge.token);
    }
  }

  private async fetchAuthz(url: string): Promise<Authorization> {
    const r = await this.post(url, undefined);
    if (r.status !== 200) throw problemOf(r, "the authorization");
    return parseAuthorization(parseJson(r.body, "the authorization"));
  }

  private async pollOrder(url: string, order: Order, whileIn: Order["status"][]): Promise<Order> {
    for (let i = 0; whileIn.includes(order.status); i++) {
      if (i >= (this.o.maxPolls ?? 60)) throw new AcmeError({ type: "clawpatrol:acme:timeout", detail: `the order stayed ${order.status}` });
      await this.o.sleep(POLL_DEFAULT_MS);
      const r = await this.post(url, undefined);
      if (r.status !== 200) throw problemOf(r, "the order");
      order = parseOrder(parseJson(r.body, "the order"));
      const wait = retryAfterMs(r.header("retry-after"));
      if (wait !== undefined && whileIn.includes(order.status)) await this.o.sleep(Math.min(wait, POLL_MAX_MS));
    }
    return order;
  }

  /** A signed POST (payload undefined: POST-as-GET), retried on badNonce (§6.5). */
  private async post(url: string, payload: unknown, opts: { useJwk?: boolean; accept?: string } = {}): Promise<AcmeResponse> {
    for (let attempt = 0; ; attempt++) {
      const nonce = await this.takeNonce();
      const kid = opts.useJwk ? undefined : this.kid;
      if (!opts.useJwk && kid === undefined) throw new Error("ACME request before the account exists");
      const jws = await signJws(this.o.signer, { url, nonce, ...(kid !== undefined ? { kid } : {}) }, payload);
      const r = await this.o.send({
        method: "POST",
        url,
        headers: { "content-type": "application/jose+json", ...(opts.accept ? { accept: opts.accept } : {}) },
        body: JSON.stringify(jws),
      });
      this.nonce = r.header("replay-nonce") ?? undefined;
      if (r.status === 400 && attempt < BAD_NONCE_RETRIES && problemOf(r, "").short === "badNonce") continue;
      return r;
    }
  }

  private async takeNonce(): Promise<string> {
    const kept = this.nonce;
    this.nonce = undefined;
    if (kept) return kept;
    const d = await this.directory();
    const r = await this.o.send({ method: "HEAD", url: d.newNonce, headers: {} });
    const n = r.header("replay-nonce");
    if (!n) throw problemOf(r, "new-nonce");
    return n;
  }
}

function problemOf(r: AcmeResponse, what: string): AcmeError {
  let body: unknown;
  try {
    body = JSON.parse(r.body);
  } catch {
    return new AcmeError({ type: "clawpatrol:acme:http-error", detail: `${what} answered HTTP ${r.status}`, status: r.status });
  }
  return new AcmeError(parseProblem(body, r.status));
}

function authzFailed(a: Authorization): AcmeError {
  const failed = a.challenges.find((c) => c.error);
  if (failed?.error) return new AcmeError(failed.error);
  return new AcmeError({ type: "clawpatrol:acme:authorization-failed", detail: `the authorization for ${a.identifier.value} is ${a.status}` });
}

function orderFailed(o: Order, wanted: string): AcmeError {
  return new AcmeError(o.error ?? { type: "clawpatrol:acme:order-failed", detail: `the order is ${o.status}, not ${wanted}` });
}

/** Retry-After as delta-seconds or an HTTP date (RFC 9110 §10.2.3); the date form needs a clock we do not take here, so it is ignored. */
export function retryAfterMs(v: string | null): number | undefined {
  if (v === null || !/^\d+$/.test(v.trim())) return undefined;
  return Number(v.trim()) * 1000;
}
