// A plain-TCP upstream on Bun's native socket (Bun.connect) instead of
// node:net: its data callback and write are direct calls into the runtime,
// without the stream machinery node:net's Duplex adds to every read and
// write (about 2 µs of the gateway's CPU per message, measured on this
// path). It speaks the small part of the Duplex API the database shell uses
// (db-shell.ts's UpstreamStream: data, close, error, drain, write, pause, resume, end, destroy),
// so the shell drives it and a node:net or TLS socket alike.
//
// Writes: Bun's write takes what the kernel accepts now and returns the
// count; the rest is queued here, in order, and `drain` is emitted once the
// queue is empty again, as a Duplex does after write() returned false.
import { EventEmitter } from "node:events";
import type { Socket, TCPSocketConnectOptions } from "bun";
import { RELAY_KEEPALIVE_MS } from "../relay.ts";
import type { UpstreamStream } from "../db-shell.ts";

export type { UpstreamStream };

/** Bun's socket has pause/resume at runtime (not in its type declarations). */
type PausableSocket = Socket<undefined> & { pause(): void; resume(): void };

export class NativeUpstream extends EventEmitter implements UpstreamStream {
  private sock: PausableSocket | undefined;
  private readonly queued: Uint8Array[] = [];
  private endWhenFlushed = false;
  private closed = false;
  private paused = false;

  /** Dials host:port; rejects on a failed connect or after `timeoutMs`. */
  static connect(host: string, port: number, timeoutMs: number): Promise<NativeUpstream> {
    const up = new NativeUpstream();
    return new Promise((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        up.destroy();
        reject(new Error(`no answer from ${host}:${port} within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      const options: TCPSocketConnectOptions<undefined> = {
        hostname: host,
        port,
        socket: {
          open: (s) => {
            const sock = s as PausableSocket;
            if (settled) {
              sock.terminate();
              return;
            }
            settled = true;
            clearTimeout(timer);
            sock.setNoDelay(true);
            sock.setKeepAlive(true, RELAY_KEEPALIVE_MS);
            up.sock = sock;
            // Nothing is read until the shell has its handlers on (resume()).
            sock.pause();
            up.paused = true;
            resolve(up);
          },
          data: (_s, data) => {
            up.emit("data", data);
          },
          drain: () => up.flush(),
          end: () => {
            up.sock?.end();
          },
          close: () => up.onClose(),
          error: (_s, e) => {
            // As a Duplex would, but an error with no listener yet must not throw into Bun's callback.
            if (up.listenerCount("error") > 0) up.emit("error", e);
          },
          connectError: (_s, e) => {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            reject(e);
          },
        },
      };
      Bun.connect(options).catch((e: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(e);
      });
    });
  }

  write(data: Uint8Array): boolean {
    const sock = this.sock;
    if (this.closed || !sock) return false;
    if (this.queued.length > 0) {
      this.queued.push(data);
      return false;
    }
    const n = sock.write(data);
    if (n >= data.length) return true;
    this.queued.push(n > 0 ? data.subarray(n) : data);
    return false;
  }

  pause(): this {
    if (!this.paused && this.sock) this.sock.pause();
    this.paused = true;
    return this;
  }

  resume(): this {
    if (this.paused && this.sock) this.sock.resume();
    this.paused = false;
    return this;
  }

  /** Half-closes after `last` (if given) and everything queued before it have gone. */
  end(last?: Uint8Array): this {
    if (this.closed) return this;
    if (last !== undefined) this.write(last);
    if (this.queued.length > 0) this.endWhenFlushed = true;
    else this.sock?.end();
    return this;
  }

  destroy(): this {
    if (this.closed) return this;
    this.queued.length = 0;
    this.sock?.terminate();
    return this;
  }

  private flush(): void {
    const sock = this.sock;
    while (sock && this.queued.length > 0) {
      const head = this.queued[0]!;
      const n = sock.write(head);
      if (n < head.length) {
        if (n > 0) this.queued[0] = head.subarray(n);
        return;
      }
      this.queued.shift();
    }
    if (this.endWhenFlushed) {
      this.endWhenFlushed = false;
      sock?.end();
    }
    this.emit("drain");
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.queued.length = 0;
    this.emit("close");
  }
}
