// UDP, ICMP, fragments and malformed input through the NetStack.
import { afterEach, describe, expect, test } from "bun:test";
import dgram from "node:dgram";
import os from "node:os";
import dnsPacket from "dns-packet";
import * as ipv4 from "../../../app/net/stack/wire/ipv4.ts";
import * as ipv6 from "../../../app/net/stack/wire/ipv6.ts";
import * as udp from "../../../app/net/stack/wire/udp.ts";
import * as icmp from "../../../app/net/stack/wire/icmp.ts";
import * as tcp from "../../../app/net/stack/wire/tcp.ts";
import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_UDP } from "../../../app/net/stack/wire/checksum.ts";
import { emitTcpPacket } from "../../../app/net/stack/ip.ts";
import { deviceRecv, deviceSend, equalBytes, harness, ip, pattern, until, type Harness } from "./helpers.ts";

let h: Harness | null = null;
const cleanups: (() => void)[] = [];
afterEach(() => {
  h?.close();
  h = null;
  for (const c of cleanups.splice(0)) c();
});

function v4udp(src: string, sport: number, dst: string, dport: number, payload: Uint8Array): Uint8Array {
  const s = ip(src), d = ip(dst);
  return ipv4.emit(
    { src: s, dst: d, protocol: IPPROTO_UDP, ttl: 64, tos: 0, ident: 7, dontFragment: false, moreFragments: false, fragmentOffset: 0 },
    udp.emit({ srcPort: sport, dstPort: dport }, payload, s, d),
  );
}

function v6udp(src: string, sport: number, dst: string, dport: number, payload: Uint8Array): Uint8Array {
  const s = ip(src), d = ip(dst);
  return ipv6.emit(
    { src: s, dst: d, nextHeader: IPPROTO_UDP, hopLimit: 64, trafficClass: 0, flowLabel: 0, fragment: null, extensionLen: 0 },
    udp.emit({ srcPort: sport, dstPort: dport }, payload, s, d),
  );
}

function udpOf(r: { src: Uint8Array; dst: Uint8Array; payload: Uint8Array }) {
  const u = udp.parse(r.payload, r.src, r.dst);
  if (!u.ok) throw new Error(u.reason);
  return u;
}

function localAddress(): string | undefined {
  return Object.values(os.networkInterfaces()).flat().find((a) => a && !a.internal && a.family === "IPv4")?.address;
}

