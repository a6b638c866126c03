// The dashboard role assembled (`clawpatrol-gateway dashboard`): the public
// API on `dashboard_listen` in its own process.
//
//   served here:      the web dashboard, client downloads, operator login
//                     and the operator API (sessions, tokens, audit, the
//                     action log: the state database, shared in WAL mode)
//   from the gateway: held requests and live events (a mirror stream), and
//                     every change it must act on (remote.ts)
//   forwarded whole:  the device routes (/api/onboard/start|poll,
//                     /api/device/*) and chat approvers' callbacks
//                     (/api/approvers/*), to the gateway's control socket
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Elysia } from "elysia";
import type { Policy } from "../policy/types.ts";
import { loadPolicy, formatConfigError } from "../policy/load.ts";
import { watchPolicy } from "../policy/reload.ts";
import { openStateDb } from "../store/db.ts";
import { operatorApi } from "./api/index.ts";
import { ConfigEditor } from "./config/editor.ts";
import { downloadRoutes } from "./downloads.ts";
import { dashboardRoutes } from "../dashboard/routes.ts";
import { forwardToControl, startPublicServer, type PublicServer } from "./public.ts";
import { GatewayMirror, remoteDeviceOps, remoteMetrics, remoteOnboardingOps, remoteReload } from "./remote.ts";
import { ConfigRejected } from "../gateway.ts";
import { remoteKillOps } from "../gate/kill-routes.ts";
import { log } from "../log.ts";
import { loadOrCreateCA } from "../tls/ca.ts";
import { loadDashboardTls, watchDashboardTls, type TlsPair } from "../tls/dashboard-tls.ts";
import { publicHost } from "../acme/config.ts";
import { startAcmeRenewer, type AcmeRenewer } from "../acme/renewer.ts";

export interface DashboardOptions {
  configPath: string;
  env?: Record<string, string | undefined>;
  /** Watch the config for changes (default true). */
  watch?: boolean;
  /** Where the client binaries are (default: dist/ beside app/). */
  downloadsDir?: string;
  /** The clock certificate checks and ACME renewal read (tests move it). */
  now?: () => number;
}

export interface RunningDashboard {
  policy(): Policy;
  server: PublicServer;
  mirror: GatewayMirror;
  /** `dashboard_tls { acme {} }`: the renewer and its :80 listener. */
  acme?: AcmeRenewer;
  close(): Promise<void>;
}

/** The peer address of a public request, for rate limits and the gateway's onboarding records. */
function peer(request: Request, server: unknown): string {
  const s = server as { requestIP?(r: Request): { address: string } | null } | null;
  return s?.requestIP?.(request)?.address ?? "unknown";
}

