import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { StreamScrubber, sameLengthMask, scrubHeaders, scrubText } from "../../../app/credentials/scrub.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const R = "[REDACTED]";

/** Independent reference: leftmost-longest replacement, one position at a time. */
function reference(text: string, needles: string[], replacement = R): string {
  const ns = needles.filter((n) => n !== "");
  let out = "";
  let i = 0;
  while (i < text.length) {
    let best = 0;
    for (const n of ns) if (n.length > best && text.startsWith(n, i)) best = n.length;
    if (best > 0) {
      out += replacement;
      i += best;
    } else {
      out += text[i];
      i++;
    }
  }
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const total = parts.reduce((s, p) => s + p.length, 0);
  const out = new Uint8Array(total);
  let w = 0;
  for (const p of parts) {
    out.set(p, w);
    w += p.length;
  }
  return out;
}

/** Feed `bytes` cut at `cuts`; returns each push's output and the flush. */
function run(needles: string[], bytes: Uint8Array, cuts: number[], replacement?: string): Uint8Array[] {
  const s = new StreamScrubber(needles, replacement);
  const outs: Uint8Array[] = [];
  let prev = 0;
  for (const c of [...cuts, bytes.length]) {
    outs.push(s.push(bytes.slice(prev, c)));
    prev = c;
  }
  outs.push(s.flush());
  return outs;
}

const SECRET = "sk-live-0123456789abcdef";

describe("StreamScrubber across chunk boundaries", () => {
  const text = `{"echo":"Bearer ${SECRET}","n":1}`;
  const bytes = enc.encode(text);
  const expected = reference(text, [SECRET]);

  test("needle split at every offset across two chunks", () => {
    for (let i = 0; i <= bytes.length; i++) {
      const outs = run([SECRET], bytes, [i]);
      expect(dec.decode(concat(outs))).toBe(expected);
      for (const o of outs) expect(dec.decode(o)).not.toContain(SECRET);
    }
  });

  test("needle split at every pair of offsets across three chunks", () => {
    for (let i = 0; i <= bytes.length; i++) {
      for (let j = i; j <= bytes.length; j++) {
        expect(dec.decode(concat(run([SECRET], bytes, [i, j])))).toBe(expected);
      }
    }
  });

  test("one byte at a time", () => {
    const cuts = Array.from({ length: bytes.length }, (_, i) => i);
    expect(dec.decode(concat(run([SECRET], bytes, cuts)))).toBe(expected);
  });

  test("multi-byte UTF-8 needle cut inside a character", () => {
    const n = "clé-secrète-🔑";
    const t = `a ${n} b ${n}`;
    const b = enc.encode(t);
    for (let i = 0; i <= b.length; i++) expect(dec.decode(concat(run([n], b, [i])))).toBe(`a ${R} b ${R}`);
  });
});

describe("overlapping needles: leftmost-longest, whatever the chunking", () => {
  const cases: [string, string[], string][] = [
    ["abcd", ["abc", "bcd"], `${R}d`],
    ["abcd", ["ab", "abcd"], R],
    ["abcx", ["ab", "abcd"], `${R}cx`],
    ["abcd", ["bc", "abcd"], R],
    ["abce", ["bc", "abcd"], `a${R}e`],
    ["aaaaa", ["aa"], `${R}${R}a`],
    ["xBearer tokk", ["tok", "Bearer tok"], `x${R}k`],
  ];
  for (const [text, needles, want] of cases) {
    test(`${JSON.stringify(text)} with ${JSON.stringify(needles)}`, () => {
      expect(reference(text, needles)).toBe(want);
      expect(scrubText(text, needles)).toBe(want);
      const b = enc.encode(text);
      for (let i = 0; i <= b.length; i++) {
        for (let j = i; j <= b.length; j++) expect(dec.decode(concat(run(needles, b, [i, j])))).toBe(want);
      }
    });
  }
});

describe("what is held back, and what is emitted at once", () => {
  test("an SSE event ending in \\n\\n is emitted whole", () => {
    const s = new StreamScrubber([SECRET, `Bearer ${SECRET}`, "c2stbGl2ZS0"]);
    const ev = enc.encode('event: content_block_delta\ndata: {"type":"text_delta","text":"hello"}\n\n');
    const out = s.push(ev);
    expect(out).toEqual(ev);
    expect(s.held).toBe(0);
  });

  test("a chunk with no needle byte anywhere in its tail is returned as is", () => {
    const s = new StreamScrubber([SECRET]);
    const chunk = enc.encode("hello world, nothing to see");
    expect(s.push(chunk)).toBe(chunk);
  });

  test("a tail that is a needle prefix is held, and only that tail", () => {
    const s = new StreamScrubber([SECRET]);
    expect(dec.decode(s.push(enc.encode("data: sk-li")))).toBe("data: ");
    expect(s.held).toBe(5);
    expect(dec.decode(s.push(enc.encode("ve!\n\n")))).toBe("sk-live!\n\n");
    expect(s.held).toBe(0);
  });

  test("a held prefix that completes the needle is replaced", () => {
    const s = new StreamScrubber([SECRET]);
    expect(dec.decode(s.push(enc.encode(`x ${SECRET.slice(0, 10)}`)))).toBe("x ");
    expect(dec.decode(s.push(enc.encode(`${SECRET.slice(10)} y`)))).toBe(`${R} y`);
  });

  test("held back never reaches the longest needle's length", () => {
    const s = new StreamScrubber(["abcdef", "xyz"]);
    s.push(enc.encode("......abcde"));
    expect(s.held).toBe(5);
    s.push(enc.encode("!"));
    expect(s.held).toBe(0);
  });

  test("a full short needle in the tail waits only while a longer one could still match", () => {
    const s = new StreamScrubber(["tok", "tokenXYZ"]);
    expect(dec.decode(s.push(enc.encode("a tok")))).toBe("a ");
    expect(dec.decode(s.push(enc.encode("e")))).toBe("");
    expect(dec.decode(s.push(enc.encode("!")))).toBe(`${R}e!`);
  });

  test("flush releases a held prefix that never completed", () => {
    const s = new StreamScrubber([SECRET]);
    expect(dec.decode(s.push(enc.encode("end sk-")))).toBe("end ");
    expect(dec.decode(s.flush())).toBe("sk-");
    expect(s.flush().length).toBe(0);
  });

  test("the held tail is copied: reusing the input buffer does not corrupt it", () => {
    const s = new StreamScrubber([SECRET]);
    const buf = enc.encode("zz sk-li");
    s.push(buf);
    buf.fill(0x41);
    expect(dec.decode(s.push(enc.encode("ve!")))).toBe("sk-live!");
  });
});

