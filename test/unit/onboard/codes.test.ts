import { describe, expect, test } from "bun:test";
import {
  TokenBuckets,
  USER_CODE_ALPHABET,
  formatUserCode,
  normalizeUserCode,
  validWireguardPublicKey,
} from "../../../app/control/onboard/index.ts";
import { newUserCode } from "../../../app/control/onboard/codes.ts";

describe("user codes", () => {
  test("the alphabet has 32 symbols and no look-alikes", () => {
    expect(new Set(USER_CODE_ALPHABET).size).toBe(32);
    for (const c of "0O1I") expect(USER_CODE_ALPHABET).not.toContain(c);
  });

  test("every byte value maps into the alphabet, evenly", () => {
    const counts = new Map<string, number>();
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    for (let i = 0; i < 256; i += 8) {
      const code = newUserCode(() => all.slice(i, i + 8));
      for (const c of code) counts.set(c, (counts.get(c) ?? 0) + 1);
    }
    expect(counts.size).toBe(32);
    expect(new Set(counts.values())).toEqual(new Set([8]));
  });

  test("format and normalize", () => {
    expect(formatUserCode("ABCDEFGH")).toBe("ABCD-EFGH");
    expect(normalizeUserCode("abcd-efgh")).toBe("ABCDEFGH");
    expect(normalizeUserCode(" ABCD EFGH ")).toBe("ABCDEFGH");
    expect(normalizeUserCode("ABCD-EFG")).toBeUndefined();
    expect(normalizeUserCode("ABCD-EFG0")).toBeUndefined();
    expect(normalizeUserCode("ABCD-EFGHJ")).toBeUndefined();
  });
});

describe("WireGuard public keys", () => {
  test("32 bytes of standard base64, not all zero", () => {
    expect(validWireguardPublicKey("HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=")).toBe(true);
    expect(validWireguardPublicKey("HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw")).toBe(false);
    expect(validWireguardPublicKey("HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykx=")).toBe(false); // non-canonical tail
    expect(validWireguardPublicKey("HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8yk_=")).toBe(false);
    expect(validWireguardPublicKey("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")).toBe(false);
    expect(validWireguardPublicKey(42)).toBe(false);
  });
});

describe("TokenBuckets", () => {
  test("burst, then one per refill period; keys are independent; full buckets are forgotten", () => {
    const b = new TokenBuckets({ burst: 2, perMinute: 6 });
    expect(b.take("a", 0)).toEqual({ ok: true });
    expect(b.take("a", 0)).toEqual({ ok: true });
    expect(b.take("a", 0)).toEqual({ ok: false, retryAfterMs: 10_000 });
    expect(b.take("a", 4_000)).toEqual({ ok: false, retryAfterMs: 6_000 });
    expect(b.take("b", 4_000)).toEqual({ ok: true });
    expect(b.take("a", 10_000)).toEqual({ ok: true });
    expect(b.size).toBe(2);
    b.prune(100_000);
    expect(b.size).toBe(0);
  });
});
