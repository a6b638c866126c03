// The public API (the dashboard role's listener): the routes that need no
// operator session — health, device onboarding, chat services' approval
// callbacks. The dashboard and its authenticated API join it later.
import { Elysia, type AnyElysia } from "elysia";
import type { ApproverRoute } from "../approvers/types.ts";
import { parseListen } from "../net/proxy/listener.ts";
import { ApiError, errorBody } from "./errors.ts";

export interface PublicDeps {
  /** Extra route groups (onboarding). */
  plugins: AnyElysia[];
  /** Chat approvers' callback routes; read per request, since the policy reloads. */
  approverRoutes(): ApproverRoute[];
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
  const approverCallback = ({ request }: { request: Request }) => {
    const url = new URL(request.url);
    const route = deps.approverRoutes().find((r) => r.method === request.method && r.path === url.pathname);
    if (!route) throw new ApiError(404, "not_found", "no such approver callback");
    return route.handler(request);
  };
  return app.post("/api/approvers/*", approverCallback).get("/api/approvers/*", approverCallback);
}

export interface PublicServer {
  address: { host: string; port: number };
  close(): Promise<void>;
}

export function startPublicServer(listen: string, deps: PublicDeps): PublicServer {
  const { host, port } = parseListen(listen);
  const app = publicApp(deps);
  app.listen({ hostname: host, port });
  const server = app.server!;
  return {
    address: { host, port: server.port ?? port },
    async close() {
      await app.stop();
    },
  };
}
