// Names the stack answers itself (clawpatrol.internal -> the gateway's tunnel
// address), over the memory link; every other name still goes to the resolver.
import { afterEach, describe, expect, test } from "bun:test";
import dgram from "node:dgram";
import dnsPacket from "dns-packet";
import * as ipv4 from "../../../app/net/stack/wire/ipv4.ts";
import * as udp from "../../../app/net/stack/wire/udp.ts";
import { IPPROTO_UDP } from "../../../app/net/stack/wire/checksum.ts";
import { localAnswer, localNameTable } from "../../../app/net/stack/local-names.ts";
import { harness, ip, until, type Harness } from "./helpers.ts";

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

function query(id: number, name: string, type: "A" | "AAAA" | "TXT" = "A"): Uint8Array {
  return dnsPacket.encode({ id, type: "query", flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] });
}

/** A resolver that answers every A query with 203.0.113.77 and records what it saw. */
async function fakeResolver(): Promise<{ port: number; seen: string[] }> {
  const server = dgram.createSocket("udp4");
  cleanups.push(() => server.close());
  const seen: string[] = [];
  server.on("message", (msg, rinfo) => {
    const q = dnsPacket.decode(msg);
    seen.push(q.questions![0]!.name);
    server.send(
      dnsPacket.encode({
        id: q.id, type: "response", flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE, questions: q.questions,
        answers: [{ type: "A", name: q.questions![0]!.name, ttl: 60, data: "203.0.113.77" }],
      }),
      rinfo.port, rinfo.address,
    );
  });
  await new Promise<void>((r) => server.bind(0, "127.0.0.1", () => r()));
  return { port: server.address().port, seen };
}

/** RCODE as dns-packet decodes it (the typings leave it out). */
const rcode = (m: dnsPacket.DecodedPacket): string => (m as unknown as { rcode: string }).rcode;

function answerOf(h: Harness, i: number) {
  const r = h.device.other[i]!;
  const u = udp.parse(r.payload, r.src, r.dst);
  if (!u.ok) throw new Error(u.reason);
  return { r, u, msg: dnsPacket.decode(Buffer.from(u.payload)) };
}

