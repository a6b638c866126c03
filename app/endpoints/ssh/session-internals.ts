// What the gateway needs from an ssh2 server session that ssh2's public API
// does not give, in this one module (ssh2 1.17's internals: its Protocol,
// its channel table, a Session's _ending/_channel/_chanInfo):
//   1. answering a request after the agent already sent EOF: OpenSSH sends
//      exec and then EOF at once when stdin is empty (`ssh host cmd </dev/null`),
//      and ssh2 then refuses to accept or reject, but the request is judged
//      (and its upstream opened) before it is answered;
//   2. keeping what the agent sends before its exec is answered: OpenSSH
//      sends stdin as soon as the session is open, and ssh2 drops data on a
//      session with no Channel yet; a stand-in holds it (no window adjust,
//      so at most one window, 2 MiB) and the real Channel gets it first;
//   3. a line on the stderr of a session whose request is refused: it has
//      no Channel in ssh2 to write it with.
import type { Connection, ServerChannel, Session } from "ssh2";

/** SSH_EXTENDED_DATA_STDERR (RFC 4254 §5.2). */
const EXTENDED_DATA_STDERR = 1;

interface ConnectionInternals {
  _protocol: {
    channelExtData(channel: number, data: Buffer, type: number): void;
    channelEOF(channel: number): void;
    channelClose(channel: number): void;
    channelWindowAdjust(channel: number, amount: number): void;
  };
  _chanMgr: { remove(id: number): void };
}
interface SessionInternals {
  _ending: boolean;
  _channel: unknown;
  _chanInfo: { incoming: { id: number; state: string; window: number }; outgoing: { id: number; state: string } };
}

/** ssh2's MAX_WINDOW (lib/Channel.js): what a channel offers, and tops up to. */
const MAX_WINDOW = 2 * 1024 * 1024;

/** Sits in a session's `_channel` until the real Channel exists: holds the agent's early data and EOF. */
class EarlyData {
  readonly server = true;
  readonly readable = true;
  readonly chunks: Buffer[] = [];
  ended = false;
  constructor(readonly incoming: SessionInternals["_chanInfo"]["incoming"]) {}
  /** CHANNEL_DATA pushes here; false keeps ssh2 from adjusting the window (the agent waits once it is used up). */
  push(data: Buffer | null): boolean {
    if (data === null) this.ended = true;
    else this.chunks.push(data);
    return false;
  }
}
interface ChannelInternals {
  incoming: { state: string };
}

export class SessionHandle {
  #eof = false;
  #closed = false;
  readonly #s: SessionInternals;
  readonly #c: ConnectionInternals;
  readonly #early: EarlyData;

  constructor(
    conn: Connection,
    private readonly session: Session,
  ) {
    this.#s = session as unknown as SessionInternals;
    this.#c = conn as unknown as ConnectionInternals;
    this.#early = new EarlyData(this.#s._chanInfo.incoming);
    this.#s._channel = this.#early;
    session.on("eof", () => {
      this.#eof = true;
    });
    session.on("close", () => {
      this.#closed = true;
      // Emitted before ssh2 looks at _channel. A session that never got a
      // Channel: ssh2 frees channel numbers only through one, so free it here.
      if (this.#s._channel === this.#early) {
        this.#s._channel = undefined;
        this.#c._chanMgr.remove(this.#s._chanInfo.incoming.id);
      }
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** ssh2's accept, also after the agent's early EOF (which the new channel then sees at once). */
  accept(accept: () => ServerChannel): ServerChannel | undefined {
    if (this.#closed || this.#s._channel !== this.#early) return undefined;
    const eof = this.#eof;
    this.#s._ending = false;
    this.#s._channel = undefined;
    const channel = accept();
    if (eof) this.#s._ending = true;
    if (!channel) return undefined;
    for (const chunk of this.#early.chunks) channel.push(chunk);
    this.#early.chunks.length = 0;
    if (eof || this.#early.ended) {
      (channel as unknown as ChannelInternals).incoming.state = "eof";
      channel.push(null);
    } else if (this.#s._chanInfo.incoming.window < MAX_WINDOW / 2) {
      // The stand-in never topped the window up: do it now, or an agent that used it all waits for ever.
      const amount = MAX_WINDOW - this.#s._chanInfo.incoming.window;
      this.#s._chanInfo.incoming.window += amount;
      this.#c._protocol.channelWindowAdjust(this.#s._chanInfo.outgoing.id, amount);
    }
    return channel;
  }

  /** ssh2's accept for a request that opens nothing (pty, env, window-change, signal), also after the agent's early EOF. */
  reply(accept: (() => void) | undefined): void {
    if (this.#closed || !accept) return;
    this.#bypass(accept);
  }

  /** Runs one of ssh2's accept/reject functions past its "_ending or has a Channel" guard. */
  #bypass(f: () => void): void {
    const channel = this.#s._channel;
    const early = channel === this.#early;
    this.#s._ending = false;
    if (early) this.#s._channel = undefined;
    try {
      f();
    } finally {
      if (early) this.#s._channel = this.#early;
      if (this.#eof) this.#s._ending = true;
    }
  }

  /** Write `stderr` on the channel and answer failure (when the agent wants a reply); the session goes on. */
  refuse(reject: (() => void) | undefined, stderr: string): void {
    if (this.#closed || this.#s._channel !== this.#early) return;
    // The line first: OpenSSH stops printing the channel's stderr once a request failed.
    this.#c._protocol.channelExtData(this.#s._chanInfo.outgoing.id, Buffer.from(stderr, "utf8"), EXTENDED_DATA_STDERR);
    if (reject) this.#bypass(reject);
  }

  /** Answer the command request, write `stderr`, end the channel with `status`. */
  deny(accept: () => ServerChannel, stderr: string, status: number): void {
    const channel = this.accept(accept);
    if (!channel) return;
    channel.stderr.write(stderr);
    channel.exit(status);
    channel.end();
    channel.close();
  }
}
