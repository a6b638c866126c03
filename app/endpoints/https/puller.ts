// Pull-style reading of a node stream: the consumer asks for the next chunk,
// and the stream stays paused until it does. This is what carries
// backpressure end to end: a slow upstream means we stop reading the agent.
import type { Readable } from "node:stream";

/** What a shell watching the client's pace wants to know (timeouts). */
export interface PullHooks {
  /** Bytes arrived. */
  onData(bytes: number): void;
  /** A read found nothing buffered and waits. */
  onWait(): void;
}

export class StreamPuller {
  private chunks: Uint8Array[] = [];
  private isEnded = false;
  private waiter: (() => void) | undefined;
  /** The error that ended the stream, if any. */
  error: Error | undefined;

  constructor(
    private readonly stream: Readable,
    private readonly hooks?: PullHooks,
  ) {
    stream.on("data", (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.hooks?.onData(chunk.length);
      stream.pause();
      this.wake();
    });
    stream.on("end", () => {
      this.isEnded = true;
      this.wake();
    });
    stream.on("close", () => {
      this.isEnded = true;
      this.wake();
    });
    stream.on("error", (e: Error) => {
      this.error ??= e;
      this.isEnded = true;
      this.wake();
    });
    stream.pause();
  }

  /** Bytes received and not yet taken. */
  get buffered(): number {
    let n = 0;
    for (const c of this.chunks) n += c.length;
    return n;
  }

  /** The stream ended (EOF, close or error). */
  get ended(): boolean {
    return this.isEnded;
  }

  /** Chunks already received, up to about `atMost` bytes (one past it at most), never waiting. */
  takeBuffered(atMost: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    let bytes = 0;
    while (bytes <= atMost && this.chunks.length > 0) {
      const c = this.chunks.shift()!;
      out.push(c);
      bytes += c.length;
    }
    return out;
  }

  /** The next chunk, or undefined at end of stream (see `error`). */
  async next(): Promise<Uint8Array | undefined> {
    for (;;) {
      const chunk = this.chunks.shift();
      if (chunk) {
        if (this.chunks.length === 0 && !this.isEnded) this.stream.resume();
        return chunk;
      }
      if (this.isEnded) return undefined;
      this.hooks?.onWait();
      this.stream.resume();
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
      });
    }
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }
}
