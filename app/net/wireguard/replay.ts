/**
 * The sliding anti-replay window (RFC 6479, as wireguard-go replay/replay.go).
 *
 * A ring of 32-bit blocks; the window covers (RING_BLOCKS - 1) * BLOCK_BITS
 * counters behind the highest one seen. Moving forward clears only the blocks
 * the window slides over, so a check costs O(1) amortised.
 *
 * Call {@link ReplayFilter.validateCounter} only after the packet has been
 * authenticated; it marks the counter as seen.
 */
import { REJECT_AFTER_MESSAGES_LIMIT } from "./crypto.ts";

const BLOCK_BIT_LOG = 5; // 32-bit blocks
const BLOCK_BITS = 1 << BLOCK_BIT_LOG;
const RING_BLOCKS = 1 << 7; // 128 blocks
const BLOCK_MASK = RING_BLOCKS - 1;

/** Counters more than this far behind the highest one are refused (4064). */
export const REPLAY_WINDOW_SIZE = (RING_BLOCKS - 1) * BLOCK_BITS;

export class ReplayFilter {
  #last = 0;
  #ring = new Uint32Array(RING_BLOCKS);

  reset(): void {
    this.#last = 0;
    this.#ring.fill(0);
  }

  /**
   * True if `counter` is new (and now marked seen); false if it is a
   * duplicate, too old, or >= limit.
   */
  validateCounter(counter: number, limit: number = REJECT_AFTER_MESSAGES_LIMIT): boolean {
    if (!(counter >= 0) || counter >= limit || !Number.isInteger(counter)) return false;
    let indexBlock = Math.floor(counter / BLOCK_BITS);
    if (counter > this.#last) {
      const current = Math.floor(this.#last / BLOCK_BITS);
      const diff = Math.min(indexBlock - current, RING_BLOCKS);
      for (let i = current + 1; i <= current + diff; i++) this.#ring[i & BLOCK_MASK] = 0;
      this.#last = counter;
    } else if (this.#last - counter > REPLAY_WINDOW_SIZE) {
      return false;
    }
    indexBlock &= BLOCK_MASK;
    const bit = 1 << (counter % BLOCK_BITS);
    const old = this.#ring[indexBlock]!;
    if ((old & bit) !== 0) return false;
    this.#ring[indexBlock] = old | bit;
    return true;
  }
}
