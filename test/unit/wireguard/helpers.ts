import { WireGuardDevice, type DeviceOptions, type Endpoint, type Output } from "../../../app/net/wireguard/device.ts";
import { getDefaultCrypto, toBase64 } from "../../../app/net/wireguard/crypto.ts";
import { parseIp } from "../../../app/net/wireguard/allowedips.ts";

export const A_ENDPOINT: Endpoint = { address: "192.0.2.1", port: 51820 };
export const B_ENDPOINT: Endpoint = { address: "198.51.100.7", port: 40000 };

/** A minimal IPv4/UDP packet (checksums left zero; the engine does not look). */
export function ipv4Udp(src: string, dst: string, payload: Uint8Array | string = "hello"): Uint8Array {
  const body = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
  const total = 20 + 8 + body.length;
  const p = new Uint8Array(total);
  p[0] = 0x45;
  p[2] = total >> 8;
  p[3] = total & 0xff;
  p[8] = 64;
  p[9] = 17;
  p.set(parseIp(src)!, 12);
  p.set(parseIp(dst)!, 16);
  p[20] = 0x30;
  p[21] = 0x39;
  p[22] = 0x00;
  p[23] = 0x35;
  p[24] = (8 + body.length) >> 8;
  p[25] = (8 + body.length) & 0xff;
  p.set(body, 28);
  return p;
}

export function ipv6Udp(src: string, dst: string, payload: Uint8Array | string = "hello6"): Uint8Array {
  const body = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
  const plen = 8 + body.length;
  const p = new Uint8Array(40 + plen);
  p[0] = 0x60;
  p[4] = plen >> 8;
  p[5] = plen & 0xff;
  p[6] = 17;
  p[7] = 64;
  p.set(parseIp(src)!, 8);
  p.set(parseIp(dst)!, 24);
  p[40 + 4] = plen >> 8;
  p[40 + 5] = plen & 0xff;
  p.set(body, 48);
  return p;
}

export function datagrams(out: Output[]): Extract<Output, { kind: "datagram" }>[] {
  return out.filter((o): o is Extract<Output, { kind: "datagram" }> => o.kind === "datagram");
}
export function packets(out: Output[]): Extract<Output, { kind: "packet" }>[] {
  return out.filter((o): o is Extract<Output, { kind: "packet" }> => o.kind === "packet");
}
export function drops(out: Output[]): string[] {
  return out.flatMap((o) => (o.kind === "drop" ? [o.reason] : []));
}
export function events(out: Output[]): string[] {
  return out.flatMap((o) => (o.kind === "peer-event" ? [o.event] : []));
}

export interface Pair {
  a: WireGuardDevice;
  b: WireGuardDevice;
  aKey: string;
  bKey: string;
  clock: { now: number };
  /** Everything each side received as decrypted packets. */
  aInbox: Uint8Array[];
  bInbox: Uint8Array[];
  /** Every output seen, for assertions. */
  log: { side: "a" | "b"; out: Output }[];
  /** Deliver outputs to the other side until quiet; returns all outputs produced. */
  pump(side: "a" | "b", out: Output[], opts?: { drop?: (d: Uint8Array, from: "a" | "b") => boolean }): Output[];
  /** Advance the clock in steps, running both devices' timers and delivering their datagrams. */
  advance(ms: number, step?: number): Output[];
}

/**
 * Two devices: a is the "gateway" (10.100.0.1, fd10:100::1) and b the "device"
 * (10.100.0.2, fd10:100::2). b knows a's endpoint; a learns b's from the handshake.
 */
export function makePair(opts: { a?: Partial<DeviceOptions>; b?: Partial<DeviceOptions>; psk?: boolean; bKeepalive?: number } = {}): Pair {
  const c = getDefaultCrypto();
  const aPriv = c.generatePrivateKey();
  const bPriv = c.generatePrivateKey();
  const clock = { now: 1_700_000_000_000 };
  const a = new WireGuardDevice({ privateKey: aPriv, now: clock.now, jitter: () => 0, ...opts.a });
  const b = new WireGuardDevice({ privateKey: bPriv, now: clock.now, jitter: () => 0, ...opts.b });
  const psk = opts.psk ? c.randomBytes(32) : undefined;
  a.addPeer({ publicKey: b.publicKey, allowedIPs: ["10.100.0.2/32", "fd10:100::2/128"], ...(psk ? { presharedKey: psk } : {}) });
  b.addPeer({
    publicKey: a.publicKey,
    allowedIPs: ["0.0.0.0/0", "::/0"],
    endpoint: A_ENDPOINT,
    ...(psk ? { presharedKey: psk } : {}),
    ...(opts.bKeepalive ? { persistentKeepalive: opts.bKeepalive } : {}),
  });
  const pair: Pair = {
    a,
    b,
    aKey: a.publicKey,
    bKey: b.publicKey,
    clock,
    aInbox: [],
    bInbox: [],
    log: [],
    pump(side, out, popts) {
      const all: Output[] = [];
      let queue: { side: "a" | "b"; out: Output[] }[] = [{ side, out }];
      let rounds = 0;
      while (queue.length > 0) {
        if (++rounds > 1000) throw new Error("pump did not settle");
        const nextQ: typeof queue = [];
        for (const q of queue) {
          for (const o of q.out) {
            all.push(o);
            pair.log.push({ side: q.side, out: o });
            if (o.kind === "packet") (q.side === "a" ? pair.aInbox : pair.bInbox).push(o.data);
            if (o.kind !== "datagram") continue;
            if (popts?.drop?.(o.data, q.side)) continue;
            const to = q.side === "a" ? b : a;
            const fromEp = q.side === "a" ? A_ENDPOINT : B_ENDPOINT;
            nextQ.push({ side: q.side === "a" ? "b" : "a", out: to.receiveDatagram(o.data, fromEp, clock.now) });
          }
        }
        queue = nextQ;
      }
      return all;
    },
    advance(ms, step = 100) {
      const all: Output[] = [];
      const end = clock.now + ms;
      while (clock.now < end) {
        clock.now = Math.min(end, clock.now + step);
        all.push(...pair.pump("a", a.tick(clock.now)));
        all.push(...pair.pump("b", b.tick(clock.now)));
      }
      return all;
    },
  };
  return pair;
}

export { toBase64 };
