// decideQuery/errorAnswer: what the responder does with one query, no sockets.
import { expect, test } from "bun:test";
import dnsPacket from "dns-packet";
import { decideQuery, errorAnswer, RCODE } from "../../../app/dns/message.ts";
import { localNameTable } from "../../../app/net/stack/local-names.ts";

const names = localNameTable({ "clawpatrol.internal": "10.77.0.1", "db.internal.test": "100.80.0.1" });
const q = (name: string, type: dnsPacket.RecordType = "A", id = 7) =>
  new Uint8Array(dnsPacket.encode({ id, type: "query", flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: "IN" }] }));

test.each([
  ["no header", new Uint8Array(11), { kind: "drop", why: "short" }],
  ["a response", new Uint8Array(dnsPacket.encode({ id: 1, type: "response", questions: [] })), { kind: "drop", why: "not-a-query" }],
  ["another name", q("example.com"), { kind: "forward" }],
  ["a local name asked for TXT: answered here (empty NOERROR)", q("db.internal.test", "TXT"), { kind: "answer", why: "local" }],
] as const)("%s", (_, query, expected) => {
  expect(decideQuery(query, names)).toMatchObject(expected);
});

test("a VIP name gets its A record, the id kept", () => {
  const d = decideQuery(q("DB.internal.test.", "A", 99), names);
  if (d.kind !== "answer") throw new Error(d.kind);
  const a = dnsPacket.decode(Buffer.from(d.message));
  expect(a.id).toBe(99);
  expect(a.answers?.map((x) => (x as { data: string }).data)).toEqual(["100.80.0.1"]);
});

test("an undecodable query: FORMERR with its id and opcode, header only", () => {
  const bad = new Uint8Array([0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0x3f]);
  const d = decideQuery(bad, names);
  if (d.kind !== "answer") throw new Error(d.kind);
  expect(d.why).toBe("formerr");
  expect([...d.message]).toEqual([0xab, 0xcd, 0x81, 0x81, 0, 0, 0, 0, 0, 0, 0, 0]);
});

test("SERVFAIL echoes the question so the stub can match it", () => {
  const a = dnsPacket.decode(Buffer.from(errorAnswer(q("slow.example", "AAAA", 5), RCODE.SERVFAIL)));
  expect(a.id).toBe(5);
  expect(a.type).toBe("response");
  expect((a.flags ?? 0) & 0x0f).toBe(RCODE.SERVFAIL);
  expect(a.questions).toEqual([{ name: "slow.example", type: "AAAA", class: "IN" }]);
});

test("fuzz: any bytes give drop, forward or an answer, never a throw", () => {
  const valid = q("db.internal.test");
  for (let i = 0; i < 2000; i++) {
    const cut = valid.slice(0, Math.floor(Math.random() * (valid.length + 1)));
    const junk = new Uint8Array(Math.floor(Math.random() * 20)).map(() => (Math.random() * 256) | 0);
    const msg = new Uint8Array([...cut, ...junk]);
    const d = decideQuery(msg, names);
    expect(["drop", "forward", "answer"]).toContain(d.kind);
  }
});
