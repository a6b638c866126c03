/**
 * Cryptokey routing (whitepaper §2): a longest-prefix matcher over the
 * peers' allowed IPs, one binary trie per address family, plus small IP
 * helpers (text <-> bytes, the source/destination of an inner packet).
 */

import { parseIp, formatIp, type IpBytes } from "../ipaddr.ts";

export { parseIp, formatIp, type IpBytes };

export interface Prefix {
  address: IpBytes;
  bits: number;
}

/** Parses "10.0.0.0/24", "fd00::/64" or a bare address (a host prefix). */
export function parsePrefix(s: string): Prefix | undefined {
  const slash = s.indexOf("/");
  const address = parseIp(slash < 0 ? s : s.slice(0, slash));
  if (address === undefined) return undefined;
  const max = address.length * 8;
  if (slash < 0) return { address, bits: max };
  const bitsText = s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bitsText)) return undefined;
  const bits = Number(bitsText);
  if (bits > max) return undefined;
  return { address, bits };
}

function bitAt(a: IpBytes, i: number): number {
  return (a[i >> 3]! >> (7 - (i & 7))) & 1;
}

interface TrieNode<T> {
  child: [TrieNode<T> | undefined, TrieNode<T> | undefined];
  value: T | undefined;
}

function node<T>(): TrieNode<T> {
  return { child: [undefined, undefined], value: undefined };
}

/** A longest-prefix-match table from prefixes to values (here: peers). */
export class AllowedIps<T> {
  #v4: TrieNode<T> = node();
  #v6: TrieNode<T> = node();

  #root(a: IpBytes): TrieNode<T> {
    return a.length === 4 ? this.#v4 : this.#v6;
  }

  /** Inserts (or replaces the owner of) a prefix; a prefix has one owner, as in WireGuard. */
  insert(p: Prefix, value: T): void {
    let n = this.#root(p.address);
    for (let i = 0; i < p.bits; i++) {
      const b = bitAt(p.address, i);
      n = n.child[b] ??= node();
    }
    n.value = value;
  }

  /** The value of the longest prefix containing the address. */
  lookup(a: IpBytes): T | undefined {
    if (a.length !== 4 && a.length !== 16) return undefined;
    let n: TrieNode<T> | undefined = this.#root(a);
    let best = n.value;
    const max = a.length * 8;
    for (let i = 0; i < max && n !== undefined; i++) {
      n = n.child[bitAt(a, i)];
      if (n !== undefined && n.value !== undefined) best = n.value;
    }
    return best;
  }

  /** Removes every prefix owned by value. */
  removeValue(value: T): void {
    const prune = (n: TrieNode<T>): boolean => {
      if (n.value === value) n.value = undefined;
      for (const b of [0, 1] as const) {
        const c = n.child[b];
        if (c !== undefined && prune(c)) n.child[b] = undefined;
      }
      return n.value === undefined && n.child[0] === undefined && n.child[1] === undefined;
    };
    prune(this.#v4);
    prune(this.#v6);
  }

  /** Every prefix owned by value (for status output). */
  entriesOf(value: T): Prefix[] {
    const out: Prefix[] = [];
    const walk = (n: TrieNode<T>, bits: number, acc: number[], len: number): void => {
      if (n.value === value) {
        const address = new Uint8Array(len);
        for (let i = 0; i < bits; i++) if (acc[i]) address[i >> 3]! |= 1 << (7 - (i & 7));
        out.push({ address, bits });
      }
      for (const b of [0, 1] as const) {
        const c = n.child[b];
        if (c !== undefined) {
          acc[bits] = b;
          walk(c, bits + 1, acc, len);
        }
      }
    };
    walk(this.#v4, 0, [], 4);
    walk(this.#v6, 0, [], 16);
    return out;
  }
}

export interface InnerAddresses {
  version: 4 | 6;
  source: IpBytes;
  destination: IpBytes;
  /** The length the IP header claims (the packet may carry padding beyond it). */
  totalLength: number;
}

/**
 * Reads the addresses of an inner IP packet; undefined if it is not a
 * well-formed IPv4/IPv6 header or claims more bytes than it has.
 */
export function innerAddresses(p: Uint8Array): InnerAddresses | undefined {
  if (p.length < 1) return undefined;
  const version = p[0]! >> 4;
  if (version === 4) {
    if (p.length < 20) return undefined;
    const totalLength = (p[2]! << 8) | p[3]!;
    if (totalLength < 20 || totalLength > p.length) return undefined;
    return { version: 4, source: p.subarray(12, 16), destination: p.subarray(16, 20), totalLength };
  }
  if (version === 6) {
    if (p.length < 40) return undefined;
    const totalLength = 40 + ((p[4]! << 8) | p[5]!);
    if (totalLength > p.length) return undefined;
    return { version: 6, source: p.subarray(8, 24), destination: p.subarray(24, 40), totalLength };
  }
  return undefined;
}
