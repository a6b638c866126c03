// Property tests: the parser never throws, emits only documented events in
// a valid order, is insensitive to how the bytes are cut, and reads back
// what the serialiser wrote.
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { Http1Parser, type ParseEvent, type RequestHead, type ResponseHead, type Role } from "../../../app/endpoints/http1/parser.ts";
import type { HeaderList } from "../../../app/endpoints/http1/headers.ts";
import { encodeChunk, encodeLastChunk, serializeRequestHead, serializeResponseHead } from "../../../app/endpoints/http1/serialize.ts";
import { concat, dec, normalise } from "./wire.ts";

const RUNS = 300;
const CODES = new Set([400, 413, 431, 501, 502, 505]);

/** Checks the event grammar: (informational* head body* end)* [upgrade raw*] [error]. */
function checkGrammar(role: Role, events: ParseEvent[], from: "idle" | "body" | "raw" = "idle"): "idle" | "body" | "raw" | "dead" {
  let st: "idle" | "body" | "raw" | "dead" = from;
  for (const e of events) {
    if (st === "dead") throw new Error(`event after error: ${e.type}`);
    switch (e.type) {
      case "error":
        if (!CODES.has(e.code)) throw new Error(`undocumented code ${e.code}`);
        if (role === "response" && e.code !== 502) throw new Error(`response error ${e.code}`);
        if (typeof e.message !== "string" || e.message.length === 0) throw new Error("error without message");
        st = "dead";
        break;
      case "informational":
        if (role !== "response" || st !== "idle") throw new Error("informational out of place");
        break;
      case "head":
        if (st !== "idle") throw new Error("head out of place");
        st = "body";
        break;
      case "body":
        if (st !== "body" || !(e.data instanceof Uint8Array) || e.data.length === 0) throw new Error("body out of place");
        break;
      case "end":
        if (st !== "body") throw new Error("end out of place");
        st = "idle";
        break;
      case "upgrade":
        if (st !== "idle") throw new Error("upgrade out of place");
        st = "raw";
        break;
      case "raw":
        if (st !== "raw") throw new Error("raw out of place");
        break;
      default: {
        const never: never = e;
        throw new Error(`unknown event ${JSON.stringify(never)}`);
      }
    }
  }
  return st;
}

/** Feed chunks; decide any pending upgrade with `accept`; check the grammar throughout. */
function run(role: Role, chunks: Uint8Array[], accept: boolean, methods: string[] = []): ParseEvent[] {
  const p = new Http1Parser(role, { maxHeadBytes: 2048, maxHeaders: 20 });
  for (const m of methods) p.expectResponseTo(m);
  const all: ParseEvent[] = [];
  for (const c of chunks) {
    all.push(...p.push(c));
    if (p.awaitingUpgrade) all.push(...(accept ? p.acceptUpgrade() : p.declineUpgrade()));
  }
  all.push(...p.end());
  checkGrammar(role, all);
  return all;
}

function splitAt(bytes: Uint8Array, points: number[]): Uint8Array[] {
  const cutsAt = [...new Set(points.map((p) => p % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const c of cutsAt) {
    out.push(bytes.subarray(prev, c));
    prev = c;
  }
  out.push(bytes.subarray(prev));
  return out;
}

// ---- generators -------------------------------------------------------

const token = fc.stringMatching(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,12}$/);
const FRAMING = new Set(["content-length", "transfer-encoding", "connection", "upgrade", "expect", "te", "trailer"]);
const fieldName = token.filter((n) => !FRAMING.has(n.toLowerCase()));
const fieldValue = fc.stringMatching(/^([\x21-\x7e\x80-\xff]([\x20\x09\x21-\x7e\x80-\xff]{0,20}[\x21-\x7e\x80-\xff])?)?$/);
const headers: fc.Arbitrary<HeaderList> = fc.array(fc.tuple(fieldName, fieldValue), { maxLength: 10 });
const target = fc.oneof(fc.stringMatching(/^\/[\x21-\x7e]{0,40}$/), fc.constant("*"), fc.constant("http://h.example/x?y"));
const method = fc.oneof(token, fc.constantFrom("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"));
const body = fc.uint8Array({ maxLength: 200 });
const framing = fc.constantFrom("none", "length", "chunked");
const bodyPieces = fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 5 });

interface GenRequest {
  method: string;
  target: string;
  headers: HeaderList;
  framing: "none" | "length" | "chunked";
  pieces: Uint8Array[];
  trailers: HeaderList;
}

const request: fc.Arbitrary<GenRequest> = fc.record({
  method: method.filter((m) => m !== "CONNECT"),
  target,
  headers,
  framing,
  pieces: bodyPieces,
  trailers: fc.array(fc.tuple(fieldName, fieldValue), { maxLength: 3 }),
});

function encodeRequest(r: GenRequest): { wire: Uint8Array; head: Pick<RequestHead, "method" | "target" | "headers" | "bodyKind">; body: Uint8Array; trailers?: HeaderList } {
  const h: HeaderList = r.headers.map(([n, v]) => [n, v]);
  const bodyBytes = r.framing === "none" ? new Uint8Array(0) : concat(...r.pieces);
  if (r.framing === "length") h.push(["Content-Length", String(bodyBytes.length)]);
  if (r.framing === "chunked") h.push(["Transfer-Encoding", "chunked"]);
  const headBytes = serializeRequestHead({ method: r.method, target: r.target, headers: h });
  const parts = [headBytes];
  if (r.framing === "length") parts.push(bodyBytes);
  if (r.framing === "chunked") parts.push(...r.pieces.flatMap(encodeChunk), encodeLastChunk(r.trailers));
  const bodyKind: RequestHead["bodyKind"] =
    r.framing === "none" ? { kind: "none" } : r.framing === "length" ? { kind: "length", length: bodyBytes.length } : { kind: "chunked" };
  const trailers = r.framing === "chunked" && r.trailers.length > 0 ? r.trailers : undefined;
  return { wire: concat(...parts), head: { method: r.method, target: r.target, headers: h, bodyKind }, body: bodyBytes, ...(trailers ? { trailers } : {}) };
}

