// Tunnel addresses for WireGuard devices.
//
// 1. `parseSubnet` reads `gateway.wireguard.subnet_cidr` (IPv4) and the
//    optional IPv6 ULA subnet; host bits must be zero.
// 2. The gateway takes the first host address of each subnet (its tunnel
//    address and the devices' DNS server).
// 3. `AddressPool.allocate()` hands out the next free host address after a
//    persisted cursor, wrapping once: sequential, and a released address is
//    not handed out again until the pool has gone round.
//
// An address belongs to its device row (`devices.address`, `address6`, both
// UNIQUE): revoked devices keep theirs; it is released only when the row is
// deleted. Call `allocate()` inside the transaction that inserts the device.
import type { Database } from "bun:sqlite";
import { formatIp, parseIp } from "../net/ipaddr.ts";

export class AddressError extends Error {
  override name = "AddressError";
  constructor(
    message: string,
    /** "bad_subnet" for a configuration problem, "subnet_full" when no address is left. */
    readonly code: "bad_subnet" | "subnet_full",
  ) {
    super(message);
  }
}

export interface Subnet {
  /** The CIDR as configured, normalised (e.g. `10.77.0.0/16`). */
  cidr: string;
  family: 4 | 6;
  bits: 32 | 128;
  prefix: number;
  network: bigint;
  /** Number of addresses in the subnet (2^(bits-prefix)). */
  size: bigint;
}

export function ipToBigInt(bytes: Uint8Array): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

export function bigIntToIp(v: bigint, bits: 32 | 128): string {
  const out = new Uint8Array(bits / 8);
  for (let i = out.length - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return formatIp(out);
}

/** Parses `A.B.C.D/N` or an IPv6 `X::/N`; throws AddressError("bad_subnet"). */
export function parseSubnet(cidr: string): Subnet {
  const slash = cidr.indexOf("/");
  const bad = (why: string) => new AddressError(`subnet ${JSON.stringify(cidr)}: ${why}`, "bad_subnet");
  if (slash < 0) throw bad("expected ADDRESS/PREFIX, e.g. 10.77.0.0/16");
  const bytes = parseIp(cidr.slice(0, slash));
  if (!bytes) throw bad("not an IP address");
  const bits = bytes.length === 4 ? 32 : 128;
  const prefixText = cidr.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefixText)) throw bad("bad prefix length");
  const prefix = Number(prefixText);
  if (prefix > bits) throw bad(`prefix length must be at most ${bits}`);
  const hostBits = BigInt(bits - prefix);
  const size = 1n << hostBits;
  const network = ipToBigInt(bytes);
  if ((network & (size - 1n)) !== 0n) {
    const fixed = (network >> hostBits) << hostBits;
    throw bad(`host bits are set (did you mean ${bigIntToIp(fixed, bits)}/${prefix}?)`);
  }
  // Network, gateway, at least one device and (IPv4) broadcast: a /30 or wider.
  if (bits === 32 && prefix > 30) throw bad("too small: use a /30 or wider (a /16 leaves room for 65533 devices)");
  if (bits === 128 && prefix > 126) throw bad("too small: use a /126 or wider (a /64 is usual)");
  return { cidr: `${bigIntToIp(network, bits)}/${prefix}`, family: bits === 32 ? 4 : 6, bits, prefix, network, size };
}

/** Offsets inside the subnet that devices may get: [first, last]. */
function hostRange(s: Subnet): { first: bigint; last: bigint } {
  // Offset 0 is the network (IPv6: subnet-router anycast), 1 the gateway;
  // IPv4's all-ones offset is the broadcast address.
  return { first: 2n, last: s.family === 4 ? s.size - 2n : s.size - 1n };
}

/** The gateway's tunnel address in the subnet: its first host address. */
export function gatewayAddress(s: Subnet): string {
  return bigIntToIp(s.network + 1n, s.bits);
}

/** How many devices the subnet holds. */
export function deviceCapacity(s: Subnet): bigint {
  const { first, last } = hostRange(s);
  return last - first + 1n;
}

export function contains(s: Subnet, address: string): boolean {
  const bytes = parseIp(address);
  if (!bytes || bytes.length * 8 !== s.bits) return false;
  const v = ipToBigInt(bytes);
  return v >= s.network && v < s.network + s.size;
}

export interface Allocation {
  /** IPv4 address, e.g. `10.77.0.2` (a /32 on the device). */
  address: string;
  /** IPv6 address from the ULA subnet, when one is configured (a /128). */
  address6?: string;
}

export class AddressPool {
  readonly v4: Subnet;
  readonly v6: Subnet | undefined;

  constructor(
    private readonly db: Database,
    subnetCidr: string,
    subnet6Cidr?: string,
  ) {
    this.v4 = parseSubnet(subnetCidr);
    if (this.v4.family !== 4) throw new AddressError(`subnet_cidr ${subnetCidr} must be IPv4`, "bad_subnet");
    if (subnet6Cidr !== undefined) {
      this.v6 = parseSubnet(subnet6Cidr);
      if (this.v6.family !== 6) throw new AddressError(`subnet6_cidr ${subnet6Cidr} must be IPv6`, "bad_subnet");
    }
  }

  /** The gateway's own tunnel addresses. */
  gateway(): Allocation {
    const out: Allocation = { address: gatewayAddress(this.v4) };
    if (this.v6) out.address6 = gatewayAddress(this.v6);
    return out;
  }

  /**
   * The next free address(es). Does not write the device row; the caller
   * inserts it in the same transaction (the cursor moves here).
   */
  allocate(): Allocation {
    return this.db.transaction((): Allocation => {
      const out: Allocation = { address: this.next(this.v4, "address") };
      if (this.v6) out.address6 = this.next(this.v6, "address6");
      return out;
    })();
  }

  private next(s: Subnet, column: "address" | "address6"): string {
    const used = new Set<bigint>();
    // Devices' own addresses and their runs' (app/store/run-peers.ts) are both taken.
    const taken = `SELECT ${column} AS a FROM devices WHERE ${column} IS NOT NULL UNION ALL SELECT ${column} FROM run_peers WHERE ${column} IS NOT NULL`;
    for (const row of this.db.query(taken).all() as {
      a: string;
    }[]) {
      if (!contains(s, row.a)) continue;
      used.add(ipToBigInt(parseIp(row.a)!) - s.network);
    }
    const { first, last } = hostRange(s);
    const capacity = last - first + 1n;
    if (BigInt(used.size) >= capacity) {
      throw new AddressError(
        `subnet ${s.cidr} is full: all ${capacity} device addresses are held by devices (revoked devices keep theirs until deleted); widen the subnet`,
        "subnet_full",
      );
    }
    const cursorRow = this.db.query("SELECT last FROM address_cursor WHERE subnet = ?").get(s.cidr) as {
      last: string;
    } | null;
    let offset = cursorRow ? BigInt(cursorRow.last) + 1n : first;
    // At most used.size + 1 steps: a free offset exists (checked above).
    for (;;) {
      if (offset > last || offset < first) offset = first;
      if (!used.has(offset)) break;
      offset += 1n;
    }
    this.db
      .query("INSERT INTO address_cursor (subnet, last) VALUES (?, ?) ON CONFLICT(subnet) DO UPDATE SET last = excluded.last")
      .run(s.cidr, offset.toString());
    return bigIntToIp(s.network + offset, s.bits);
  }
}
