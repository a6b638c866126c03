// Fuzz of the frontend parser: valid messages, mutated (cut, bytes flipped,
// random bytes appended, length fields rewritten, spliced, pure noise) and
// pushed in random pieces. The only outcomes allowed are "need-more", a
// message whose bytes came from the input, or a documented WireError; the
// parser never throws. PG_FUZZ_COUNT sets the number of mutated messages
// (default 1,000,000); PG_FUZZ_SEED the seed. The backend parser gets a
// fifth as many, the same way.
import { expect, test } from "bun:test";
import { concatBytes, encodeUtf8 } from "../../../app/endpoints/postgres/wire/bytes.ts";
import {
  FrontendParser,
  decodePasswordMessage,
  decodeSASLInitialResponse,
  serializeBind,
  serializeCancelRequest,
  serializeClose,
  serializeCopyData,
  serializeCopyDone,
  serializeCopyFail,
  serializeDescribe,
  serializeExecute,
  serializeFlush,
  serializeFunctionCall,
  serializeGSSENCRequest,
  serializeParse,
  serializePasswordMessage,
  serializeQuery,
  serializeSASLInitialResponse,
  serializeSSLRequest,
  serializeStartupMessage,
  serializeSync,
  serializeTerminate,
} from "../../../app/endpoints/postgres/wire/frontend.ts";
import {
  BackendParser,
  serializeAuthenticationMD5Password,
  serializeAuthenticationSASL,
  serializeAuthenticationSASLContinue,
  serializeBackendKeyData,
  serializeCommandComplete,
  serializeCopyResponse,
  serializeErrorResponse,
  serializeNotificationResponse,
  serializeParameterStatus,
  serializeReadyForQuery,
} from "../../../app/endpoints/postgres/wire/backend.ts";

const COUNT = Number(process.env.PG_FUZZ_COUNT ?? 1_000_000);
const SEED = Number(process.env.PG_FUZZ_SEED ?? 0x5eed);