// ---- properties -------------------------------------------------------

describe("fuzz", () => {
  test("random bytes never throw and give only documented events", () => {
    fc.assert(
      fc.property(fc.constantFrom<Role>("request", "response"), fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), fc.boolean(), (role, chunks, accept) => {
        run(role, chunks, accept, ["GET", "HEAD", "CONNECT"]);
      }),
      { numRuns: RUNS * 3 },
    );
  });

  test("random bytes after a valid head never throw", () => {
    fc.assert(
      fc.property(request, fc.uint8Array({ maxLength: 200 }), fc.array(fc.nat(), { maxLength: 4 }), fc.boolean(), (r, junk, points, accept) => {
        const { wire } = encodeRequest(r);
        run("request", splitAt(concat(wire, junk), points), accept);
      }),
      { numRuns: RUNS },
    );
  });

  test("mutated and truncated valid messages never throw", () => {
    const mutation = fc.record({ pos: fc.nat(), byte: fc.constantFrom(0x00, 0x0a, 0x0d, 0x20, 0x3a, 0x3b, 0x30, 0x66, 0x7f, 0xff, 0x09), op: fc.constantFrom("set", "insert", "delete") });
    fc.assert(
      fc.property(
        fc.constantFrom<Role>("request", "response"),
        request,
        fc.array(mutation, { maxLength: 4 }),
        fc.option(fc.nat()),
        fc.array(fc.nat(), { maxLength: 4 }),
        fc.boolean(),
        (role, r, muts, cut, points, accept) => {
          let bytes = Array.from(encodeRequest(r).wire);
          if (role === "response") bytes = Array.from(serializeResponseHead({ status: 200, headers: r.headers })).concat(bytes.slice(bytes.indexOf(10) + 1));
          for (const m of muts) {
            const at = m.pos % (bytes.length + 1);
            if (m.op === "set" && at < bytes.length) bytes[at] = m.byte;
            else if (m.op === "insert") bytes.splice(at, 0, m.byte);
            else if (m.op === "delete") bytes.splice(at, 1);
          }
          if (cut !== null) bytes = bytes.slice(0, cut % (bytes.length + 1));
          run(role, splitAt(new Uint8Array(bytes), points), accept, ["GET", "HEAD"]);
        },
      ),
      { numRuns: RUNS * 2 },
    );
  });

  test("how the bytes are cut does not change the events", () => {
    fc.assert(
      fc.property(fc.array(request, { minLength: 1, maxLength: 3 }), fc.array(fc.nat(), { maxLength: 6 }), (rs, points) => {
        const wire = concat(...rs.map((r) => encodeRequest(r).wire));
        const whole = normalise(run("request", [wire], false));
        const cutUp = normalise(run("request", splitAt(wire, points), false));
        expect(cutUp).toEqual(whole);
      }),
      { numRuns: RUNS },
    );
  });
});

describe("round trip", () => {
  test("serializeRequestHead -> parse gives the same head, body and trailers", () => {
    fc.assert(
      fc.property(request, fc.array(fc.nat(), { maxLength: 4 }), (r, points) => {
        const { wire, head, body: bodyBytes, trailers } = encodeRequest(r);
        const ev = normalise(run("request", splitAt(wire, points), false));
        const h = ev[0];
        if (h?.type !== "head") throw new Error(`expected head, got ${JSON.stringify(ev)}`);
        const got = h.head as RequestHead;
        expect({ method: got.method, target: got.target, headers: got.headers, bodyKind: got.bodyKind }).toEqual(head);
        expect(got.version).toBe("1.1");
        expect(got.keepAlive).toBe(true);
        const bodyEv = ev.find((e) => e.type === "body");
        expect(bodyEv?.type === "body" ? bodyEv.data : "").toBe(dec(bodyBytes));
        const endEv = ev[ev.length - 1];
        expect(endEv).toEqual(trailers ? { type: "end", trailers } : { type: "end" });
      }),
      { numRuns: RUNS },
    );
  });

  test("serializeResponseHead -> parse gives the same head", () => {
    const status = fc.integer({ min: 200, max: 599 }).filter((s) => s !== 204 && s !== 304);
    fc.assert(
      fc.property(status, fc.option(fieldValue), headers, body, (st, reason, hs, b) => {
        const h: HeaderList = [...hs, ["Content-Length", String(b.length)]];
        const wire = concat(serializeResponseHead(reason === null ? { status: st, headers: h } : { status: st, reason, headers: h }), b);
        const ev = normalise(run("response", [wire], false, ["GET"]));
        const head = ev[0];
        if (head?.type !== "head") throw new Error(`expected head, got ${JSON.stringify(ev)}`);
        const got = head.head as ResponseHead;
        expect(got.status).toBe(st);
        if (reason !== null) expect(got.reason).toBe(reason);
        expect(got.headers).toEqual(h);
        expect(got.bodyKind).toEqual({ kind: "length", length: b.length });
        expect(ev[ev.length - 1]).toEqual({ type: "end" });
      }),
      { numRuns: RUNS },
    );
  });
});
