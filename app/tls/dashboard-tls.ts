// The certificate the dashboard's listener serves (`gateway { dashboard_tls }`),
// and keeping it current while the dashboard runs:
//
//   load   files: read cert_file and key_file as they are now;
//          mint_from_ca: ensureDashboardCert for the current names (the
//          host of public_url, the listen address or the machine's
//          addresses), minted again when they change or near expiry.
//          acme: the certificate the ACME CA issued (app/acme/), when there
//          is a good one on disk; else the minted one, as above.
//   watch  every CHECK_INTERVAL_MS load again; when the pair differs from
//          the one served, hand it to the listener (which reopens its port).
//          A failed load is logged and the served pair kept: fail closed
//          means "keep TLS", never "fall back to plain HTTP".
import { readFile } from "node:fs/promises";
import nodeTls from "node:tls";
import type { GatewaySettings } from "../policy/types.ts";
import { loadOrCreateCA } from "./ca.ts";
import { dashboardCertNames, ensureDashboardCert } from "./dashboard-cert.ts";
import { log } from "../log.ts";
import { publicHost } from "../acme/config.ts";
import { loadAcmeCertificate } from "../acme/store.ts";

export interface TlsPair {
  certPem: string;
  keyPem: string;
}

// Cheap when nothing changed (read, compare); short so a DHCP address that arrives late is covered soon.
export const CHECK_INTERVAL_MS = 5 * 60 * 1000;

/** The pair to serve for these settings, or undefined when the dashboard speaks plain HTTP. */
export async function loadDashboardTls(g: GatewaySettings, now: () => number = Date.now): Promise<TlsPair | undefined> {
  const tls = g.dashboardTls;
  if (!tls) return undefined;
  if (tls.kind === "files") {
    const [certPem, keyPem] = await Promise.all([readFile(tls.certFile, "utf8"), readFile(tls.keyFile, "utf8")]);
    // Throws on a key that does not match the certificate (a half-done edit): keep serving the old pair.
    nodeTls.createSecureContext({ cert: certPem, key: keyPem });
    return { certPem, keyPem };
  }
  if (tls.kind === "acme") {
    // The ACME CA's certificate once there is one; until then (and if it lapses) the CA-minted one below.
    const host = publicHost(g.publicUrl);
    const issued = host ? loadAcmeCertificate(g.stateDir, host, now()) : undefined;
    if (issued) return { certPem: issued.certPem, keyPem: issued.keyPem };
  }
  const ca = await loadOrCreateCA(g.stateDir);
  const names = dashboardCertNames({ listen: g.dashboardListen, ...(g.publicUrl ? { publicUrl: g.publicUrl } : {}) });
  const cert = await ensureDashboardCert({ stateDir: g.stateDir, ca, names, now });
  if (cert.minted) log.info("dashboard certificate minted from the gateway CA", { file: cert.certFile, names: cert.names.join(","), not_after: new Date(cert.notAfter).toISOString() });
  return { certPem: cert.certPem, keyPem: cert.keyPem };
}

export interface TlsWatcher {
  /** Loads once now (what the timer does); resolves true when the served pair changed. */
  check(): Promise<boolean>;
  close(): void;
}

/** Re-loads the pair periodically and hands a changed one to `replace`. */
export function watchDashboardTls(
  settings: () => GatewaySettings,
  served: TlsPair,
  replace: (next: TlsPair) => Promise<void>,
  opts: { intervalMs?: number; now?: () => number } = {},
): TlsWatcher {
  let current = served;
  let running: Promise<boolean> | undefined;
  const check = (): Promise<boolean> => {
    running ??= (async () => {
      try {
        const next = await loadDashboardTls(settings(), opts.now);
        if (!next || (next.certPem === current.certPem && next.keyPem === current.keyPem)) return false;
        await replace(next);
        current = next;
        log.info("dashboard TLS certificate replaced");
        return true;
      } catch (e) {
        log.error("dashboard TLS certificate could not be reloaded; serving the previous one", { error: (e as Error).message });
        return false;
      } finally {
        running = undefined;
      }
    })();
    return running;
  };
  const timer = setInterval(() => void check(), opts.intervalMs ?? CHECK_INTERVAL_MS);
  timer.unref?.();
  return { check, close: () => clearInterval(timer) };
}