export async function startDashboard(opts: DashboardOptions): Promise<RunningDashboard> {
  const env = opts.env ?? process.env;
  const now = opts.now ?? Date.now;
  const first = await loadPolicy(opts.configPath, { env });
  if (!first.ok) throw new ConfigRejected(first.errors.map(formatConfigError));
  let policy = first.policy;
  const socket = policy.gateway.controlSocket;
  const db = openStateDb(policy.gateway.stateDir);
  const mirror = new GatewayMirror(socket);
  const metrics = remoteMetrics(socket);
  const forward = forwardToControl(socket);
  const tlsMode = policy.gateway.dashboardTls?.kind ?? "none";
  let caPem: string;
  let tls: TlsPair | undefined;
  try {
    // The CA devices pin at first contact (/ca.crt); the gateway or first boot made it.
    caPem = (await loadOrCreateCA(policy.gateway.stateDir)).certPem;
    tls = await loadDashboardTls(policy.gateway, now);
  } catch (e) {
    metrics.close();
    mirror.close();
    db.close();
    throw e;
  }

  const watcher =
    opts.watch === false
      ? undefined
      : watchPolicy(
          opts.configPath,
          {
            onPolicy: (next) => {
              if (
                next.gateway.dashboardListen !== policy.gateway.dashboardListen ||
                next.gateway.controlSocket !== socket ||
                (next.gateway.dashboardTls?.kind ?? "none") !== tlsMode
              ) {
                log.warn("dashboard_listen, control_socket and turning dashboard_tls on or off take effect when the dashboard restarts");
              }
              policy = next;
            },
            onErrors: (errors) => log.error(`config rejected, keeping the last good policy:\n  ${errors.map(formatConfigError).join("\n  ")}`),
          },
          { env },
        );

  const forwarded = ({ request, server }: { request: Request; server: unknown }) => forward(request, peer(request, server));
  // Device-facing routes: present when the gateway runs WireGuard onboarding (it answers 404 otherwise).
  const deviceRoutes = new Elysia({ name: "forwarded-device-routes" })
    .post("/api/onboard/start", forwarded, { parse: "none" })
    .post("/api/onboard/poll", forwarded, { parse: "none" })
    .get("/api/device/*", forwarded)
    .post("/api/device/*", forwarded, { parse: "none" })
    .delete("/api/device/*", forwarded, { parse: "none" });

  let server: PublicServer;
  try {
    server = startPublicServer(policy.gateway.dashboardListen, {
      plugins: [
        deviceRoutes,
        downloadRoutes({
          dir: opts.downloadsDir ?? path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "dist"),
          publicUrl: () => policy.gateway.publicUrl,
          caCertPem: () => caPem,
          tlsMode: () => tlsMode,
        }),
        operatorApi({
          db,
          hub: mirror.hub,
          bus: mirror.bus,
          devices: remoteDeviceOps(socket, db),
          ...(policy.gateway.wireguard ? { onboarding: remoteOnboardingOps(socket, db, Date.now) } : {}),
          policy: () => policy,
          reload: remoteReload(socket),
          // Written here, reloaded by the gateway (which also sees the files change).
          config: new ConfigEditor({ configPath: opts.configPath, env, reload: remoteReload(socket) }),
          kill: remoteKillOps(socket),
          now: Date.now,
          metrics: () => metrics.text(),
        }),
        dashboardRoutes(),
      ],
      approverCallback: (request) => forward(request, "chat-callback"),
    }, tls);
  } catch (e) {
    watcher?.close();
    mirror.close();
    metrics.close();
    db.close();
    throw e;
  }

  // A renewed minted certificate or an edited cert_file is served without a restart.
  const tlsWatcher = tls ? watchDashboardTls(() => policy.gateway, tls, (next) => server.replaceTls(next), { now }) : undefined;
  // ACME: a new certificate on disk is served through the watcher's check; failures only log.
  const acmeSettings = policy.gateway.dashboardTls?.kind === "acme" ? policy.gateway.dashboardTls : undefined;
  const acmeHost = publicHost(policy.gateway.publicUrl);
  let acme: AcmeRenewer | undefined;
  if (acmeSettings && acmeHost && tlsWatcher) {
    try {
      acme = startAcmeRenewer({
        // A reload that keeps acme {} changes the next order; one that drops it takes a restart (warned above).
        settings: () => (policy.gateway.dashboardTls?.kind === "acme" ? policy.gateway.dashboardTls : acmeSettings),
        stateDir: policy.gateway.stateDir,
        host: acmeHost,
        publicUrl: () => policy.gateway.publicUrl ?? `https://${acmeHost}`,
        installed: () => tlsWatcher.check(),
        now,
      });
    } catch (e) {
      // :80 taken or refused: the dashboard still serves (the CA-minted certificate), and says why.
      log.error("ACME: cannot open the HTTP-01 listener; no certificate will be ordered until the dashboard restarts", { listen: acmeSettings.httpListen, error: (e as Error).message });
    }
  }
  let closed = false;
  return {
    policy: () => policy,
    server,
    mirror,
    ...(acme ? { acme } : {}),
    async close() {
      if (closed) return;
      closed = true;
      await acme?.close();
      tlsWatcher?.close();
      watcher?.close();
      mirror.close();
      metrics.close();
      await server.close();
      db.close();
    },
  };
}