describe("netstack local names", () => {
  test("an A query for a local name is answered by the stack, with the query's id and question", async () => {
    const resolver = await fakeResolver();
    h = harness({ dns: { resolver: `127.0.0.1:${resolver.port}` }, localNames: new Map([["clawpatrol.internal", "10.0.0.1"]]) });
    h.device.inject(v4udp("10.0.0.2", 53111, "10.0.0.1", 53, query(0x4242, "clawpatrol.internal")));
    await until(() => h!.device.other.length === 1, 3000, "local answer");
    const { r, u, msg } = answerOf(h, 0);
    expect(r.src).toEqual(ip("10.0.0.1"));
    expect(r.dst).toEqual(ip("10.0.0.2"));
    expect(u.repr).toEqual({ srcPort: 53, dstPort: 53111 });
    expect(msg.id).toBe(0x4242);
    expect(msg.type).toBe("response");
    expect(rcode(msg)).toBe("NOERROR");
    expect(msg.flag_aa).toBe(true);
    expect(msg.flag_rd).toBe(true);
    expect(msg.questions).toEqual([{ type: "A", class: "IN", name: "clawpatrol.internal" }]);
    expect(msg.answers).toHaveLength(1);
    expect(msg.answers![0]).toMatchObject({ type: "A", name: "clawpatrol.internal", data: "10.0.0.1" });
    expect(resolver.seen).toEqual([]);
    expect(h.stack.stats().udp).toMatchObject({ dnsLocal: 1, dnsForwarded: 0 });
  });

  test("AAAA (and other types) for a local IPv4 name: empty answer, NOERROR", async () => {
    const resolver = await fakeResolver();
    h = harness({ dns: { resolver: `127.0.0.1:${resolver.port}` }, localNames: new Map([["clawpatrol.internal", "10.0.0.1"]]) });
    h.device.inject(v4udp("10.0.0.2", 40001, "10.0.0.1", 53, query(7, "clawpatrol.internal", "AAAA")));
    h.device.inject(v4udp("10.0.0.2", 40002, "10.0.0.1", 53, query(8, "clawpatrol.internal", "TXT")));
    await until(() => h!.device.other.length === 2, 3000, "local answers");
    const byId = new Map([0, 1].map((i) => { const a = answerOf(h!, i).msg; return [a.id, a] as const; }));
    for (const [id, type] of [[7, "AAAA"], [8, "TXT"]] as const) {
      const a = byId.get(id)!;
      expect(rcode(a)).toBe("NOERROR");
      expect(a.answers).toEqual([]);
      expect(a.questions![0]).toMatchObject({ type, name: "clawpatrol.internal" });
    }
    expect(resolver.seen).toEqual([]);
  });

  test("names compare case-insensitively, a trailing dot is allowed, any DNS server address works", async () => {
    h = harness({ localNames: new Map([["clawpatrol.internal", "10.0.0.1"]]) });
    h.device.inject(v4udp("10.0.0.2", 40003, "8.8.8.8", 53, query(9, "ClawPatrol.INTERNAL.")));
    await until(() => h!.device.other.length === 1, 3000, "local answer");
    const { r, msg } = answerOf(h, 0);
    expect(r.src).toEqual(ip("8.8.8.8"));
    expect(msg.id).toBe(9);
    expect(msg.answers![0]).toMatchObject({ type: "A", data: "10.0.0.1" });
  });

  test("other names are still forwarded to the resolver", async () => {
    const resolver = await fakeResolver();
    h = harness({ dns: { resolver: `127.0.0.1:${resolver.port}` }, localNames: new Map([["clawpatrol.internal", "10.0.0.1"]]) });
    h.device.inject(v4udp("10.0.0.2", 40004, "10.0.0.1", 53, query(0x1234, "example.test")));
    h.device.inject(v4udp("10.0.0.2", 40005, "10.0.0.1", 53, query(0x1235, "x.clawpatrol.internal")));
    await until(() => h!.device.other.length === 2, 3000, "forwarded answers");
    const ids = [0, 1].map((i) => answerOf(h!, i).msg).map((m) => [m.id, (m.answers![0] as { data: unknown }).data]).sort();
    expect(ids).toEqual([[0x1234, "203.0.113.77"], [0x1235, "203.0.113.77"]]);
    expect(resolver.seen.sort()).toEqual(["example.test", "x.clawpatrol.internal"]);
    expect(h.stack.stats().udp).toMatchObject({ dnsLocal: 0, dnsForwarded: 2, dnsAnswered: 2 });
  });

  test("without localNames nothing is answered locally", async () => {
    const resolver = await fakeResolver();
    h = harness({ dns: { resolver: `127.0.0.1:${resolver.port}` } });
    h.device.inject(v4udp("10.0.0.2", 40006, "10.0.0.1", 53, query(1, "clawpatrol.internal")));
    await until(() => h!.device.other.length === 1, 3000, "forwarded answer");
    expect(resolver.seen).toEqual(["clawpatrol.internal"]);
  });

  test("an invalid local address is refused at construction", () => {
    expect(() => harness({ localNames: new Map([["clawpatrol.internal", "not-an-ip"]]) })).toThrow("invalid address");
  });
});

describe("localAnswer", () => {
  const names = localNameTable({ "clawpatrol.internal": "10.77.0.1", "v6.internal": "fd00::1" });

  test("responses, non-standard opcodes, several questions and garbage are not answered", () => {
    const q = query(1, "clawpatrol.internal");
    const response = Uint8Array.from(q);
    response[2]! |= 0x80;
    const notify = Uint8Array.from(q);
    notify[2] = (notify[2]! & 0x87) | (4 << 3);
    const two = dnsPacket.encode({ id: 2, type: "query", questions: [{ type: "A", name: "clawpatrol.internal" }, { type: "A", name: "clawpatrol.internal" }] });
    expect(localAnswer(response, names)).toBeUndefined();
    expect(localAnswer(notify, names)).toBeUndefined();
    expect(localAnswer(two, names)).toBeUndefined();
    expect(localAnswer(new Uint8Array(5), names)).toBeUndefined();
    expect(localAnswer(Uint8Array.from([...q.subarray(0, 14), 0xff, 0xff]), names)).toBeUndefined();
    expect(localAnswer(q, names)).toBeDefined();
  });

  test("an IPv6 local name answers AAAA and leaves A empty", () => {
    const aaaa = dnsPacket.decode(Buffer.from(localAnswer(query(3, "v6.internal", "AAAA"), names)!));
    expect(aaaa.answers![0]).toMatchObject({ type: "AAAA", data: "fd00::1" });
    const a = dnsPacket.decode(Buffer.from(localAnswer(query(4, "v6.internal", "A"), names)!));
    expect(a.answers).toEqual([]);
    expect(rcode(a)).toBe("NOERROR");
  });
});