describe("netstack udp", () => {
  test("UDP :443 (QUIC) gets ICMP port unreachable quoting the datagram", async () => {
    h = harness();
    const pkt = v4udp("10.0.0.2", 50000, "142.250.1.1", 443, pattern(1200, 1));
    h.device.inject(pkt);
    await until(() => h!.device.other.length === 1);
    const r = h.device.other[0]!;
    expect(r.protocol).toBe(IPPROTO_ICMP);
    expect(r.src).toEqual(ip("142.250.1.1"));
    expect(r.dst).toEqual(ip("10.0.0.2"));
    const m = icmp.parseV4(r.payload);
    if (!m.ok) throw new Error(m.reason);
    expect(m.repr).toMatchObject({ kind: "dest-unreachable", code: icmp.ICMPV4_UNREACH_PORT });
    expect(equalBytes(m.payload.subarray(0, 28), pkt.subarray(0, 28))).toBe(true); // IP header + UDP header
    expect(r.raw.length).toBeLessThanOrEqual(576);
    expect(h.stack.stats().udp.quicRefused).toBe(1);
  });

  test("UDP :443 over IPv6 gets ICMPv6 port unreachable", async () => {
    h = harness();
    const pkt = v6udp("fd00::2", 50001, "2001:db8::443", 443, pattern(100, 2));
    h.device.inject(pkt);
    await until(() => h!.device.other.length === 1);
    const r = h.device.other[0]!;
    expect(r.protocol).toBe(IPPROTO_ICMPV6);
    const m = icmp.parseV6(r.payload, r.src, r.dst);
    if (!m.ok) throw new Error(m.reason);
    expect(m.repr).toMatchObject({ kind: "dest-unreachable", code: icmp.ICMPV6_UNREACH_PORT });
    expect(equalBytes(m.payload, pkt)).toBe(true);
  });

  test("DNS is forwarded to the resolver and answered from the address the device queried", async () => {
    const server = dgram.createSocket("udp4");
    cleanups.push(() => server.close());
    const seenIds: number[] = [];
    server.on("message", (msg, rinfo) => {
      const q = dnsPacket.decode(msg);
      seenIds.push(q.id!);
      const answer = dnsPacket.encode({
        id: q.id, type: "response", flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE, questions: q.questions,
        answers: [{ type: "A", name: q.questions![0]!.name, ttl: 60, data: "203.0.113.77" }],
      });
      server.send(answer, rinfo.port, rinfo.address);
    });
    await new Promise<void>((r) => server.bind(0, "127.0.0.1", () => r()));
    h = harness({ dns: { resolver: `127.0.0.1:${server.address().port}` } });
    const query = dnsPacket.encode({ id: 0x1234, type: "query", flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: "A", name: "example.test" }] });
    h.device.inject(v4udp("10.0.0.2", 53111, "8.8.8.8", 53, query));
    await until(() => h!.device.other.length === 1, 3000, "dns answer");
    const r = h.device.other[0]!;
    expect(r.src).toEqual(ip("8.8.8.8"));
    expect(r.dst).toEqual(ip("10.0.0.2"));
    const u = udpOf(r);
    expect(u.repr).toEqual({ srcPort: 53, dstPort: 53111 });
    const a = dnsPacket.decode(Buffer.from(u.payload));
    expect(a.id).toBe(0x1234);
    expect(a.answers![0]).toMatchObject({ type: "A", name: "example.test", data: "203.0.113.77" });
    expect(seenIds.length).toBe(1);
    expect(h.stack.stats().udp).toMatchObject({ dnsForwarded: 1, dnsAnswered: 1, dnsPending: 0 });
  });

  test("other UDP is relayed per policy, replies come back with the addresses swapped", async () => {
    const addr = localAddress();
    if (addr === undefined) return; // no non-loopback interface to relay to
    const echo = dgram.createSocket("udp4");
    cleanups.push(() => echo.close());
    echo.on("message", (msg, rinfo) => echo.send(Buffer.concat([Buffer.from("echo:"), msg]), rinfo.port, rinfo.address));
    await new Promise<void>((r) => echo.bind(0, addr, () => r()));
    const port = echo.address().port;
    h = harness({ udpPolicy: () => "relay" });
    h.device.inject(v4udp("10.0.0.2", 40404, addr, port, new TextEncoder().encode("hello")));
    h.device.inject(v4udp("10.0.0.2", 40404, addr, port, new TextEncoder().encode("again")));
    await until(() => h!.device.other.length === 2, 3000, "relay replies");
    const texts = h.device.other.map((r) => {
      expect(r.src).toEqual(ip(addr));
      expect(r.dst).toEqual(ip("10.0.0.2"));
      const u = udpOf(r);
      expect(u.repr).toEqual({ srcPort: port, dstPort: 40404 });
      return new TextDecoder().decode(u.payload);
    });
    expect(texts.sort()).toEqual(["echo:again", "echo:hello"]);
    expect(h.stack.stats().udp).toMatchObject({ relayed: 2, relayReplies: 2, relayFlows: 1 });
  });

  test("a destination the policy refuses gets ICMP administratively prohibited and no relay socket", async () => {
    const asked: string[] = [];
    h = harness({ udpPolicy: () => "relay", udpDestinationAllowed: (dst) => (asked.push(`${dst.host}:${dst.port}`), dst.host !== "198.51.100.7") });
    const pkt = v4udp("10.0.0.2", 40000, "198.51.100.7", 7200, pattern(20, 3));
    h.device.inject(pkt);
    await until(() => h!.device.other.length === 1);
    const r = h.device.other[0]!;
    expect(r.src).toEqual(ip("198.51.100.7"));
    const m = icmp.parseV4(r.payload);
    if (!m.ok) throw new Error(m.reason);
    expect(m.repr).toMatchObject({ kind: "dest-unreachable", code: icmp.ICMPV4_UNREACH_ADMIN });
    expect(asked).toEqual(["198.51.100.7:7200"]);
    expect(h.stack.stats().udp.relayFlows).toBe(0);
    expect(h.stack.stats().drops["udp: destination-refused"]).toBe(1);
  });

  test("the device's UDP flow quota: flows past it get ICMP administratively prohibited; a closed flow is released", async () => {
    const addr = localAddress();
    if (addr === undefined) return; // no non-loopback interface to relay to
    const sink = dgram.createSocket("udp4");
    cleanups.push(() => sink.close());
    await new Promise<void>((r) => sink.bind(0, addr, () => r()));
    const port = sink.address().port;
    const held = new Map<string, number>();
    const events: string[] = [];
    h = harness({
      udpPolicy: () => "relay",
      udpFlowQuota: {
        open: (src, dst) => {
          if ((held.get(src) ?? 0) >= 2) return (events.push(`refused ${src} -> ${dst.port}`), false);
          held.set(src, (held.get(src) ?? 0) + 1);
          return true;
        },
        close: (src) => held.set(src, held.get(src)! - 1),
      },
    });
    // three flows (three source ports) from one device, one from another
    for (const sport of [1001, 1002, 1003]) h.device.inject(v4udp("10.0.0.2", sport, addr, port, pattern(8, 1)));
    h.device.inject(v4udp("10.0.0.3", 1001, addr, port, pattern(8, 1)));
    await until(() => h!.device.other.length === 1);
    const m = icmp.parseV4(h.device.other[0]!.payload);
    if (!m.ok) throw new Error(m.reason);
    expect(m.repr).toMatchObject({ kind: "dest-unreachable", code: icmp.ICMPV4_UNREACH_ADMIN });
    expect(events).toEqual([`refused 10.0.0.2 -> ${port}`]);
    expect(h.stack.stats().udp.relayFlows).toBe(3);
    expect(h.stack.stats().drops["udp: relay-device-quota"]).toBe(1);
    // closing the stack ends every flow: each admitted one is released
    h.close();
    h = null;
    expect([...held.values()]).toEqual([0, 0]);
  });

  test("udpPolicy drop counts; multicast and loopback destinations never leave", async () => {
    h = harness({ udpPolicy: () => "drop" });
    h.device.inject(
      v4udp("10.0.0.2", 1000, "198.51.100.1", 9999, pattern(10, 1)),
      v4udp("10.0.0.2", 5353, "224.0.0.251", 5353, pattern(10, 1)),
      v4udp("10.0.0.2", 1000, "127.0.0.1", 9999, pattern(10, 1)),
      v4udp("10.0.0.2", 1000, "169.254.169.254", 80, pattern(10, 1)),
      v6udp("fd00::2", 1000, "ff02::fb", 5353, pattern(10, 1)),
    );
    await until(() => h!.stack.stats().packetsIn === 5);
    expect(h.stack.stats().drops).toEqual({ "udp: policy-drop": 1, "ip: martian-destination": 4 });
  });
});

