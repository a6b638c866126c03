// The operator's gate list: `gate = [...]` on the device's profile, read
// from the manifest inside the tunnel when the run starts (so the operator
// decides what is gated, whatever --gate the agent's launcher passed).
export const MANIFEST_URL = "https://clawpatrol.internal/manifest?format=json";

/** The profile's gate list; undefined when the manifest could not be read within `ms`. */
export async function profileGate(caCert: string, ms = 8_000, url = MANIFEST_URL): Promise<string[] | undefined> {
  const m = await readManifest(caCert, ms, url);
  return m === undefined ? undefined : gateOf(m);
}

/** The gate list of a manifest read already. */
export function gateOf(m: Record<string, unknown>): string[] {
  return Array.isArray(m.gate) ? m.gate.filter((n): n is string => typeof n === "string") : [];
}

/** The device's manifest as JSON; undefined when it could not be read within `ms`. */
export async function readManifest(caCert: string, ms = 8_000, url = MANIFEST_URL): Promise<Record<string, unknown> | undefined> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      const res = await fetch(url, { tls: { ca: caCert }, signal: AbortSignal.timeout(Math.max(500, end - Date.now())) } as RequestInit);
      if (res.status === 200) {
        const m = (await res.json()) as unknown;
        return typeof m === "object" && m !== null ? (m as Record<string, unknown>) : {};
      }
    } catch {
      /* the tunnel may not carry packets yet */
    }
    if (Date.now() > end) return undefined;
    await Bun.sleep(200);
  }
}
