// The shell that keeps the dashboard's ACME certificate current: it owns the
// :80 listener, the timer and the HTTPS requests; what to do and when comes
// from schedule.ts, the protocol from client.ts.
//
//   1. at start and on each timer: load the certificate on disk (store.ts)
//      and ask plan(): wait, or order a new one
//   2. order: a fresh key and CSR, AcmeClient.issue over HTTP-01 (the :80
//      listener answers), the chain checked against the key and the host
//   3. success: write key and chain to the state directory and call
//      `installed` (the dashboard's TLS watcher serves the pair at once)
//   4. failure: log the problem's type and detail, keep serving what is
//      served (an older ACME certificate or the CA-minted one), retry
//      with backoff. Nothing here throws into the dashboard.
import { log } from "../log.ts";
import type { AcmeSettings } from "../policy/types.ts";
import { AcmeClient, type AcmeSend } from "./client.ts";
import { certificateRequest } from "./csr.ts";
import { startHttpListener, type HttpListener } from "./http01.ts";
import { AcmeError } from "./messages.ts";
import { plan, renewalTime, retryDelay, RETRY_BASE_MS } from "./schedule.ts";
import { inspectPair, loadAcmeCertificate, loadOrCreateAccountKey, saveAcmeCertificate } from "./store.ts";

const REQUEST_TIMEOUT_MS = 30_000;

export interface AcmeRenewerOptions {
  /** Read at each order, so a reloaded directory, email or ca_file applies to the next one (http_listen takes a restart). */
  settings: () => AcmeSettings;
  stateDir: string;
  /** public_url's host: the one name certified. */
  host: string;
  publicUrl: () => string;
  /** Called once a new certificate is on disk; resolves when it is served. */
  installed: () => Promise<unknown>;
  now?: () => number;
  random?: () => number;
  /** Default: fetch, trusting settings.caPem when given. */
  send?: AcmeSend;
}

export type CheckOutcome = "issued" | "current" | "failed";

export interface AcmeRenewer {
  /** Runs step 1 now (what the timer does); resolves with what happened. */
  check(): Promise<CheckOutcome>;
  /** The :80 listener's bound port. */
  httpPort: number;
  close(): Promise<void>;
}

export function startAcmeRenewer(o: AcmeRenewerOptions): AcmeRenewer {
  const now = o.now ?? Date.now;
  const random = o.random ?? Math.random;
  const http: HttpListener = startHttpListener(o.settings().httpListen, o.publicUrl);
  let failures = 0;
  let retryAt: number | undefined;
  // The renewal time is drawn once per certificate, so the jitter does not move at every check.
  let drawn: { notAfter: number; renewAt: number } | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let running: Promise<CheckOutcome> | undefined;
  let closed = false;

  const schedule = (ms: number) => {
    if (closed) return;
    clearTimeout(timer);
    timer = setTimeout(() => void check(), Math.max(0, ms));
    timer.unref?.();
  };

  const issue = async (): Promise<CheckOutcome> => {
    const settings = o.settings();
    try {
      const signer = await loadOrCreateAccountKey(o.stateDir);
      const send = o.send ?? fetchSend(settings.caPem);
      const client = new AcmeClient({ directoryUrl: settings.directory, signer, send, sleep: (ms) => Bun.sleep(ms) });
      const { csrDer, keyPem } = await certificateRequest([o.host]);
      const chain = await client.issue({ email: settings.email, names: [o.host], csrDer, responder: http.responder });
      const cert = inspectPair(chain, keyPem);
      if (!cert.names.includes(o.host)) throw new AcmeError({ type: "clawpatrol:acme:wrong-certificate", detail: `the issued certificate names ${cert.names.join(", ")}, not ${o.host}` });
      if (closed) return "failed";
      saveAcmeCertificate(o.stateDir, chain, keyPem);
      failures = 0;
      // No second order within a minute, even if this one were somehow not loadable: never hammer the CA.
      retryAt = now() + RETRY_BASE_MS;
      log.info("ACME certificate issued for the dashboard", { host: o.host, issuer: cert.issuer, not_after: new Date(cert.notAfter).toISOString() });
      await o.installed();
      return "issued";
    } catch (e) {
      failures++;
      const wait = retryDelay(failures, random());
      retryAt = now() + wait;
      const problem = e instanceof AcmeError ? e.problem : { type: "clawpatrol:acme:internal", detail: (e as Error).message };
      log.error("ACME: no certificate issued; the dashboard keeps serving its current one", {
        type: problem.type,
        detail: problem.detail,
        directory: settings.directory,
        failures,
        retry_in_s: Math.round(wait / 1000),
      });
      return "failed";
    }
  };

  const check = (): Promise<CheckOutcome> => {
    if (running) return running;
    // Cleared from outside the body: the "wait" path never awaits, so a finally inside would run before the assignment.
    const p = (async (): Promise<CheckOutcome> => {
      const t = now();
      const cert = loadAcmeCertificate(o.stateDir, o.host, t);
      if (cert && drawn?.notAfter !== cert.notAfter) drawn = { notAfter: cert.notAfter, renewAt: renewalTime(cert, random()) };
      const next = plan(t, cert && drawn ? { ...cert, renewAt: drawn.renewAt } : undefined, retryAt);
      if (next.action === "wait") {
        schedule(next.ms);
        return "current";
      }
      const outcome = await issue();
      // Straight back to plan(): the next renewal, or the retry after a failure.
      schedule(0);
      return outcome;
    })();
    running = p;
    void p.finally(() => {
      if (running === p) running = undefined;
    }).catch(() => {});
    return p;
  };

  schedule(0);
  return {
    check,
    httpPort: http.port,
    async close() {
      closed = true;
      clearTimeout(timer);
      await http.close();
    },
  };
}

/** The real transport: fetch with a timeout, an unreachable server as a problem the log can name. */
export function fetchSend(caPem: string | undefined): AcmeSend {
  return async (req) => {
    let r: Response;
    try {
      r = await fetch(req.url, {
        method: req.method,
        headers: req.headers,
        ...(req.body !== undefined ? { body: req.body } : {}),
        redirect: "manual",
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        ...(caPem !== undefined ? { tls: { ca: caPem } } : {}),
      } as RequestInit);
    } catch (e) {
      throw new AcmeError({ type: "clawpatrol:acme:unreachable", detail: `${req.method} ${req.url}: ${(e as Error).message}` });
    }
    const body = req.method === "HEAD" ? "" : await r.text();
    return { status: r.status, header: (n) => r.headers.get(n), body };
  };
}
