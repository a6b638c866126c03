// The run's ear for the kill switch: the inner stage long-polls
// GET https://clawpatrol.internal/gate/kill inside the tunnel (with the
// warden's proof), and hears at once when an operator stops this device
// (`clawpatrol-gateway devices kill NAME`, the dashboard, the API). The
// caller then ends the run. A gateway without the route (404) or one that
// does not take the proof (403) is asked again rarely; an unreachable one
// (the tunnel not carrying packets yet) again soon.
export const KILL_API = "https://clawpatrol.internal/gate/kill";
const WAIT_S = 20;
const RETRY_MS = 2_000;
const RARELY_MS = 30_000;

export interface KillWatchOptions {
  caCert: string;
  proof: string;
  onKill(line: string): void;
  api?: string;
}

export function watchKillSwitch(o: KillWatchOptions): { stop(): void } {
  let stopped = false;
  let abort: AbortController | undefined;
  void (async () => {
    while (!stopped) {
      abort = new AbortController();
      const timer = setTimeout(() => abort?.abort(), (WAIT_S + 10) * 1000);
      let pause = 0;
      try {
        const res = await fetch(`${o.api ?? KILL_API}?wait=${WAIT_S}`, {
          headers: { authorization: `Bearer ${o.proof}` },
          signal: abort.signal,
          tls: { ca: o.caCert },
        } as RequestInit);
        if (res.status === 200) {
          const v = (await res.json()) as { kill?: unknown; line?: unknown };
          if (v.kill === true && !stopped) {
            stopped = true;
            o.onKill(typeof v.line === "string" ? v.line : "the kill switch is on");
            return;
          }
        } else {
          await res.body?.cancel();
          pause = RARELY_MS;
        }
      } catch {
        pause = RETRY_MS;
      } finally {
        clearTimeout(timer);
      }
      if (pause > 0 && !stopped) await Bun.sleep(pause);
    }
  })();
  return {
    stop() {
      stopped = true;
      abort?.abort();
    },
  };
}
