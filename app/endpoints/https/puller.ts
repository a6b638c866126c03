// Pull-style reading of a node stream: the consumer asks for the next chunk,
// and the stream stays paused until it does. This is what carries
// backpressure end to end: a slow upstream means we stop reading the agent.
import type { Readable } from "node:stream";

export class StreamPuller {
  private chunks: Uint8Array[] = [];
  private ended = false;
  private waiter: (() => void) | undefined;
  /** The error that ended the stream, if any. */
  error: Error | undefined;

  constructor(private readonly stream: Readable) {
    stream.on("data", (chunk: Buffer) => {
      this.chunks.push(chunk);
      stream.pause();
      this.wake();
    });
    stream.on("end", () => {
      this.ended = true;
      this.wake();
    });
    stream.on("close", () => {
      this.ended = true;
      this.wake();
    });
    stream.on("error", (e: Error) => {
      this.error ??= e;
      this.ended = true;
      this.wake();
    });
    stream.pause();
  }

  /** The next chunk, or undefined at end of stream (see `error`). */
  async next(): Promise<Uint8Array | undefined> {
    for (;;) {
      const chunk = this.chunks.shift();
      if (chunk) {
        if (this.chunks.length === 0 && !this.ended) this.stream.resume();
        return chunk;
      }
      if (this.ended) return undefined;
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