describe("netstack icmp", () => {
  function echoV4(src: string, dst: string, id: number): Uint8Array {
    return ipv4.emit(
      { src: ip(src), dst: ip(dst), protocol: IPPROTO_ICMP, ttl: 64, tos: 0, ident: 1, dontFragment: false, moreFragments: false, fragmentOffset: 0 },
      icmp.emitV4({ kind: "echo-request", ident: id, seqNo: 1 }, new TextEncoder().encode("ping")),
    );
  }

  test("echo to the gateway's own address is answered (v4 and v6); to others dropped", async () => {
    h = harness();
    const s6 = ip("fd00::2"), d6 = ip("fd00::1");
    const ping6 = ipv6.emit(
      { src: s6, dst: d6, nextHeader: IPPROTO_ICMPV6, hopLimit: 64, trafficClass: 0, flowLabel: 0, fragment: null, extensionLen: 0 },
      icmp.emitV6({ kind: "echo-request", ident: 9, seqNo: 3 }, new TextEncoder().encode("ping6"), s6, d6),
    );
    h.device.inject(echoV4("10.0.0.2", "10.0.0.1", 77), echoV4("10.0.0.2", "1.1.1.1", 78), ping6);
    await until(() => h!.device.other.length === 2 && h!.stack.stats().packetsIn === 3);
    const [r4, r6] = h.device.other;
    expect(r4!.src).toEqual(ip("10.0.0.1"));
    const m4 = icmp.parseV4(r4!.payload);
    if (!m4.ok) throw new Error(m4.reason);
    expect(m4.repr).toEqual({ kind: "echo-reply", ident: 77, seqNo: 1 });
    expect(new TextDecoder().decode(m4.payload)).toBe("ping");
    const m6 = icmp.parseV6(r6!.payload, r6!.src, r6!.dst);
    if (!m6.ok) throw new Error(m6.reason);
    expect(m6.repr).toEqual({ kind: "echo-reply", ident: 9, seqNo: 3 });
    expect(h.stack.stats().drops).toEqual({ "icmp: echo-not-own": 1 });
    expect(h.stack.stats().icmp.echoReplied).toBe(2);
  });
});

