// What the DNS-VIP responder does with one query, without I/O:
//
//   1. fewer than 12 bytes (no header) or QR set (a response): drop
//   2. a standard query for a local name (clawpatrol.internal) or a
//      VIP-bound hostname: answer it here
//   3. a message dns-packet cannot decode: FORMERR (RFC 1035 §4.1.1)
//   4. anything else: forward verbatim to the upstream resolver
//
// and the error answers the shell sends (FORMERR, SERVFAIL on an upstream
// timeout), built from the query's own header so they work even when the
// question cannot be decoded.
import dnsPacket from "dns-packet";
import { localAnswer, type LocalName } from "../net/stack/local-names.ts";

/** RFC 1035 §4.1.1. */
export const DNS_HEADER_LEN = 12;
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2 } as const;

export type QueryDecision =
  | { kind: "answer"; message: Uint8Array; why: "local" | "formerr" }
  | { kind: "forward" }
  | { kind: "drop"; why: "short" | "not-a-query" };

export function decideQuery(query: Uint8Array, names: Map<string, LocalName>): QueryDecision {
  if (query.length < DNS_HEADER_LEN) return { kind: "drop", why: "short" };
  if (query[2]! & 0x80) return { kind: "drop", why: "not-a-query" };
  const local = localAnswer(query, names);
  if (local) return { kind: "answer", message: local, why: "local" };
  try {
    dnsPacket.decode(Buffer.from(query.buffer, query.byteOffset, query.length));
  } catch {
    return { kind: "answer", message: errorAnswer(query, RCODE.FORMERR), why: "formerr" };
  }
  return { kind: "forward" };
}

/**
 * An error answer to `query` (which has at least a header): same id and
 * opcode, RD echoed, RA set, the given RCODE. The question is echoed when it
 * decodes, so a stub resolver can match the answer (RFC 5452 §9.1).
 */
export function errorAnswer(query: Uint8Array, rcode: number): Uint8Array {
  const id = (query[0]! << 8) | query[1]!;
  const opcode = (query[2]! >> 3) & 0x0f;
  const rd = query[2]! & 0x01;
  if (rcode !== RCODE.FORMERR) {
    try {
      const q = dnsPacket.decode(Buffer.from(query.buffer, query.byteOffset, query.length));
      if (opcode === 0 && (q.questions?.length ?? 0) > 0) {
        const flags = dnsPacket.RECURSION_AVAILABLE | (rd ? dnsPacket.RECURSION_DESIRED : 0) | rcode;
        return dnsPacket.encode({ id, type: "response", flags, questions: q.questions ?? [] });
      }
    } catch {
      /* fall through to a header-only answer */
    }
  }
  const out = new Uint8Array(DNS_HEADER_LEN);
  out[0] = id >> 8;
  out[1] = id & 0xff;
  out[2] = 0x80 | (opcode << 3) | rd;
  out[3] = 0x80 | (rcode & 0x0f);
  return out;
}
