import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { WireGuardDevice, paddedLength, type Output } from "../../../app/net/wireguard/device.ts";
import {
  KEEPALIVE_TIMEOUT,
  REJECT_AFTER_TIME,
  REKEY_AFTER_TIME,
  REKEY_ATTEMPT_TIME,
  REKEY_TIMEOUT,
  getDefaultCrypto,
} from "../../../app/net/wireguard/crypto.ts";
import {
  MessageCookieReplySize,
  MessageInitiationSize,
  MessageResponseSize,
  messageType,
} from "../../../app/net/wireguard/messages.ts";
import { A_ENDPOINT, B_ENDPOINT, datagrams, drops, events, ipv4Udp, ipv6Udp, makePair, packets, type Pair } from "./helpers.ts";

const dec = new TextDecoder();
const payloadOf = (p: Uint8Array) => dec.decode(p.subarray(p[0]! >> 4 === 4 ? 28 : 48));

/** b (the device) starts a handshake by sending to a (the gateway). */
function connect(p: Pair): Output[] {
  return p.pump("b", p.b.sendPacket(ipv4Udp("10.100.0.2", "10.100.0.1", "first"), p.clock.now));
}

describe("handshake and data", () => {
  test("two devices handshake and exchange packets both ways (IPv4)", () => {
    const p = makePair();
    const out = connect(p);
    // initiation, response, then b's staged packet rides the new session
    const types = datagrams(out).map((d) => messageType(d.data));
    expect(types).toEqual([1, 2, 4]);
    expect(datagrams(out)[0]!.data.length).toBe(MessageInitiationSize);
    expect(datagrams(out)[1]!.data.length).toBe(MessageResponseSize);
    expect(events(out)).toContain("handshake-complete");
    expect(p.aInbox.map(payloadOf)).toEqual(["first"]);
    expect(p.a.peerStatus(p.bKey)!.endpoint).toEqual(B_ENDPOINT);

    p.pump("a", p.a.sendPacket(ipv4Udp("10.100.0.1", "10.100.0.2", "reply"), p.clock.now));
    expect(p.bInbox.map(payloadOf)).toEqual(["reply"]);
    // the responder confirmed its "next" keypair on the first packet
    expect(p.log.filter((l) => l.side === "a" && l.out.kind === "peer-event" && l.out.event === "handshake-complete").length).toBe(1);
    for (let i = 0; i < 50; i++) p.pump("b", p.b.sendPacket(ipv4Udp("10.100.0.2", "10.100.0.1", `m${i}`), p.clock.now));
    expect(p.aInbox.length).toBe(51);
  });

  test("IPv6 both ways, with a preshared key", () => {
    const p = makePair({ psk: true });
    p.pump("b", p.b.sendPacket(ipv6Udp("fd10:100::2", "fd10:100::1", "six"), p.clock.now));
    expect(p.aInbox.map(payloadOf)).toEqual(["six"]);
    p.pump("a", p.a.sendPacket(ipv6Udp("fd10:100::1", "fd10:100::2", "back"), p.clock.now));
    expect(p.bInbox.map(payloadOf)).toEqual(["back"]);
  });

  test("mismatched preshared keys never complete", () => {
    const c = getDefaultCrypto();
    const a = new WireGuardDevice({ privateKey: c.generatePrivateKey(), now: 0 });
    const b = new WireGuardDevice({ privateKey: c.generatePrivateKey(), now: 0 });
    a.addPeer({ publicKey: b.publicKey, allowedIPs: ["10.100.0.2/32"], presharedKey: c.randomBytes(32) });
    b.addPeer({ publicKey: a.publicKey, allowedIPs: ["0.0.0.0/0"], endpoint: A_ENDPOINT, presharedKey: c.randomBytes(32) });
    const init = datagrams(b.sendPacket(ipv4Udp("10.100.0.2", "10.100.0.1"), 0))[0]!;
    const resp = datagrams(a.receiveDatagram(init.data, B_ENDPOINT, 0))[0]!;
    expect(drops(b.receiveDatagram(resp.data, A_ENDPOINT, 0))).toEqual(["handshake-decrypt-empty-failed"]);
  });

  test("an initiation from an unknown key is dropped silently", () => {
    const p = makePair();
    const c = getDefaultCrypto();
    const stranger = new WireGuardDevice({ privateKey: c.generatePrivateKey(), now: 0 });
    stranger.addPeer({ publicKey: p.a.publicKey, allowedIPs: ["0.0.0.0/0"], endpoint: A_ENDPOINT });
    const init = datagrams(stranger.sendPacket(ipv4Udp("10.9.9.9", "10.100.0.1"), 0))[0]!;
    const out = p.a.receiveDatagram(init.data, B_ENDPOINT, p.clock.now);
    expect(out).toEqual([{ kind: "drop", reason: "handshake-unknown-peer" }]);
  });

  test("packets are padded to 16 bytes on the wire, trimmed on receipt", () => {
    const p = makePair();
    connect(p);
    const out = p.b.sendPacket(ipv4Udp("10.100.0.2", "10.100.0.1", "x"), p.clock.now); // 29 bytes
    const d = datagrams(out)[0]!.data;
    expect(d.length).toBe(16 + 32 + 16);
    const got = packets(p.a.receiveDatagram(d, B_ENDPOINT, p.clock.now))[0]!.data;
    expect(got.length).toBe(29);
    expect(paddedLength(1420, 1420)).toBe(1420);
    expect(paddedLength(1419, 1420)).toBe(1420);
    expect(paddedLength(0, 1420)).toBe(0);
  });

  test("packets sent before the handshake are staged and delivered after it", () => {
    const p = makePair();
    const first = p.b.sendPacket(ipv4Udp("10.100.0.2", "10.100.0.1", "s1"), p.clock.now);
    const second = p.b.sendPacket(ipv4Udp("10.100.0.2", "10.100.0.1", "s2"), p.clock.now);
    expect(datagrams(second)).toEqual([]); // rate-limited: one initiation per REKEY_TIMEOUT
    p.pump("b", first);
    expect(p.aInbox.map(payloadOf)).toEqual(["s1", "s2"]);
  });
});