describe("netstack fragments and malformed input", () => {
  test("a fragmented IPv4 UDP datagram is reassembled", async () => {
    const got: Uint8Array[] = [];
    h = harness({ onUdp: (d) => (got.push(d.payload.slice()), true) });
    const s = ip("10.0.0.2"), d = ip("198.51.100.3");
    const payload = pattern(3000, 5);
    const dgram = udp.emit({ srcPort: 7000, dstPort: 7001 }, payload, s, d);
    const base = { src: s, dst: d, protocol: IPPROTO_UDP, ttl: 64, tos: 0, ident: 4242, dontFragment: false };
    const frags = [
      ipv4.emit({ ...base, moreFragments: true, fragmentOffset: 1480 }, dgram.subarray(1480, 2960)),
      ipv4.emit({ ...base, moreFragments: false, fragmentOffset: 2960 }, dgram.subarray(2960)),
      ipv4.emit({ ...base, moreFragments: true, fragmentOffset: 0 }, dgram.subarray(0, 1480)),
    ];
    h.device.inject(...frags);
    await until(() => got.length === 1);
    expect(equalBytes(got[0]!, payload)).toBe(true);
    expect(h.stack.stats().fragments).toMatchObject({ completed: 1, inFlight: 0, bufferedBytes: 0 });
  });

  test("malformed packets are counted, never thrown; the stack still serves afterwards", async () => {
    h = harness();
    const good = v4udp("10.0.0.2", 1, "198.51.100.1", 443, pattern(20, 1));
    const badCsum = good.slice();
    badCsum[10]! ^= 0xff;
    const badUdp = good.slice();
    badUdp[good.length - 1]! ^= 0xff;
    const s = ip("10.0.0.2"), d = ip("198.51.100.1");
    const tcpBad = emitTcpPacket(s, d, tcp.tcpRepr({ srcPort: 1, dstPort: 2, flags: tcp.TCP_SYN, window: 100 }), new Uint8Array(0));
    tcpBad[tcpBad.length - 1]! ^= 0x01;
    h.device.inject(
      new Uint8Array(0), new Uint8Array([0x45]), new Uint8Array([0x70, 0, 0, 0]), good.subarray(0, 25), badCsum, badUdp, tcpBad,
      ipv6.emit({ src: ip("fd00::2"), dst: ip("2001:db8::1"), nextHeader: 99, hopLimit: 1, trafficClass: 0, flowLabel: 0, fragment: null, extensionLen: 0 }, pattern(8, 1)),
    );
    // Random and mutated packets.
    let seed = 99;
    const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    for (let i = 0; i < 3000; i++) {
      const p = i % 2 === 0 ? good.slice() : pattern(1 + Math.floor(rnd() * 80), i);
      for (let k = 0; k < 3; k++) p[Math.floor(rnd() * p.length)] = Math.floor(rnd() * 256);
      h.device.inject(p);
    }
    await until(() => h!.stack.stats().packetsIn === 3008, 5000, "all input");
    const st = h.stack.stats();
    expect(st.drops["internal: exception"]).toBeUndefined();
    for (const r of ["ip: bad-version", "ipv4: truncated", "ipv4: bad-checksum", "udp: bad-checksum", "tcp: bad-checksum", "ip: unsupported-protocol"]) {
      expect(st.drops[r]).toBeGreaterThan(0);
    }
    const c = h.device.connect("10.0.0.2", 40100, "198.51.100.9", 80);
    await until(() => h!.flows.length >= 1 && c.state === "ESTABLISHED");
    const f = h.flows.find((x) => x.src.port === 40100)!;
    f.conn.write(Buffer.from("alive"));
    expect(Buffer.from(await deviceRecv(h.device, c, 5)).toString()).toBe("alive");
    await deviceSend(h.device, c, new TextEncoder().encode("x"));
  });
});
