// The public API (the dashboard role's listener): the routes that need no
// operator session — health, device onboarding, chat services' approval
// callbacks — next to the dashboard and its authenticated API (plugins).
//
// In the gateway process (`all`) the callbacks are answered in place; in the
// dashboard role they, and the device routes, are forwarded verbatim to the
// gateway over the control socket (forwardToControl), where the holds and the
// WireGuard peers live.
import { Elysia, type AnyElysia } from "elysia";
import type { ApproverRoute } from "../approvers/types.ts";
import { parseListen } from "../net/proxy/listener.ts";
import { ApiError, errorBody } from "./errors.ts";
import { controlFetch, ControlUnavailable } from "./client.ts";

/** Answers one chat-approver callback (`/api/approvers/*`). */
export type ApproverCallback = (request: Request) => Response | Promise<Response>;

export interface PublicDeps {
  /** Extra route groups (onboarding). */
  plugins: AnyElysia[];
  /** Chat approvers' callbacks (`/api/approvers/*`)... */
  approverCallback?: ApproverCallback;
  /** ...or this process's approvers' routes (read per request). One of the two. */
  approverRoutes?(): ApproverRoute[];
}

/** Callbacks answered by this process's approvers; routes read per request, since the policy reloads. */
export function localApproverCallback(routes: () => ApproverRoute[]): ApproverCallback {
  return (request) => {
    const url = new URL(request.url);
    const route = routes().find((r) => r.method === request.method && r.path === url.pathname);
    if (!route) throw new ApiError(404, "not_found", "no such approver callback");
    return route.handler(request);
  };
}

/** Header that carries a public request's client address over the control socket (set only by forwardToControl). */
export const CLIENT_IP_HEADER = "x-clawpatrol-client-ip";
/** ...and the host it addressed (its Host header), which the forwarded request loses. */
export const CLIENT_HOST_HEADER = "x-clawpatrol-client-host";
const HOP_BY_HOP = ["host", "connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection", "content-length", CLIENT_IP_HEADER, CLIENT_HOST_HEADER];
/** Public request bodies forwarded are bounded (onboarding takes 4 KiB, chat callbacks a few). */
export const MAX_FORWARDED_BODY = 1 << 20;

/** Forwards a public request to the gateway's control socket as it came (method, path, headers, body), with the client address. */
export function forwardToControl(socketPath: string) {
  return async (request: Request, clientIp: string): Promise<Response> => {
    const url = new URL(request.url);
    const headers = new Headers(request.headers);
    for (const h of HOP_BY_HOP) headers.delete(h);
    headers.set(CLIENT_IP_HEADER, clientIp);
    headers.set(CLIENT_HOST_HEADER, url.host);
    let body: ArrayBuffer | undefined;
    if (request.method !== "GET" && request.method !== "HEAD") {
      if (Number(request.headers.get("content-length") ?? "0") > MAX_FORWARDED_BODY) {
        throw new ApiError(413, "body_too_large", `the body is limited to ${MAX_FORWARDED_BODY} bytes`);
      }
      body = await request.arrayBuffer();
      if (body.byteLength > MAX_FORWARDED_BODY) throw new ApiError(413, "body_too_large", `the body is limited to ${MAX_FORWARDED_BODY} bytes`);
    }
    let res: Response;
    try {
      res = await controlFetch(socketPath, url.pathname + url.search, {
        method: request.method,
        headers,
        signal: request.signal,
        ...(body !== undefined ? { body } : {}),
      });
    } catch (e) {
      if (e instanceof ControlUnavailable) throw new ApiError(503, "gateway_unavailable", "the gateway is not reachable; try again shortly");
      throw e;
    }
    const out = new Headers(res.headers);
    for (const h of ["content-length", "content-encoding", "transfer-encoding", "connection"]) out.delete(h);
    return new Response(res.body, { status: res.status, headers: out });
  };
}

export function publicApp(deps: PublicDeps) {
  let app = new Elysia()
    .onError(({ error, set }) => {
      if (error instanceof ApiError) {
        set.status = error.status;
        return errorBody(error);
      }
      return undefined;
    })
    .get("/health", () => ({ ok: true }));
  for (const p of deps.plugins) app = app.use(p) as unknown as typeof app;
  const callback = deps.approverCallback ?? localApproverCallback(deps.approverRoutes ?? (() => []));
  const approverCallback = ({ request }: { request: Request }) => callback(request);
  return app.post("/api/approvers/*", approverCallback, { parse: "none" }).get("/api/approvers/*", approverCallback);
}

/** PEM text the listener serves (`dashboard_tls`); absent: plain HTTP. */
export interface PublicTls {
  certPem: string;
  keyPem: string;
}

export interface PublicServer {
  address: { host: string; port: number };
  /** "https" when serving TLS. */
  scheme: "http" | "https";
  /** Serves another certificate: the listener is closed and opened again on the same address (open streams drop). */
  replaceTls(tls: PublicTls): Promise<void>;
  close(): Promise<void>;
}

export function startPublicServer(listen: string, deps: PublicDeps, tls?: PublicTls): PublicServer {
  const { host, port } = parseListen(listen);
  const app = publicApp(deps);
  const open = (p: number, t: PublicTls | undefined) =>
    app.listen({ hostname: host, port: p, ...(t ? { tls: { cert: t.certPem, key: t.keyPem } } : {}) });
  let served = tls;
  open(port, tls);
  const bound = app.server!.port ?? port;
  return {
    address: { host, port: bound },
    scheme: tls ? "https" : "http",
    async replaceTls(next) {
      if (!served) throw new Error("this listener serves plain HTTP; TLS takes a restart");
      await app.stop(true);
      try {
        open(bound, next);
        served = next;
      } catch (e) {
        open(bound, served); // the new pair was refused: keep serving the old one
        throw e;
      }
    },
    async close() {
      // Abruptly: open event streams (SSE) would otherwise hold the stop forever.
      await app.stop(true);
    },
  };
}