describe("silent drops of malformed input", () => {
  const lengths: [string, number, number[]][] = [
    ["initiation", 1, [MessageInitiationSize - 1, MessageInitiationSize + 1, 4, 200]],
    ["response", 2, [MessageResponseSize - 1, MessageResponseSize + 1]],
    ["cookie reply", 3, [MessageCookieReplySize - 1, MessageCookieReplySize + 1]],
    ["transport", 4, [31, 16, 4]],
  ];
  for (const [name, type, lens] of lengths) {
    test(`${name}: wrong lengths are dropped`, () => {
      const p = makePair();
      for (const len of lens) {
        const b = new Uint8Array(len);
        b[0] = type;
        const out = p.a.receiveDatagram(b, B_ENDPOINT, p.clock.now);
        expect(out.length).toBe(1);
        expect(out[0]!.kind).toBe("drop");
        expect(datagrams(out)).toEqual([]);
      }
    });
  }

  test("unknown types, non-zero reserved bytes, short datagrams", () => {
    const p = makePair();
    const cases = [new Uint8Array(0), new Uint8Array([1]), new Uint8Array(148).fill(0), new Uint8Array(32).fill(5)];
    const reserved = new Uint8Array(MessageInitiationSize);
    reserved[0] = 1;
    reserved[2] = 1;
    cases.push(reserved);
    expect(cases.map((c) => drops(p.a.receiveDatagram(c, B_ENDPOINT, 0)))).toEqual([
      ["too-short"],
      ["too-short"],
      ["unknown-type"],
      ["unknown-type"],
      ["unknown-type"],
    ]);
  });

  test("a handshake with a bad mac1 is dropped before any DH", () => {
    const p = makePair();
    const init = datagrams(p.b.sendPacket(ipv4Udp("10.100.0.2", "10.100.0.1"), p.clock.now))[0]!.data;
    const bad = new Uint8Array(init);
    bad[120]! ^= 1;
    expect(p.a.receiveDatagram(bad, B_ENDPOINT, p.clock.now)).toEqual([{ kind: "drop", reason: "bad-mac1" }]);
    const bad2 = new Uint8Array(init);
    bad2[50]! ^= 1; // body change invalidates mac1 too
    expect(drops(p.a.receiveDatagram(bad2, B_ENDPOINT, p.clock.now))).toEqual(["bad-mac1"]);
  });

  test("transport packets: unknown index, tampered ciphertext", () => {
    const p = makePair();
    connect(p);
    const d = datagrams(p.b.sendPacket(ipv4Udp("10.100.0.2", "10.100.0.1"), p.clock.now))[0]!.data;
    const wrongIndex = new Uint8Array(d);
    wrongIndex[4]! ^= 0xff;
    expect(drops(p.a.receiveDatagram(wrongIndex, B_ENDPOINT, p.clock.now))).toEqual(["unknown-receiver-index"]);
    const tampered = new Uint8Array(d);
    tampered[30]! ^= 1;
    expect(drops(p.a.receiveDatagram(tampered, B_ENDPOINT, p.clock.now))).toEqual(["decrypt-failed"]);
    // tampering did not burn the counter: the genuine packet still gets through
    expect(packets(p.a.receiveDatagram(d, B_ENDPOINT, p.clock.now)).length).toBe(1);
  });

  test("fuzz: random and mutated datagrams never throw and only drop", () => {
    const p = makePair();
    const init = datagrams(p.b.sendPacket(ipv4Udp("10.100.0.2", "10.100.0.1"), p.clock.now))[0]!.data;
    p.clock.now += 10_000;
    connect(p);
    const data = datagrams(p.b.sendPacket(ipv4Udp("10.100.0.2", "10.100.0.1"), p.clock.now))[0]!.data;
    const seeds = [init, data];
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          fc.tuple(fc.constantFrom(...seeds), fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 8 }), fc.nat(300)).map(
            ([seed, at, bytes, cut]) => {
              const m = new Uint8Array(seed);
              m.set(bytes.subarray(0, Math.max(0, m.length - (at % m.length))), at % m.length);
              return m.subarray(0, Math.min(m.length, cut + 1));
            },
          ),
        ),
        (bytes) => {
          // A "mutation" that rewrote bytes with their own values is the
          // genuine datagram, which may rightly be accepted (once).
          if (seeds.some((s) => s.length === bytes.length && s.every((b, i) => b === bytes[i]))) return true;
          const out = p.a.receiveDatagram(bytes, B_ENDPOINT, p.clock.now);
          return out.every((o) => o.kind === "drop");
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe("replay protection", () => {
  test("a replayed transport packet is dropped; reordered ones within the window pass", () => {
    const p = makePair();
    connect(p);
    const ds = Array.from({ length: 5 }, (_, i) => datagrams(p.b.sendPacket(ipv4Udp("10.100.0.2", "10.100.0.1", `r${i}`), p.clock.now))[0]!.data);
    const recv = (d: Uint8Array) => p.a.receiveDatagram(d, B_ENDPOINT, p.clock.now);
    expect(packets(recv(ds[3]!)).length).toBe(1);
    expect(packets(recv(ds[1]!)).length).toBe(1);
    expect(drops(recv(ds[3]!))).toEqual(["replayed"]);
    expect(packets(recv(ds[0]!)).length).toBe(1);
    expect(drops(recv(ds[0]!))).toEqual(["replayed"]);
  });

  test("a replayed initiation is dropped (timestamp not newer)", () => {
    const p = makePair();
    const init = datagrams(p.b.sendPacket(ipv4Udp("10.100.0.2", "10.100.0.1"), p.clock.now))[0]!.data;
    expect(datagrams(p.a.receiveDatagram(init, B_ENDPOINT, p.clock.now)).length).toBe(1);
    p.clock.now += 1000;
    expect(p.a.receiveDatagram(init, B_ENDPOINT, p.clock.now)).toEqual([{ kind: "drop", reason: "handshake-replayed-timestamp" }]);
  });

  test("initiations faster than 50/s from one peer are dropped as a flood", () => {
    const p = makePair();
    const c = getDefaultCrypto();
    const i1 = datagrams(p.b.sendPacket(ipv4Udp("10.100.0.2", "10.100.0.1"), p.clock.now))[0]!.data;
    p.clock.now += REKEY_TIMEOUT;
    const i2 = datagrams(p.b.tick(p.clock.now))[0]!.data; // retransmit: a newer timestamp
    expect(datagrams(p.a.receiveDatagram(i1, B_ENDPOINT, 1000)).length).toBe(1);
    expect(drops(p.a.receiveDatagram(i2, B_ENDPOINT, 1010))).toEqual(["handshake-flood"]);
    void c;
  });
});

describe("timers", () => {
  test("rekey: the initiator starts a new handshake after REKEY_AFTER_TIME", () => {
    const p = makePair();
    connect(p);
    p.pump("a", p.a.sendPacket(ipv4Udp("10.100.0.1", "10.100.0.2"), p.clock.now));
    const before = p.b.peerStatus(p.aKey)!.lastHandshake!;
    // keep traffic flowing both ways once a second, like a busy session
    let sawInitiation = false;
    for (let t = 0; t < REKEY_AFTER_TIME + 2000; t += 1000) {
      p.clock.now += 1000;
      const out = p.pump("b", [...p.b.tick(p.clock.now), ...p.b.sendPacket(ipv4Udp("10.100.0.2", "10.100.0.1", "tick"), p.clock.now)]);
      if (datagrams(out).some((d) => messageType(d.data) === 1)) sawInitiation = true;
      p.pump("a", [...p.a.tick(p.clock.now), ...p.a.sendPacket(ipv4Udp("10.100.0.1", "10.100.0.2", "tock"), p.clock.now)]);
    }
    expect(sawInitiation).toBe(true);
    const after = p.b.peerStatus(p.aKey)!.lastHandshake!;
    expect(after - before).toBeGreaterThan(REKEY_AFTER_TIME);
    expect(after - before).toBeLessThan(REKEY_AFTER_TIME + 2000);
    // nothing was lost across the rekey
    expect(drops(p.log.map((l) => l.out))).toEqual([]);
  });

  test("the responder never initiates a rekey by age; only the initiator does", () => {
    const p = makePair();
    connect(p);
    p.clock.now += REKEY_AFTER_TIME + 1000;
    const out = p.a.sendPacket(ipv4Udp("10.100.0.1", "10.100.0.2"), p.clock.now);
    expect(datagrams(out).map((d) => messageType(d.data))).toEqual([4]);
  });

  test("passive keepalive KEEPALIVE_TIMEOUT after receiving data with nothing to send", () => {
    const p = makePair();
    connect(p);
    expect(p.a.nextTimerAt()).toBe(p.clock.now + KEEPALIVE_TIMEOUT);
    expect(datagrams(p.a.tick(p.clock.now + KEEPALIVE_TIMEOUT - 1))).toEqual([]);
    const out = p.a.tick(p.clock.now + KEEPALIVE_TIMEOUT);
    const ds = datagrams(out);
    expect(ds.length).toBe(1);
    expect(ds[0]!.data.length).toBe(32); // empty transport message
    const got = p.b.receiveDatagram(ds[0]!.data, A_ENDPOINT, p.clock.now + KEEPALIVE_TIMEOUT);
    expect(got.filter((o) => o.kind !== "peer-event")).toEqual([]);
  });

  test("no passive keepalive when data was sent back in time", () => {
    const p = makePair();
    connect(p);
    p.clock.now += 2000;
    p.pump("a", p.a.sendPacket(ipv4Udp("10.100.0.1", "10.100.0.2"), p.clock.now));
    expect(datagrams(p.a.tick(p.clock.now + KEEPALIVE_TIMEOUT))).toEqual([]);
  });

  test("persistent keepalive every N seconds while idle, and at once when configured", () => {
    const p = makePair({ bKeepalive: 25 });
    expect(p.b.nextTimerAt()).toBe(0);
    const first = p.pump("b", p.b.tick(p.clock.now));
    expect(events(first)).toContain("handshake-complete"); // the first keepalive made a session
    const start = p.clock.now;
    const out = p.advance(100_000, 1000);
    const bKeepalives = p.log.filter((l) => l.side === "b" && l.out.kind === "datagram" && l.out.data.length === 32);
    expect(bKeepalives.length).toBeGreaterThanOrEqual(4);
    void out;
    void start;
  });

  test("newHandshake: data sent but nothing heard for KEEPALIVE + REKEY_TIMEOUT starts a handshake", () => {
    const p = makePair();
    connect(p);
    p.pump("a", p.a.sendPacket(ipv4Udp("10.100.0.1", "10.100.0.2"), p.clock.now));
    p.clock.now += 1000;
    const sent = datagrams(p.b.sendPacket(ipv4Udp("10.100.0.2", "10.100.0.1"), p.clock.now));
    expect(sent.length).toBe(1); // lost on the way: a never answers
    const due = p.clock.now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT;
    expect(datagrams(p.b.tick(due - 1)).filter((d) => messageType(d.data) === 1)).toEqual([]);
    expect(datagrams(p.b.tick(due)).map((d) => messageType(d.data))).toContain(1);
  });

  test("handshake retransmits every REKEY_TIMEOUT and gives up after REKEY_ATTEMPT_TIME", () => {
    const p = makePair();
    const first = p.b.sendPacket(ipv4Udp("10.100.0.2", "10.100.0.1"), p.clock.now);
    expect(datagrams(first).length).toBe(1);
    const start = p.clock.now;
    const inits: number[] = [];
    let failedAt: number | undefined;
    let gaveUp: string[] = [];
    for (let t = start + 100; t < start + REKEY_ATTEMPT_TIME + 20_000; t += 100) {
      const out = p.b.tick(t);
      for (const d of datagrams(out)) if (messageType(d.data) === 1) inits.push(t - start);
      if (events(out).includes("handshake-failed")) failedAt = t - start;
      gaveUp = gaveUp.concat(drops(out));
    }
    expect(inits.slice(0, 3)).toEqual([5000, 10000, 15000]);
    // wireguard-go: MAX_TIMER_HANDSHAKES + 2 = 20 attempts in all (1 + 19 retransmits)
    expect(inits.length).toBe(19);
    expect(failedAt).toBe(100_000);
    expect(gaveUp).toEqual(["handshake-gave-up"]);
  });

  test("session expiry: keys are refused after REJECT_AFTER_TIME and zeroed after 3x", () => {
    const p = makePair();
    connect(p);
    const old = datagrams(p.b.sendPacket(ipv4Udp("10.100.0.2", "10.100.0.1", "late"), p.clock.now))[0]!.data;
    // nobody talks for REJECT_AFTER_TIME
    const t = p.clock.now + REJECT_AFTER_TIME;
    expect(drops(p.a.receiveDatagram(old, B_ENDPOINT, t))).toEqual(["keypair-expired"]);
    // sending now needs a fresh handshake
    const out = p.b.sendPacket(ipv4Udp("10.100.0.2", "10.100.0.1"), t);
    expect(datagrams(out).map((d) => messageType(d.data))).toEqual([1]);
    // a side left alone forgets its keys after 3 × REJECT_AFTER_TIME
    const zeroed = p.a.tick(p.clock.now + 3 * REJECT_AFTER_TIME);
    expect(events(zeroed)).toContain("keys-zeroed");
    expect(p.a.peerStatus(p.bKey)!.hasSession).toBe(false);
  });

  test("the initiator rekeys at the last minute when it only receives", () => {
    const p = makePair();
    connect(p);
    const t = p.clock.now + REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT + 1;
    p.clock.now = t;
    // a's session is still valid for sending (age < REJECT_AFTER_TIME)
    const d = datagrams(p.a.sendPacket(ipv4Udp("10.100.0.1", "10.100.0.2"), t))[0]!.data;
    const out = p.b.receiveDatagram(d, A_ENDPOINT, t);
    expect(packets(out).length).toBe(1);
    expect(datagrams(out).map((x) => messageType(x.data))).toEqual([1]);
  });
});

describe("roaming", () => {
  test("an authenticated packet from a new address moves the endpoint", () => {
    const p = makePair();
    connect(p);
    const moved = { address: "203.0.113.50", port: 61000 };
    const d = datagrams(p.b.sendPacket(ipv4Udp("10.100.0.2", "10.100.0.1", "roam"), p.clock.now))[0]!.data;
    const out = p.a.receiveDatagram(d, moved, p.clock.now);
    expect(out).toContainEqual({ kind: "peer-event", peer: p.bKey, event: "endpoint-changed", endpoint: moved });
    expect(p.a.peerStatus(p.bKey)!.endpoint).toEqual(moved);
    const reply = datagrams(p.a.sendPacket(ipv4Udp("10.100.0.1", "10.100.0.2"), p.clock.now));
    expect(reply[0]!.to).toEqual(moved);
  });

  test("an unauthenticated packet from a new address does not move it", () => {
    const p = makePair();
    connect(p);
    const d = datagrams(p.b.sendPacket(ipv4Udp("10.100.0.2", "10.100.0.1"), p.clock.now))[0]!.data;
    const forged = new Uint8Array(d);
    forged[20]! ^= 1;
    p.a.receiveDatagram(forged, { address: "203.0.113.66", port: 1 }, p.clock.now);
    expect(p.a.peerStatus(p.bKey)!.endpoint).toEqual(B_ENDPOINT);
    // nor does a replay of a genuine one
    p.a.receiveDatagram(d, B_ENDPOINT, p.clock.now);
    expect(drops(p.a.receiveDatagram(d, { address: "203.0.113.66", port: 1 }, p.clock.now))).toEqual(["replayed"]);
    expect(p.a.peerStatus(p.bKey)!.endpoint).toEqual(B_ENDPOINT);
  });
});

describe("cookie reply under load", () => {
  test("under load, an initiation without mac2 gets a cookie reply; the retry with mac2 is accepted", () => {
    const p = makePair({ a: { underLoad: true } });
    const init = datagrams(p.b.sendPacket(ipv4Udp("10.100.0.2", "10.100.0.1", "loaded"), p.clock.now))[0]!.data;
    expect(init.subarray(132).every((x) => x === 0)).toBe(true); // no cookie yet: mac2 zero
    const out1 = p.a.receiveDatagram(init, B_ENDPOINT, p.clock.now);
    expect(drops(out1)).toEqual(["under-load-cookie-sent"]);
    const cookieReply = datagrams(out1)[0]!;
    expect(cookieReply.to).toEqual(B_ENDPOINT);
    expect(cookieReply.data.length).toBe(MessageCookieReplySize);
    expect(messageType(cookieReply.data)).toBe(3);
    expect(p.b.receiveDatagram(cookieReply.data, A_ENDPOINT, p.clock.now)).toEqual([]);
    // a forged/duplicate cookie reply does not open under the new mac1 later, and is dropped
    p.clock.now += REKEY_TIMEOUT;
    const retry = datagrams(p.b.tick(p.clock.now))[0]!.data;
    expect(messageType(retry)).toBe(1);
    expect(retry.subarray(132).some((x) => x !== 0)).toBe(true); // mac2 present
    const out = p.pump("a", p.a.receiveDatagram(retry, B_ENDPOINT, p.clock.now));
    expect(events(out)).toContain("handshake-complete");
    expect(p.aInbox.map(payloadOf)).toEqual(["loaded"]);
  });

  test("under load, a source holding a cookie still gets only ~20 handshakes a second processed (wireguard-go's ratelimiter)", () => {
    const p = makePair({ a: { underLoad: true } });
    const init = datagrams(p.b.sendPacket(ipv4Udp("10.100.0.2", "10.100.0.1"), p.clock.now))[0]!.data;
    const reply = datagrams(p.a.receiveDatagram(init, B_ENDPOINT, p.clock.now))[0]!.data;
    p.b.receiveDatagram(reply, A_ENDPOINT, p.clock.now);
    p.clock.now += REKEY_TIMEOUT;
    const retry = datagrams(p.b.tick(p.clock.now))[0]!.data; // with mac2
    // 30 copies at one instant: the burst (5) reaches the handshake code, the rest never does
    const reasons = Array.from({ length: 30 }, () => drops(p.a.receiveDatagram(retry, B_ENDPOINT, p.clock.now))).flat();
    expect(reasons.filter((r) => r === "handshake-rate-limited").length).toBe(25);
    // a second later the source has 20 more
    p.clock.now += 1000;
    const later = Array.from({ length: 30 }, () => drops(p.a.receiveDatagram(retry, B_ENDPOINT, p.clock.now))).flat();
    expect(later.filter((r) => r === "handshake-rate-limited").length).toBe(25);
  });

  test("a cookie bound to another source address does not pass mac2", () => {
    const p = makePair({ a: { underLoad: true } });
    const init = datagrams(p.b.sendPacket(ipv4Udp("10.100.0.2", "10.100.0.1"), p.clock.now))[0]!.data;
    const reply = datagrams(p.a.receiveDatagram(init, B_ENDPOINT, p.clock.now))[0]!.data;
    p.b.receiveDatagram(reply, A_ENDPOINT, p.clock.now);
    p.clock.now += REKEY_TIMEOUT;
    const retry = datagrams(p.b.tick(p.clock.now))[0]!.data;
    expect(drops(p.a.receiveDatagram(retry, { address: "198.51.100.8", port: 40000 }, p.clock.now))).toEqual(["under-load-cookie-sent"]);
  });

  test("a garbage cookie reply is dropped", () => {
    const p = makePair();
    p.b.sendPacket(ipv4Udp("10.100.0.2", "10.100.0.1"), p.clock.now);
    const junk = new Uint8Array(MessageCookieReplySize);
    junk[0] = 3;
    expect(drops(p.b.receiveDatagram(junk, A_ENDPOINT, p.clock.now))).toEqual(["bad-cookie-reply"]);
  });

  test("automatic under-load after a burst of handshakes", () => {
    const c = getDefaultCrypto();
    const a = new WireGuardDevice({ privateKey: c.generatePrivateKey(), now: 0, underLoadThreshold: 3 });
    const b = new WireGuardDevice({ privateKey: c.generatePrivateKey(), now: 0 });
    a.addPeer({ publicKey: b.publicKey, allowedIPs: ["10.100.0.2/32"] });
    b.addPeer({ publicKey: a.publicKey, allowedIPs: ["0.0.0.0/0"], endpoint: A_ENDPOINT });
    const reasons: string[] = [];
    for (let i = 0; i < 6; i++) {
      const init = datagrams(b.tick(i * REKEY_TIMEOUT).concat(b.sendPacket(ipv4Udp("10.100.0.2", "10.100.0.1"), i * REKEY_TIMEOUT)))[0];
      if (init === undefined) continue;
      reasons.push(...drops(a.receiveDatagram(init.data, B_ENDPOINT, 100 + i)));
    }
    expect(reasons).toContain("under-load-cookie-sent");
  });
});

describe("cryptokey routing", () => {
  test("an inner packet whose source is not in the peer's allowed IPs is dropped", () => {
    const p = makePair();
    connect(p);
    const spoof = datagrams(p.b.sendPacket(ipv4Udp("10.100.0.9", "10.100.0.1", "spoof"), p.clock.now))[0]!.data;
    expect(drops(p.a.receiveDatagram(spoof, B_ENDPOINT, p.clock.now))).toEqual(["source-not-allowed"]);
    const spoof6 = datagrams(p.b.sendPacket(ipv6Udp("fd10:100::9", "fd10:100::1"), p.clock.now))[0]!.data;
    expect(drops(p.a.receiveDatagram(spoof6, B_ENDPOINT, p.clock.now))).toEqual(["source-not-allowed"]);
    expect(p.aInbox.map(payloadOf)).toEqual(["first"]);
  });

  test("a non-IP inner packet is dropped", () => {
    const p = makePair();
    connect(p);
    const bad = ipv4Udp("10.100.0.2", "10.100.0.1");
    bad[3] = 200; // claims more bytes than it has
    expect(drops(p.b.sendPacket(bad, p.clock.now))).toEqual(["invalid-inner-packet"]);
  });

  test("outgoing packets go to the peer with the longest matching prefix; no match is dropped", () => {
    const c = getDefaultCrypto();
    const gw = new WireGuardDevice({ privateKey: c.generatePrivateKey(), now: 0 });
    const k1 = c.publicKey(c.generatePrivateKey());
    const k2 = c.publicKey(c.generatePrivateKey());
    const k3 = c.publicKey(c.generatePrivateKey());
    const p1 = gw.addPeer({ publicKey: k1, allowedIPs: ["10.0.0.0/8"], endpoint: { address: "192.0.2.1", port: 1 } });
    const p2 = gw.addPeer({ publicKey: k2, allowedIPs: ["10.1.0.0/16", "2001:db8::/32"], endpoint: { address: "192.0.2.2", port: 2 } });
    const p3 = gw.addPeer({ publicKey: k3, allowedIPs: ["10.1.2.3/32", "2001:db8:1::/48"], endpoint: { address: "192.0.2.3", port: 3 } });
    let now = 0;
    const to = (dst: string) =>
      datagrams(gw.sendPacket(dst.includes(":") ? ipv6Udp("fd00::1", dst) : ipv4Udp("10.200.0.1", dst), (now += REKEY_TIMEOUT)))[0]?.to.port;
    // every new peer: initiation goes to its endpoint
    expect(to("10.9.9.9")).toBe(1);
    expect(to("10.1.9.9")).toBe(2);
    expect(to("10.1.2.3")).toBe(3);
    expect(to("2001:db8:2::1")).toBe(2);
    expect(to("2001:db8:1::1")).toBe(3);
    expect(drops(gw.sendPacket(ipv4Udp("10.200.0.1", "192.168.1.1"), 0))).toEqual(["no-route"]);
    expect(gw.peerStatus(p2)!.allowedIPs.sort()).toEqual(["10.1.0.0/16", "2001:db8::/32"]);
    gw.removePeer(p3);
    expect(datagrams(gw.sendPacket(ipv4Udp("10.200.0.1", "10.1.2.3"), (now += REKEY_TIMEOUT)))[0]!.to.port).toBe(2);
    expect(gw.peers()).toEqual([p1, p2]);
  });
});
