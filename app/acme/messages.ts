// The ACME resources this client reads (RFC 8555 §7.1), checked out of
// untrusted JSON into plain values, and the problem document (RFC 7807,
// §6.7) every error arrives as. Parsing never throws anything but AcmeError.

export const PROBLEM_PREFIX = "urn:ietf:params:acme:error:";

export interface Directory {
  newNonce: string;
  newAccount: string;
  newOrder: string;
  termsOfService?: string;
}

export type OrderStatus = "pending" | "ready" | "processing" | "valid" | "invalid";
export interface Order {
  status: OrderStatus;
  authorizations: string[];
  finalize: string;
  certificate?: string;
  error?: Problem;
}

export interface Challenge {
  type: string;
  url: string;
  token: string;
  status: string;
  error?: Problem;
}
export interface Authorization {
  status: "pending" | "valid" | "invalid" | "deactivated" | "expired" | "revoked";
  identifier: { type: string; value: string };
  challenges: Challenge[];
}

export interface Problem {
  type: string;
  detail: string;
  status?: number;
  subproblems?: Problem[];
}

/** A failure the ACME server reported (its problem document) or a response this client cannot use. */
export class AcmeError extends Error {
  constructor(readonly problem: Problem) {
    super(formatProblem(problem));
    this.name = "AcmeError";
  }
  /** The type without the ACME URN prefix (`badNonce`, `unauthorized`, `connection`, …). */
  get short(): string {
    return this.problem.type.startsWith(PROBLEM_PREFIX) ? this.problem.type.slice(PROBLEM_PREFIX.length) : this.problem.type;
  }
}

export function formatProblem(p: Problem): string {
  const sub = p.subproblems?.length ? ` (${p.subproblems.map((s) => formatProblem(s)).join("; ")})` : "";
  return `${p.type}: ${p.detail}${sub}`;
}

/** A malformed answer is our own problem type, so logs still carry a type and a detail. */
export function malformed(what: string): AcmeError {
  return new AcmeError({ type: "clawpatrol:acme:malformed-response", detail: what });
}

function obj(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw malformed(`${what} is not a JSON object`);
  return v as Record<string, unknown>;
}
function str(o: Record<string, unknown>, key: string, what: string): string {
  const v = o[key];
  if (typeof v !== "string" || v === "") throw malformed(`${what} has no ${key}`);
  return v;
}
function optStr(o: Record<string, unknown>, key: string): string | undefined {
  return typeof o[key] === "string" ? (o[key] as string) : undefined;
}

export function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw malformed(`${what} is not JSON`);
  }
}

export function parseProblem(v: unknown, status?: number): Problem {
  const o = typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  const subs = Array.isArray(o.subproblems) ? o.subproblems.map((s) => parseProblem(s)) : undefined;
  return {
    type: optStr(o, "type") ?? "about:blank",
    detail: optStr(o, "detail") ?? (status !== undefined ? `HTTP ${status}` : "no detail"),
    ...(status !== undefined ? { status } : typeof o.status === "number" ? { status: o.status } : {}),
    ...(subs?.length ? { subproblems: subs } : {}),
  };
}

export function parseDirectory(v: unknown): Directory {
  const o = obj(v, "the directory");
  const meta = typeof o.meta === "object" && o.meta !== null ? (o.meta as Record<string, unknown>) : {};
  const tos = optStr(meta, "termsOfService");
  return {
    newNonce: str(o, "newNonce", "the directory"),
    newAccount: str(o, "newAccount", "the directory"),
    newOrder: str(o, "newOrder", "the directory"),
    ...(tos !== undefined ? { termsOfService: tos } : {}),
  };
}

const ORDER_STATUSES: readonly OrderStatus[] = ["pending", "ready", "processing", "valid", "invalid"];
export function parseOrder(v: unknown): Order {
  const o = obj(v, "the order");
  const status = o.status as OrderStatus;
  if (!ORDER_STATUSES.includes(status)) throw malformed(`the order's status is ${JSON.stringify(o.status)}`);
  if (!Array.isArray(o.authorizations) || !o.authorizations.every((a) => typeof a === "string")) throw malformed("the order has no authorizations list");
  const certificate = optStr(o, "certificate");
  return {
    status,
    authorizations: o.authorizations as string[],
    finalize: str(o, "finalize", "the order"),
    ...(certificate !== undefined ? { certificate } : {}),
    ...(o.error !== undefined ? { error: parseProblem(o.error) } : {}),
  };
}

const AUTHZ_STATUSES = ["pending", "valid", "invalid", "deactivated", "expired", "revoked"] as const;
export function parseAuthorization(v: unknown): Authorization {
  const o = obj(v, "the authorization");
  const status = o.status as Authorization["status"];
  if (!AUTHZ_STATUSES.includes(status)) throw malformed(`the authorization's status is ${JSON.stringify(o.status)}`);
  const id = obj(o.identifier, "the authorization's identifier");
  if (!Array.isArray(o.challenges)) throw malformed("the authorization has no challenges");
  const challenges: Challenge[] = [];
  for (const c of o.challenges) {
    const co = obj(c, "a challenge");
    const type = optStr(co, "type");
    const url = optStr(co, "url");
    const token = optStr(co, "token");
    // RFC 8555 §8.1: a token is base64url; anything else must never reach a file path or a URL.
    if (type === undefined || url === undefined || token === undefined || !/^[A-Za-z0-9_-]{16,}$/.test(token)) continue;
    challenges.push({ type, url, token, status: optStr(co, "status") ?? "pending", ...(co.error !== undefined ? { error: parseProblem(co.error) } : {}) });
  }
  return { status, identifier: { type: str(id, "type", "the identifier"), value: str(id, "value", "the identifier") }, challenges };
}