describe("fast path and options", () => {
  test("no needles: every chunk returned as is, nothing held", () => {
    const s = new StreamScrubber([]);
    const c = enc.encode("anything sk-");
    expect(s.push(c)).toBe(c);
    expect(s.flush().length).toBe(0);
    const e = new StreamScrubber([""]);
    expect(e.push(c)).toBe(c);
  });

  test("sameLengthMask keeps the byte count (Content-Length stays valid)", () => {
    const text = `a ${SECRET} é ${SECRET}`;
    const b = enc.encode(text);
    const s = new StreamScrubber([SECRET], undefined);
    const masked = new StreamScrubber([SECRET], sameLengthMask);
    const out = concat([masked.push(b.slice(0, 9)), masked.push(b.slice(9)), masked.flush()]);
    expect(out.length).toBe(b.length);
    expect(dec.decode(out)).toBe(`a ${"*".repeat(SECRET.length)} é ${"*".repeat(SECRET.length)}`);
    expect(dec.decode(concat([s.push(b), s.flush()]))).toBe(`a ${R} é ${R}`);
  });
});

describe("scrubHeaders / scrubText", () => {
  test("values scrubbed, names and order kept, input not mutated", () => {
    const h: [string, string][] = [
      ["X-Echo-Authorization", `Bearer ${SECRET}`],
      ["Content-Type", "application/json"],
      ["Set-Cookie", `session=${SECRET}; Path=/`],
    ];
    const copy = structuredClone(h);
    expect(scrubHeaders(h, [SECRET, `Bearer ${SECRET}`])).toEqual([
      ["X-Echo-Authorization", R],
      ["Content-Type", "application/json"],
      ["Set-Cookie", `session=${R}; Path=/`],
    ]);
    expect(h).toEqual(copy);
  });
  test("scrubText with no match returns the same string", () => {
    const t = "nothing here";
    expect(scrubText(t, [SECRET])).toBe(t);
    expect(scrubText(t, [])).toBe(t);
  });
});

describe("property: random chunkings of text with secrets inserted", () => {
  // Needles from lower-case letters and digits, text from those plus other
  // characters (multi-byte too), replacement from neither: a needle in the
  // output could then only come from a scrubbing miss.
  const needleArb = fc.stringMatching(/^[a-z0-9]{1,12}$/);
  const textCharArb = fc.constantFrom("a", "b", "k", "s", "-", "0", " ", "\n", "é", "🔑", "x", "y");
  const textArb = fc.array(textCharArb, { maxLength: 40 }).map((a) => a.join(""));

  test("output == input with every secret replaced; no needle in any output", () => {
    fc.assert(
      fc.property(
        fc.array(needleArb, { minLength: 1, maxLength: 4 }),
        fc.array(fc.tuple(textArb, fc.nat()), { minLength: 1, maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        (needles, pieces, rawCuts) => {
          const text = pieces.map(([t, k]) => t + needles[k % needles.length]).join("");
          const bytes = enc.encode(text);
          const cuts = [...new Set(rawCuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
          const outs = run(needles, bytes, cuts);
          const joined = dec.decode(concat(outs));
          const want = reference(text, needles);
          expect(joined).toBe(want);
          expect(scrubText(text, needles)).toBe(want);
          for (const n of needles) expect(joined).not.toContain(n);
          for (const o of outs) for (const n of needles) expect(Buffer.from(o).includes(Buffer.from(n))).toBe(false);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe("prepared needle sets", () => {
  test("a needle list changed after its first use is prepared afresh, never scrubbed with the old set", () => {
    const needles = ["sk-first-0123456789"];
    const text = "a sk-first-0123456789 b sk-second-9876543210 c";
    expect(scrubText(text, needles)).toBe(`a ${R} b sk-second-9876543210 c`);
    needles.push("sk-second-9876543210");
    expect(scrubText(text, needles)).toBe(`a ${R} b ${R} c`);
    needles[0] = "b sk";
    expect(scrubText(text, needles)).toBe(`a sk-first-0123456789 ${R}-second-9876543210 c`);
    const s = new StreamScrubber(needles);
    expect(dec.decode(concat([s.push(enc.encode(text)), s.flush()]))).toBe(`a sk-first-0123456789 ${R}-second-9876543210 c`);
  });

  test("text shorter than every needle comes back as is; an empty list scrubs nothing", () => {
    const text = "short";
    expect(scrubText(text, ["a-much-longer-needle"])).toBe(text);
    expect(scrubText("", [""])).toBe("");
    expect(scrubText("abc", [])).toBe("abc");
  });
});
