// What the frontend and backend framing parsers share:
//   1. the parser's shell: the buffered tail (ByteQueue), and death at the
//      first error (every later next() returns it again);
//   2. a typed message's frame: type byte (an unknown one refused at once),
//      int32 length (itself included, at least 4), body; a length the
//      caller's limits refuse is refused before any body is buffered.
// Results are values; nothing throws on input.

import { describeByte, malformed, type WireError } from "./error.ts";
import { ByteQueue } from "./queue.ts";

export type WireResult<M> = { kind: "need-more" } | { kind: "message"; message: M } | { kind: "error"; error: WireError };

export const NEED_MORE: { kind: "need-more" } = { kind: "need-more" };

export function fail(error: WireError): { kind: "error"; error: WireError } {
  return { kind: "error", error };
}

export abstract class FramingParser<M> {
  protected readonly queue = new ByteQueue();
  private failed: WireResult<M> | undefined;

  /** Bytes pushed and not yet returned as a message. */
  get buffered(): number {
    return this.queue.size;
  }

  /** Appends bytes from the peer; see ByteQueue for ownership. */
  push(chunk: Uint8Array): void {
    if (this.failed === undefined) this.queue.push(chunk);
  }

  /** Removes and returns the unread bytes (e.g. to hand a stream to another parser). */
  takeBuffered(): Uint8Array {
    return this.queue.takeAll();
  }

  /** The next complete message, "need-more", or the error that killed the parser. */
  next(): WireResult<M> {
    if (this.failed !== undefined) return this.failed;
    const r = this.read();
    if (r.kind === "error") this.failed = r;
    return r;
  }

  protected abstract read(): WireResult<M>;
}

/** What a typed frame may be, seen from its code and declared length: the frontend's and backend's limits. */
export interface FrameRules {
  /** "frontend" or "backend", for the error reasons. */
  side: string;
  known(code: number): boolean;
  /** An error for a frame its length alone refuses (over a limit); undefined to read it. */
  refuse(code: number, len: number): WireError | undefined;
}

/** The next typed message's bytes (type byte, length, body), or need-more, or the error. */
export function takeTypedFrame(q: ByteQueue, rules: FrameRules): Uint8Array | { kind: "need-more" } | { kind: "error"; error: WireError } {
  if (q.size < 1) return NEED_MORE;
  const code = q.byteAt(0);
  if (!rules.known(code)) return fail(malformed(`unknown ${rules.side} message type ${describeByte(code)}`));
  if (q.size < 5) return NEED_MORE;
  const len = q.int32At(1);
  if (len < 4) return fail(malformed(`message ${describeByte(code)} length ${len} below 4`));
  const refused = rules.refuse(code, len);
  if (refused !== undefined) return fail(refused);
  if (q.size < 1 + len) return NEED_MORE;
  return q.take(1 + len);
}
