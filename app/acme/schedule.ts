// When to ask the ACME CA next, as pure functions of the clock (passed in)
// and a random draw (passed in), so the renewal policy is tested without
// waiting:
//   - a certificate is renewed once a third of its lifetime is left, less a
//     jitter of up to JITTER_FRACTION of the lifetime so a fleet of
//     appliances set up together does not renew in the same minute;
//   - a failure is retried after RETRY_BASE_MS doubled per failure, up to
//     RETRY_MAX_MS, each scaled by 0.5–1.0 (jitter); the served certificate
//     stays in place meanwhile;
//   - no wait is longer than CHECK_MAX_MS: a timer across a suspend or a
//     clock step is corrected soon.

export const RENEW_WHEN_LEFT = 1 / 3;
export const JITTER_FRACTION = 0.05;
export const RETRY_BASE_MS = 60_000;
export const RETRY_MAX_MS = 6 * 60 * 60 * 1000;
export const CHECK_MAX_MS = 60 * 60 * 1000;

export interface Validity {
  notBefore: number;
  notAfter: number;
}

/** The moment `cert` is due for renewal; `random` in [0, 1). */
export function renewalTime(cert: Validity, random: number): number {
  const lifetime = Math.max(0, cert.notAfter - cert.notBefore);
  return cert.notAfter - lifetime * RENEW_WHEN_LEFT - lifetime * JITTER_FRACTION * random;
}

/** How long to wait after the `failures`-th failure in a row (1, 2, …). */
export function retryDelay(failures: number, random: number): number {
  const full = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.max(0, Math.min(30, failures - 1)));
  return Math.round(full * (0.5 + random / 2));
}

export type Plan = { action: "issue" } | { action: "wait"; ms: number };

/**
 * What to do now. `cert`: the ACME certificate served (undefined: none yet);
 * `renewAt`: its renewal time drawn once when it was loaded; `retryAt`: set
 * after a failure.
 */
export function plan(now: number, cert: (Validity & { renewAt: number }) | undefined, retryAt: number | undefined): Plan {
  if (retryAt !== undefined && now < retryAt) return { action: "wait", ms: Math.min(retryAt - now, CHECK_MAX_MS) };
  if (cert === undefined || now >= cert.renewAt) return { action: "issue" };
  return { action: "wait", ms: Math.min(cert.renewAt - now, CHECK_MAX_MS) };
}
