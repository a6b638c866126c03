// The operator's gate list: `gate = [...]` on the device's profile, read
// from the manifest inside the tunnel when the run starts (so the operator
// decides what is gated, whatever --gate the agent's launcher passed).
export const MANIFEST_URL = "https://clawpatrol.internal/manifest?format=json";

/** The profile's gate list; undefined when the manifest could not be read within `ms`. */
export async function profileGate(caCert: string, ms = 8_000, url = MANIFEST_URL): Promise<string[] | undefined> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      const res = await fetch(url, { tls: { ca: caCert }, signal: AbortSignal.timeout(Math.max(500, end - Date.now())) } as RequestInit);
      if (res.status === 200) {
        const m = (await res.json()) as { gate?: unknown };
        return Array.isArray(m.gate) ? m.gate.filter((n): n is string => typeof n === "string") : [];
      }
    } catch {
      /* the tunnel may not carry packets yet */
    }
    if (Date.now() > end) return undefined;
    await Bun.sleep(200);
  }
}
