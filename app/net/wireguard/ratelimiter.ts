// Handshake rate limiting per source address, as wireguard-go's
// ratelimiter/ratelimiter.go: once the device is under load and a sender has
// proved its address with a cookie (mac2), each source may still only have
// PACKETS_PER_SECOND handshake messages processed (PACKETS_BURSTABLE at
// once); the rest are dropped before any Diffie-Hellman. IPv4 sources are
// counted per address, IPv6 per /64 (one host holds a whole /64). Time is
// passed in (ms); entries idle for GARBAGE_COLLECT_TIME are forgotten.

export const PACKETS_PER_SECOND = 20;
export const PACKETS_BURSTABLE = 5;
export const GARBAGE_COLLECT_TIME = 1000;
/** Tokens are milliseconds of credit: one packet costs this much. */
const PACKET_COST = 1000 / PACKETS_PER_SECOND;
const MAX_TOKENS = PACKET_COST * PACKETS_BURSTABLE;
/** Bound on tracked sources; past it, unknown sources are refused until a sweep frees room. */
export const MAX_ENTRIES = 1 << 16;

interface Entry {
  lastTime: number;
  tokens: number;
}

export class HandshakeRateLimiter {
  private readonly table = new Map<string, Entry>();
  private lastSweep = Number.NEGATIVE_INFINITY;

  constructor(private readonly maxEntries = MAX_ENTRIES) {}

  /** The key of a source address (4 or 16 bytes): the IPv4 address, or the IPv6 /64. */
  static keyOf(address: Uint8Array): string {
    const bytes = address.length === 16 ? address.subarray(0, 8) : address;
    let s = String(address.length);
    for (const b of bytes) s += "." + b;
    return s;
  }

  /** Whether one more handshake message from `address` may be processed now. */
  allow(address: Uint8Array, now: number): boolean {
    if (now - this.lastSweep >= GARBAGE_COLLECT_TIME) this.sweep(now);
    const key = HandshakeRateLimiter.keyOf(address);
    const e = this.table.get(key);
    if (e === undefined) {
      if (this.table.size >= this.maxEntries) return false;
      this.table.set(key, { lastTime: now, tokens: MAX_TOKENS - PACKET_COST });
      return true;
    }
    e.tokens = Math.min(MAX_TOKENS, e.tokens + (now - e.lastTime));
    e.lastTime = now;
    if (e.tokens >= PACKET_COST) {
      e.tokens -= PACKET_COST;
      return true;
    }
    return false;
  }

  get size(): number {
    return this.table.size;
  }

  private sweep(now: number): void {
    this.lastSweep = now;
    for (const [k, e] of this.table) if (now - e.lastTime > GARBAGE_COLLECT_TIME) this.table.delete(k);
  }
}
