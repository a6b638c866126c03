// Small HTTP pieces shared by the operator routes: the error mapping (one
// place turns an ApiError into `{ error: { code, message } }`), bounded JSON
// bodies, and the client's address for rate limits and the audit trail.
import { Elysia } from "elysia";
import { ApiError, errorBody } from "../errors.ts";

/** An ApiError that also says when to come back (429 + Retry-After). */
export class TooManyAttempts extends ApiError {
  constructor(readonly retryAfterS: number) {
    super(429, "rate_limited", `too many failed attempts; try again in ${retryAfterS} s`);
  }
}

export const MAX_BODY = 64 * 1024;

export type ServerLike = { requestIP(r: Request): { address: string } | null } | null;
export type ClientIp = (request: Request, server: ServerLike) => string;

/** The peer address of the connection (behind a reverse proxy, pass one that reads its header). */
export const peerAddress: ClientIp = (request, server) => server?.requestIP(request)?.address ?? "unknown";

/** A fresh Elysia with the error mapping as a local hook (each route group gets its own). */
export function withErrors() {
  return new Elysia().onError(({ error, code, set }) => {
    if (error instanceof TooManyAttempts) {
      set.status = error.status;
      set.headers["retry-after"] = String(error.retryAfterS);
      return errorBody(error);
    }
    if (error instanceof ApiError) {
      set.status = error.status;
      return errorBody(error);
    }
    if (error instanceof RangeError) {
      set.status = 400;
      return errorBody(new ApiError(400, "bad_request", error.message));
    }
    if (code === "PARSE" || code === "VALIDATION") {
      set.status = 400;
      return errorBody(new ApiError(400, "bad_request", "the body must be a JSON object"));
    }
    return undefined;
  });
}

/** The JSON object body (or {} when empty), at most `limit` bytes. */
export async function readJson(request: Request, limit = MAX_BODY): Promise<Record<string, unknown>> {
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > limit) throw new ApiError(413, "body_too_large", `the body is limited to ${limit} bytes`);
  const buf = await request.arrayBuffer();
  if (buf.byteLength > limit) throw new ApiError(413, "body_too_large", `the body is limited to ${limit} bytes`);
  if (buf.byteLength === 0) return {};
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder().decode(buf));
  } catch {
    throw new ApiError(400, "bad_request", "the body must be a JSON object");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new ApiError(400, "bad_request", "the body must be a JSON object");
  return v as Record<string, unknown>;
}

/** A JSON response that is never cached (it may carry a CSRF token or a one-time secret). */
export function noStoreJson(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store", ...headers },
  });
}
