// The Internet checksum (RFC 1071), the TCP/UDP/ICMPv6 pseudo-headers
// (RFC 9293 §3.1, RFC 768, RFC 8200 §8.1), and incremental update (RFC 1624).
//
// Sums are carried unfolded as plain numbers (safe: 64 KiB of 16-bit words
// stays far below 2^53) and folded once at the end.

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ICMPV6 = 58;

/** Ones'-complement sum of `data` as big-endian 16-bit words (odd tail padded with zero), added to `initial`. */
export function onesSum(data: Uint8Array, initial = 0): number {
  let sum = initial;
  const n = data.length;
  const even = n & ~1;
  let i = 0;
  for (; i < even; i += 2) sum += (data[i]! << 8) | data[i + 1]!;
  if (i < n) sum += data[i]! << 8;
  return sum;
}

/** onesSum over data[start, end) without a subarray (per-packet paths). */
export function onesSumRange(data: Uint8Array, start: number, end: number, initial = 0): number {
  let sum = initial;
  const even = start + ((end - start) & ~1);
  let i = start;
  for (; i < even; i += 2) sum += (data[i]! << 8) | data[i + 1]!;
  if (i < end) sum += data[i]! << 8;
  return sum;
}

/** Fold an unfolded sum to 16 bits (end-around carry). */
export function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return sum;
}

/** The checksum field value: ones' complement of the folded sum of `data` plus `initial`. */
export function checksum(data: Uint8Array, initial = 0): number {
  return ~fold(onesSum(data, initial)) & 0xffff;
}

/** True when `data` (checksum field included) sums to 0xffff, i.e. verifies. */
export function verifies(data: Uint8Array, initial = 0): boolean {
  return fold(onesSum(data, initial)) === 0xffff;
}

/**
 * Unfolded sum of the pseudo-header. IPv4 (4-byte addresses): src, dst,
 * zero, protocol, upper-layer length (RFC 9293 §3.1). IPv6 (16-byte):
 * src, dst, 32-bit length, three zero bytes, next header (RFC 8200 §8.1).
 * Both reduce to the same word sum.
 */
export function pseudoHeaderSum(src: Uint8Array, dst: Uint8Array, protocol: number, length: number): number {
  let sum = onesSum(src);
  sum = onesSum(dst, sum);
  return sum + protocol + (length >>> 16) + (length & 0xffff);
}

/**
 * RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). Update checksum `hc` after a
 * 16-bit word of the covered data changes from `oldWord` to `newWord`.
 */
export function incrementalUpdate(hc: number, oldWord: number, newWord: number): number {
  const sum = (~hc & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff);
  return ~fold(sum) & 0xffff;
}

/** RFC 1624 applied to a 32-bit field (e.g. half of an address, a sequence number). */
export function incrementalUpdate32(hc: number, oldValue: number, newValue: number): number {
  const a = incrementalUpdate(hc, oldValue >>> 16, newValue >>> 16);
  return incrementalUpdate(a, oldValue & 0xffff, newValue & 0xffff);
}
