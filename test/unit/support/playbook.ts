// Playbooks for sans-IO handlers (mitmproxy's tutils shape): feed an event,
// expect the commands it produces, described as readable lines so a
// mismatch shows as a diff. Every `in` must be followed by an `out` (a
// playbook that is never checked fails at `done()`).
import { expect } from "bun:test";

export interface Handler<E, C> {
  handle(ev: E): C[];
}

export class Playbook<E, C> {
  private pending: { ev: E; got: C[] } | undefined;
  private steps = 0;

  constructor(
    private readonly handler: Handler<E, C>,
    /** One or more lines per command (a batch of bytes may hold several messages). */
    private readonly describe: (c: C) => string[],
  ) {}

  /** Feeds an event; the commands it produced wait for `out`. */
  in(ev: E): this {
    if (this.pending) throw new Error(`playbook step ${this.steps}: the previous event's commands were never checked`);
    this.pending = { ev, got: this.handler.handle(ev) };
    return this;
  }

  /** Asserts the commands of the last event, in order, as described lines. */
  out(...want: string[]): this {
    const p = this.pending;
    if (!p) throw new Error("playbook: out() without in()");
    this.pending = undefined;
    this.steps++;
    expect(p.got.flatMap((c) => this.describe(c))).toEqual(want);
    return this;
  }

  /** The raw commands of the last event (then checked with `out` as usual). */
  peek(): C[] {
    return this.pending?.got ?? [];
  }

  done(): void {
    if (this.pending) throw new Error("playbook: the last event's commands were never checked");
  }
}