/** mulberry32: a small seeded PRNG. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const startup = [
  serializeStartupMessage([["user", "agent"], ["database", "app"], ["application_name", "psql"]]),
  serializeSSLRequest(),
  serializeGSSENCRequest(),
  serializeCancelRequest(77, new Uint8Array([9, 8, 7, 6])),
];
const normal = [
  serializeQuery("SELECT * FROM t WHERE a = 'x'; UPDATE t SET a = 1"),
  serializeParse("s", "SELECT $1, $2", [23, 25]),
  serializeBind({ portal: "", statement: "s", paramFormats: [0], params: [encodeUtf8("1"), null], resultFormats: [0, 1] }),
  serializeDescribe("S", "s"),
  serializeClose("P", "p"),
  serializeExecute("", 10),
  serializeSync(),
  serializeFlush(),
  serializeTerminate(),
  serializeCopyData(encodeUtf8("1\t2\n")),
  serializeCopyDone(),
  serializeCopyFail("stop"),
  serializeFunctionCall({ functionOid: 1598, argFormats: [1], args: [new Uint8Array([0, 0, 0, 1])], resultFormat: 0 }),
  serializePasswordMessage("placeholder"),
  serializeSASLInitialResponse("SCRAM-SHA-256", encodeUtf8("n,,n=,r=nonce")),
];

const CODES = new Set(["malformed", "too-large", "unsupported"]);
const STATES: Record<string, string> = { malformed: "08P01", "too-large": "54000", unsupported: "0A000" };
const TYPES = new Set([
  "StartupMessage", "SSLRequest", "GSSENCRequest", "CancelRequest", "Query", "Parse", "Bind", "Describe", "Close",
  "Execute", "Sync", "Flush", "Terminate", "CopyData", "CopyDone", "CopyFail", "FunctionCall", "PasswordMessage",
]);

function mutate(rand: () => number, base: Uint8Array, other: Uint8Array): Uint8Array {
  const int = (n: number) => Math.floor(rand() * n);
  let b: Uint8Array = base.slice();
  const ops = 1 + int(3);
  for (let k = 0; k < ops; k++) {
    switch (int(7)) {
      case 0: // cut
        b = b.subarray(0, int(b.length + 1));
        break;
      case 1: // flip bytes
        for (let i = 0, n = 1 + int(4); i < n && b.length > 0; i++) b[int(b.length)] = int(256);
        break;
      case 2: { // append random bytes
        const extra = new Uint8Array(int(32));
        for (let i = 0; i < extra.length; i++) extra[i] = int(256);
        b = concatBytes([b, extra]);
        break;
      }
      case 3: { // rewrite a length field with something random or near the truth
        const at = b.length > 4 && (b[0]! & 0x80) === 0 && b[0] !== 0 ? 1 : 0;
        if (b.length >= at + 4) {
          const choices = [int(0x7fffffff), -int(100), int(64), b.length - at + int(9) - 4, 0, 3, 4];
          const v = choices[int(choices.length)]!;
          b[at] = (v >>> 24) & 255;
          b[at + 1] = (v >>> 16) & 255;
          b[at + 2] = (v >>> 8) & 255;
          b[at + 3] = v & 255;
        }
        break;
      }
      case 4: // splice with another message
        b = concatBytes([b.subarray(0, int(b.length + 1)), other.subarray(int(other.length + 1))]);
        break;
      case 5: { // pure noise
        b = new Uint8Array(int(40));
        for (let i = 0; i < b.length; i++) b[i] = int(256);
        break;
      }
      default: // insert a NUL or drop one
        if (b.length > 0) {
          const i = int(b.length);
          b = b[i] === 0 ? concatBytes([b.subarray(0, i), b.subarray(i + 1)]) : concatBytes([b.subarray(0, i), new Uint8Array([0]), b.subarray(i)]);
        }
    }
  }
  return b;
}

test(`the frontend parser survives ${COUNT} mutated messages`, () => {
  const rand = prng(SEED);
  const int = (n: number) => Math.floor(rand() * n);
  const outcomes = { needMore: 0, message: 0, error: 0 };
  const started = performance.now();
  for (let n = 0; n < COUNT; n++) {
    const inStartup = rand() < 0.3;
    const pool = inStartup ? startup : normal;
    const input = mutate(rand, pool[int(pool.length)]!, normal[int(normal.length)]!);
    // small limits now and then, so the too-large path is exercised with short inputs
    const parser = new FrontendParser({
      phase: inStartup ? "startup" : "normal",
      ...(rand() < 0.1 ? { maxMessageBytes: 16 + int(64), maxDataMessageBytes: 16 + int(64) } : {}),
    });
    let out = 0;
    let dead = false;
    for (let at = 0; at < input.length && !dead; ) {
      const piece = 1 + int(input.length - at);
      parser.push(input.subarray(at, at + piece));
      at += piece;
      for (let guard = 0; ; guard++) {
        if (guard > input.length + 1) throw new Error("parser loops without consuming");
        const r = parser.next();
        if (r.kind === "need-more") {
          outcomes.needMore++;
          break;
        }
        if (r.kind === "error") {
          outcomes.error++;
          if (!CODES.has(r.error.code) || STATES[r.error.code] !== r.error.sqlstate || r.error.reason.length === 0) {
            throw new Error(`undocumented error ${JSON.stringify(r.error)}`);
          }
          if (parser.next() !== r) throw new Error("a dead parser must repeat its error");
          dead = true;
          break;
        }
        outcomes.message++;
        const m = r.message;
        if (!TYPES.has(m.type)) throw new Error(`unknown message type ${m.type}`);
        out += m.raw.length;
        if (m.type === "PasswordMessage") {
          // the body helpers must not throw either
          decodePasswordMessage(m.body);
          decodeSASLInitialResponse(m.body);
        }
      }
    }
    if (!dead && out + parser.buffered !== input.length) {
      throw new Error(`bytes lost or invented: ${out} out + ${parser.buffered} buffered != ${input.length} in`);
    }
  }
  const seconds = (performance.now() - started) / 1000;
  console.log(`fuzz: ${COUNT} mutated messages in ${seconds.toFixed(1)} s (${JSON.stringify(outcomes)})`);
  expect(outcomes.message).toBeGreaterThan(0);
  expect(outcomes.error).toBeGreaterThan(0);
  expect(outcomes.needMore).toBeGreaterThan(0);
}, 120_000);

const backend = [
  serializeAuthenticationSASL(["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]),
  serializeAuthenticationSASLContinue(encodeUtf8("r=abc,s=c2FsdA==,i=4096")),
  serializeAuthenticationMD5Password(new Uint8Array([1, 2, 3, 4])),
  serializeParameterStatus("server_version", "15.10"),
  serializeBackendKeyData(7, new Uint8Array([1, 2, 3, 4])),
  serializeReadyForQuery("T"),
  serializeErrorResponse({ severity: "ERROR", code: "42501", message: "denied", detail: "d" }),
  serializeCommandComplete("INSERT 0 5"),
  serializeCopyResponse("CopyOutResponse", 0, [0, 0]),
  serializeNotificationResponse(1, "ch", "payload"),
  new Uint8Array([0x44, 0, 0, 0, 11, 0, 1, 0, 0, 0, 1, 0x31]),
];

const BACKEND_COUNT = Math.ceil(COUNT / 5);

test(`the backend parser survives ${BACKEND_COUNT} mutated messages`, () => {
  const rand = prng(SEED + 1);
  const int = (n: number) => Math.floor(rand() * n);
  let messages = 0;
  let errors = 0;
  for (let n = 0; n < BACKEND_COUNT; n++) {
    const input = mutate(rand, backend[int(backend.length)]!, backend[int(backend.length)]!);
    const parser = new BackendParser(rand() < 0.1 ? { maxMessageBytes: 16 + int(64) } : {});
    let out = 0;
    let dead = false;
    for (let at = 0; at < input.length && !dead; ) {
      const piece = 1 + int(input.length - at);
      parser.push(input.subarray(at, at + piece));
      at += piece;
      for (;;) {
        const r = parser.next();
        if (r.kind === "need-more") break;
        if (r.kind === "error") {
          if (!CODES.has(r.error.code) || STATES[r.error.code] !== r.error.sqlstate) throw new Error(`undocumented error ${JSON.stringify(r.error)}`);
          errors++;
          dead = true;
          break;
        }
        messages++;
        out += r.message.raw.length;
      }
    }
    if (!dead && out + parser.buffered !== input.length) throw new Error("bytes lost or invented");
  }
  expect(messages).toBeGreaterThan(0);
  expect(errors).toBeGreaterThan(0);
}, 120_000);
