// A node `stream.Duplex` over one TcpConnection: what the pipeline sees of a
// connection the stack terminated. The stack (netstack.ts) owns the clock
// and the link; this class only moves bytes between the stream and the
// connection's bounded buffers, and calls `wake` when it changed something
// the stack must dispatch.
//
//   writable: _write → send(); the callback runs only once every byte is in
//     the send buffer, so a slow device (small window, slow ACKs) holds the
//     writer back. end() → close() (our FIN, a half-close); destroy() →
//     abort() (RST), unless both directions already ended in order.
//   readable: bytes from recv() are pushed while push() returns true; when
//     it returns false they stay in the connection's receive ring, whose
//     free space is the window advertised to the device: it closes as the
//     ring fills and reopens as the consumer reads again. (Closing it at
//     once, on the first false, stalled the sender on every batch of
//     packets a consumer took a moment to read: intercepted uploads ran at
//     half speed.) The device's FIN, once every byte is read, is
//     push(null); a RST or a timeout destroys the stream with an error.
import { Duplex } from "node:stream";
import type { TcpCloseReason, TcpConnection } from "./tcp/connection.ts";

/** How soon a write held back by the buffered-bytes quota looks again. */
const QUOTA_RETRY_MS = 100;

/** Largest chunk handed to push() at once. */
const READ_CHUNK = 64 * 1024;

export class TcpDuplex extends Duplex {
  readonly conn: TcpConnection;
  private readonly wake: () => void;
  private wantRead = false;
  private readEnded = false;
  private pendingChunk: Uint8Array | null = null;
  private pendingOff = 0;
  private pendingCb: ((err?: Error | null) => void) | null = null;
  private retry: ReturnType<typeof setTimeout> | null = null;

  constructor(conn: TcpConnection, wake: () => void) {
    super({ allowHalfOpen: true, readableHighWaterMark: READ_CHUNK, writableHighWaterMark: 64 * 1024 });
    this.conn = conn;
    this.wake = wake;
  }

  /** Called by the stack after the connection may have changed: new data, freed send space, FIN. */
  service(): void {
    if (this.destroyed) return;
    this.flushWrite();
    this.pull();
  }

  /** The connection reached CLOSED (the table's "closed" event). */
  onClosed(reason: TcpCloseReason): void {
    if (this.destroyed) return;
    if (reason === "closed") {
      // Orderly: both FINs exchanged. Unread bytes are still delivered.
      this.service();
      return;
    }
    if (reason === "aborted") {
      this.destroy();
      return;
    }
    const err = new Error(reason === "reset" ? "connection reset by peer" : `connection closed: ${reason}`) as NodeJS.ErrnoException;
    err.code = reason === "reset" ? "ECONNRESET" : "ETIMEDOUT";
    this.destroy(err);
  }

  override _read(): void {
    this.wantRead = true;
    this.pull();
  }

  private pull(): void {
    const c = this.conn;
    while (this.wantRead && c.recvQueued > 0) {
      const data = c.recv(READ_CHUNK);
      this.wantRead = this.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
      this.wake();
    }
    if (!this.readEnded && c.recvQueued === 0 && c.recvEnded) {
      this.readEnded = true;
      this.push(null);
    }
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.pendingChunk = chunk;
    this.pendingOff = 0;
    this.pendingCb = cb;
    this.flushWrite();
  }

  private flushWrite(): void {
    const chunk = this.pendingChunk;
    if (chunk === null) return;
    const c = this.conn;
    if (!c.canSend) {
      const cb = this.pendingCb!;
      this.clearPending();
      const err = new Error("write after the connection closed") as NodeJS.ErrnoException;
      err.code = "EPIPE";
      cb(err);
      return;
    }
    const n = c.send(this.pendingOff === 0 ? chunk : chunk.subarray(this.pendingOff));
    this.pendingOff += n;
    if (n > 0) this.wake();
    if (this.pendingOff < chunk.length) {
      // Nothing taken and nothing in flight: no ACK will wake us, the device's
      // buffered-bytes quota holds the ring back; look again when others may have freed some.
      if (n === 0 && c.sendQueued === 0 && this.retry === null) {
        this.retry = setTimeout(() => {
          this.retry = null;
          this.service();
        }, QUOTA_RETRY_MS);
        this.retry.unref?.();
      }
      return;
    }
    const cb = this.pendingCb!;
    this.clearPending();
    cb();
  }

  private clearPending(): void {
    if (this.retry !== null) clearTimeout(this.retry);
    this.retry = null;
    this.pendingChunk = null;
    this.pendingCb = null;
    this.pendingOff = 0;
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.conn.close();
    this.wake();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // Orderly: both directions ended (the peer's FIN read to the end, ours
    // requested with end()) and nothing written is left behind. Node
    // auto-destroys such a stream, and a relay destroys right after end()
    // (before _final has run); the close handshake (our FIN, LAST-ACK,
    // FIN-WAIT, TIME-WAIT) must still finish on its own. A RST here turned
    // the device's clean half-close into ECONNRESET.
    const orderly = err === null && this.readEnded && this.writableEnded && this.pendingChunk === null && this.writableLength === 0;
    this.clearPending();
    if (this.conn.state !== "CLOSED") {
      if (orderly) {
        if (!this.writableFinished) this.conn.close(); // _final has not run yet: queue our FIN now
      } else {
        this.conn.abort();
      }
      this.wake();
    }
    cb(err);
  }

  // Socket-like no-ops, for code written against net.Socket.
  setNoDelay(_noDelay?: boolean): this {
    return this;
  }

  setKeepAlive(_enable?: boolean, _delay?: number): this {
    return this;
  }
}
