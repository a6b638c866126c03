// HTTP/2 toward the upstream, for an h2 agent's streams: one multiplexed
// session per pool key, kept beside the HTTP/1.1 pool. The first stream to
// a key dials offering h2 and http/1.1; an upstream that picks http/1.1 is
// remembered as such and its connection used as a pooled HTTP/1.1 one, so
// an h2 agent is served by either kind of upstream.
import http2 from "node:http2";
import { UpstreamPool, type DialTarget, type UpstreamConn } from "./upstream.ts";

/** Idle h2 upstream sessions close after this long. */
const SESSION_IDLE_MS = 60_000;

export type UpstreamChoice = { kind: "h2"; session: http2.ClientHttp2Session } | { kind: "h1"; conn: UpstreamConn };

export class H2Upstreams {
  private readonly sessions = new Map<string, Promise<UpstreamChoice>>();
  /** Keys whose upstream chose http/1.1: dialled as before, without offering h2. */
  private readonly h1Only = new Set<string>();

  constructor(private readonly pool: UpstreamPool) {
    pool.onCloseAll(() => this.closeAll());
  }

  /** An h2 session to the target when it speaks h2, else an HTTP/1.1 connection (pooled or new). */
  async take(t: DialTarget): Promise<UpstreamChoice> {
    const key = UpstreamPool.keyOf(t);
    if (this.h1Only.has(key)) return { kind: "h1", conn: this.pool.takeIdle(t) ?? (await this.pool.dial(t)) };
    const live = this.sessions.get(key);
    if (live) {
      const c = await live.catch(() => undefined);
      if (c?.kind === "h2" && !c.session.closed && !c.session.destroyed) return c;
      if (this.sessions.get(key) === live) this.sessions.delete(key);
    }
    const idle = this.pool.takeIdle(t);
    if (idle) return { kind: "h1", conn: idle };
    const dialing = this.dial(t, key);
    this.sessions.set(key, dialing);
    const c = await dialing.catch((e: Error) => {
      if (this.sessions.get(key) === dialing) this.sessions.delete(key);
      throw e;
    });
    // An h1 connection is this stream's alone; the next stream asks again.
    if (c.kind === "h1" && this.sessions.get(key) === dialing) this.sessions.delete(key);
    return c;
  }

  private async dial(t: DialTarget, key: string): Promise<UpstreamChoice> {
    const conn = await this.pool.dial(t, ["h2", "http/1.1"]);
    // Only a TLS upstream can have chosen h2 (a plain one is never offered it).
    if ((conn.sock as Partial<import("node:tls").TLSSocket>).alpnProtocol !== "h2") {
      this.h1Only.add(key);
      return { kind: "h1", conn };
    }
    const sock = conn.sock;
    // The socket belongs to the session from here: the pool's puller must not read it.
    sock.removeAllListeners("data");
    sock.removeAllListeners("end");
    const session = http2.connect(`https://${t.sni}:${t.port}`, { createConnection: () => sock });
    sock.resume();
    session.on("error", () => undefined);
    session.setTimeout(SESSION_IDLE_MS, () => session.close());
    const forget = () => {
      const cur = this.sessions.get(key);
      void cur?.then((c) => {
        if (c.kind === "h2" && c.session === session && this.sessions.get(key) === cur) this.sessions.delete(key);
      });
    };
    session.on("close", forget);
    session.on("goaway", forget);
    return { kind: "h2", session };
  }

  closeAll(): void {
    for (const p of this.sessions.values()) void p.then((c) => (c.kind === "h2" ? c.session.destroy() : undefined), () => undefined);
    this.sessions.clear();
  }
}

const byPool = new WeakMap<UpstreamPool, H2Upstreams>();

/** The h2 sessions kept beside `pool` (one set per gateway). */
export function h2UpstreamsOf(pool: UpstreamPool): H2Upstreams {
  let u = byPool.get(pool);
  if (!u) {
    u = new H2Upstreams(pool);
    byPool.set(pool, u);
  }
  return u;
}
