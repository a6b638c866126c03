// Names the gateway answers itself in device DNS (e.g. clawpatrol.internal
// -> the gateway's tunnel address), before anything is forwarded.
//
// Only a standard query (opcode 0) with exactly one IN question for a
// configured name is answered: A (or AAAA, for an IPv6 address) gets the
// one record, every other type an empty NOERROR answer (the name exists,
// it has no data of that type). Anything else returns undefined and takes
// the usual path to the resolver.
import dnsPacket from "dns-packet";
import { parseIp } from "../ipaddr.ts";

/** Seconds a local answer may be cached. */
export const LOCAL_NAME_TTL = 60;

export interface LocalName {
  address: string;
  family: 4 | 6;
}

/** Canonical form of a DNS name for lookup: lower case, no trailing dot. */
export function canonicalName(name: string): string {
  const n = name.toLowerCase();
  return n.endsWith(".") ? n.slice(0, -1) : n;
}

/** Validate and index `name -> address`; throws on an address that is not an IP literal. */
export function localNameTable(names: Map<string, string> | Record<string, string>): Map<string, LocalName> {
  const out = new Map<string, LocalName>();
  const entries = names instanceof Map ? names.entries() : Object.entries(names);
  for (const [name, address] of entries) {
    const b = parseIp(address);
    if (b === undefined) throw new Error(`local name ${name}: invalid address "${address}"`);
    out.set(canonicalName(name), { address, family: b.length === 4 ? 4 : 6 });
  }
  return out;
}

/** The answer to `query` when it asks about a local name, else undefined. */
export function localAnswer(query: Uint8Array, names: Map<string, LocalName>): Uint8Array | undefined {
  if (names.size === 0 || query.length < 12) return undefined;
  if (query[2]! & 0x80) return undefined; // a response, not a query
  if (((query[2]! >> 3) & 0x0f) !== 0) return undefined; // not a standard query
  let q: dnsPacket.DecodedPacket;
  try {
    q = dnsPacket.decode(Buffer.from(query.buffer, query.byteOffset, query.length));
  } catch {
    return undefined;
  }
  const questions = q.questions ?? [];
  if (questions.length !== 1) return undefined;
  const question = questions[0]!;
  if (question.class !== undefined && question.class !== "IN") return undefined;
  const entry = names.get(canonicalName(question.name));
  if (entry === undefined) return undefined;
  const answers: dnsPacket.Answer[] = [];
  if (question.type === "A" && entry.family === 4) {
    answers.push({ type: "A", class: "IN", name: question.name, ttl: LOCAL_NAME_TTL, data: entry.address });
  } else if (question.type === "AAAA" && entry.family === 6) {
    answers.push({ type: "AAAA", class: "IN", name: question.name, ttl: LOCAL_NAME_TTL, data: entry.address });
  }
  const flags = dnsPacket.AUTHORITATIVE_ANSWER | dnsPacket.RECURSION_AVAILABLE | (q.flag_rd ? dnsPacket.RECURSION_DESIRED : 0);
  return dnsPacket.encode({ id: q.id ?? 0, type: "response", flags, questions: [question], answers });
}
