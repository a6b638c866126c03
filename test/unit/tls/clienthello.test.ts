import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  canonicalHostName,
  MAX_CLIENT_HELLO_BYTES,
  parseClientHello,
  type ClientHelloResult,
} from "../../../app/tls/clienthello.ts";
import { capturedHellos } from "./fixtures/clienthellos.ts";
import {
  alpnExtension,
  captureClientHello,
  clientHelloMessage,
  concatBytes,
  inRecords,
  inRecordsOfSizes,
  sniExtension,
  supportedVersionsExtension,
} from "./helpers/hello.ts";

const fromHex = (hex: string) => new Uint8Array(Buffer.from(hex, "hex"));
const ascii = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));

function expectHello(result: ClientHelloResult) {
  if (result.kind !== "hello") throw new Error(`expected a hello, got ${JSON.stringify(result)}`);
  return result;
}

function expectError(result: ClientHelloResult, reason: RegExp) {
  expect(result.kind).toBe("error");
  if (result.kind === "error") expect(result.reason).toMatch(reason);
}

/** A valid hello in one record, built from values. */
const basicHello = () => inRecords(clientHelloMessage());

describe("real ClientHellos", () => {
  for (const captured of capturedHellos) {
    test(`captured: ${captured.client}`, () => {
      const bytes = fromHex(captured.hex);
      const hello = expectHello(parseClientHello(bytes));
      expect(hello.sni).toBe(captured.sni);
      expect(hello.alpn).toEqual(captured.alpn);
      expect(hello.supportedVersions).toEqual(captured.supportedVersions);
      expect(hello.legacyVersion).toBe(0x0303);
      expect(hello.length).toBe(bytes.length);
    });
  }

  test("live node:tls client with SNI and ALPN (name lower-cased)", async () => {
    const bytes = await captureClientHello({ servername: "API.Example.com", ALPNProtocols: ["h2", "http/1.1"] });
    const hello = expectHello(parseClientHello(bytes));
    expect(hello.sni).toBe("api.example.com");
    expect(hello.alpn).toEqual(["h2", "http/1.1"]);
    expect(hello.supportedVersions).toContain(0x0304);
    expect(hello.length).toBe(bytes.length);
  });

  test("live node:tls client to an IP sends no SNI", async () => {
    const bytes = await captureClientHello({});
    const hello = expectHello(parseClientHello(bytes));
    expect(hello.sni).toBeUndefined();
    expect(hello.alpn).toEqual([]);
  });
});

describe("cut and split", () => {
  const samples = () => [
    ...capturedHellos.map((c) => ({ name: c.client, bytes: fromHex(c.hex) })),
    { name: "built, 7-byte records", bytes: inRecords(clientHelloMessage(), 7) },
  ];

  for (const { name, bytes } of samples()) {
    test(`every proper prefix is need-more: ${name}`, () => {
      for (let cut = 0; cut < bytes.length; cut++) {
        const result = parseClientHello(bytes.subarray(0, cut));
        if (result.kind !== "need-more") throw new Error(`cut at ${cut}: ${JSON.stringify(result)}`);
      }
      expect(parseClientHello(bytes).kind).toBe("hello");
    });
  }

  test("the same hello split into records of 1, 2, 3, 4, 5, 100 bytes", () => {
    const message = clientHelloMessage();
    const whole = expectHello(parseClientHello(inRecords(message)));
    for (const size of [1, 2, 3, 4, 5, 100]) {
      const bytes = inRecords(message, size);
      const hello = expectHello(parseClientHello(bytes));
      expect({ ...hello, length: 0 }).toEqual({ ...whole, length: 0 });
      expect(hello.length).toBe(bytes.length);
    }
  });

  test("a captured hello re-split at random record boundaries reads the same (property)", () => {
    const captured = fromHex(capturedHellos[0]!.hex);
    const message = captured.subarray(5);
    const expected = expectHello(parseClientHello(captured));
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 600 }), { minLength: 1, maxLength: 20 }), (sizes) => {
        const bytes = inRecordsOfSizes(message, sizes);
        const hello = expectHello(parseClientHello(bytes));
        expect(hello.sni).toBe(expected.sni!);
        expect(hello.alpn).toEqual(expected.alpn);
        expect(hello.length).toBe(bytes.length);
      }),
      { numRuns: 200 },
    );
  });

  test("bytes after the hello's last record are not consumed and change nothing", () => {
    const bytes = basicHello();
    const alone = expectHello(parseClientHello(bytes));
    const withData = concatBytes(bytes, [23, 3, 3, 0, 5, 1, 2, 3, 4, 5]);
    expect(parseClientHello(withData)).toEqual(alone);
    expect(alone.length).toBe(bytes.length);
  });
});

describe("not TLS: relay at once", () => {
  const cases: [string, Uint8Array][] = [
    ["HTTP request", ascii("GET / HTTP/1.1\r\nHost: x\r\n\r\n")],
    ["SSH banner", ascii("SSH-2.0-OpenSSH_9.2\r\n")],
    ["postgres SSLRequest", Uint8Array.of(0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f)],
    ["SSLv2-compatible hello", Uint8Array.of(0x80, 0x2e, 0x01, 0x03, 0x01)],
    ["one byte that is not 0x16", Uint8Array.of(0x47)],
    ["handshake type, major version 2", Uint8Array.of(0x16, 0x02)],
    ["handshake type, minor version 5", Uint8Array.of(0x16, 0x03, 0x05)],
  ];
  for (const [name, bytes] of cases) {
    test(name, () => expect(parseClientHello(bytes)).toEqual({ kind: "not-tls" }));
  }

  test("empty and tiny TLS-looking prefixes wait for more", () => {
    for (const bytes of [[], [0x16], [0x16, 0x03], [0x16, 0x03, 0x01], [0x16, 0x03, 0x01, 0x02]]) {
      expect(parseClientHello(Uint8Array.from(bytes)).kind).toBe("need-more");
    }
  });
});

describe("record-layer errors", () => {
  test("an alert record after the first handshake fragment", () => {
    const bytes = inRecords(clientHelloMessage(), 50);
    const alert = concatBytes(bytes.subarray(0, 55), [21, 3, 3, 0, 2, 2, 40]);
    expectError(parseClientHello(alert), /content type 21/);
  });

  test("an implausible version on a later record", () => {
    const bytes = inRecords(clientHelloMessage(), 50);
    bytes[56] = 9;
    expectError(parseClientHello(bytes), /record version/);
  });

  test("a zero-length handshake record", () => {
    expectError(parseClientHello(Uint8Array.of(22, 3, 1, 0, 0)), /empty handshake record/);
  });

  test("a record longer than 2^14", () => {
    expectError(parseClientHello(Uint8Array.of(22, 3, 1, 0x40, 0x01)), /2\^14/);
  });

  test("a first handshake message that is not a ClientHello (known from its first byte)", () => {
    expectError(parseClientHello(Uint8Array.of(22, 3, 3, 0, 60, 2)), /type 2, not ClientHello/);
  });

  test("a handshake length over the cap fails at once instead of waiting", () => {
    const over = MAX_CLIENT_HELLO_BYTES + 1;
    const bytes = Uint8Array.of(22, 3, 1, 0, 4, 1, (over >> 16) & 0xff, (over >> 8) & 0xff, over & 0xff);
    expectError(parseClientHello(bytes), /exceeds/);
  });

  test("records past the cap fail even if each one is legal", () => {
    // 1-byte records of a huge message: each costs 6 bytes on the wire.
    const message = clientHelloMessage({ extensions: [{ type: 0xffaa, data: new Uint8Array(20000) }] });
    const bytes = inRecords(message, 1);
    expectError(parseClientHello(bytes), /exceeds/);
  });

  test("a record that carries bytes after the ClientHello", () => {
    const message = concatBytes(clientHelloMessage(), [0x0b, 0, 0, 0]);
    expectError(parseClientHello(inRecords(message)), /after the ClientHello/);
  });
});

describe("ClientHello body", () => {
  const hello = (spec: Parameters<typeof clientHelloMessage>[0]) => parseClientHello(inRecords(clientHelloMessage(spec)));

  test("a hello with no extensions block at all", () => {
    const result = expectHello(hello({ extensions: null }));
    expect(result.sni).toBeUndefined();
    expect(result.alpn).toEqual([]);
    expect(result.supportedVersions).toEqual([]);
  });

  test("an empty extensions block", () => {
    expect(expectHello(hello({ extensions: [] })).sni).toBeUndefined();
  });

  test("unknown extensions are skipped", () => {
    const result = expectHello(hello({ extensions: [{ type: 0x0a0a, data: new Uint8Array(3) }, sniExtension("a.b")] }));
    expect(result.sni).toBe("a.b");
  });

  const bodyErrors: [string, Parameters<typeof clientHelloMessage>[0], RegExp][] = [
    ["legacy_version 2.0", { legacyVersion: 0x0200 }, /legacy_version/],
    ["a 33-byte session id", { sessionId: new Uint8Array(33) }, /legacy_session_id/],
    ["no cipher suites", { cipherSuites: [] }, /cipher_suites/],
    ["no compression methods", { compressionMethods: [] }, /compression/],
    [
      "a duplicate extension",
      { extensions: [sniExtension("a.com"), sniExtension("b.com")] },
      /duplicate extension 0/,
    ],
    ["an empty server_name extension", { extensions: [{ type: 0, data: new Uint8Array(0) }] }, /server_name/],
    ["an empty server_name list", { extensions: [{ type: 0, data: Uint8Array.of(0, 0) }] }, /server_name/],
    [
      "a server_name list shorter than its data",
      { extensions: [{ type: 0, data: Uint8Array.of(0, 4, 0, 0, 1, 0x61, 0) }] },
      /server_name/,
    ],
    [
      "two host_names",
      { extensions: [{ type: 0, data: Uint8Array.of(0, 8, 0, 0, 1, 0x61, 0, 0, 1, 0x62) }] },
      /more than one host_name/,
    ],
    [
      "only an unknown name type",
      { extensions: [{ type: 0, data: Uint8Array.of(0, 4, 7, 0, 1, 0x61) }] },
      /without a host_name/,
    ],
    ["a zero-length host_name", { extensions: [sniExtension(new Uint8Array(0))] }, /server_name entry/],
    ["a NUL in the host name", { extensions: [sniExtension("api.github.com\0.evil")] }, /not a valid host name/],
    ["a space in the host name", { extensions: [sniExtension("api github.com")] }, /not a valid host name/],
    ["non-ASCII in the host name", { extensions: [sniExtension(Uint8Array.of(0xc3, 0xa9, 0x2e, 0x61))] }, /valid/],
    ["an empty label", { extensions: [sniExtension("a..b")] }, /valid/],
    ["a leading dot", { extensions: [sniExtension(".a.b")] }, /valid/],
    ["only a dot", { extensions: [sniExtension(".")] }, /valid/],
    ["two trailing dots", { extensions: [sniExtension("a.b..")] }, /valid/],
    ["a wildcard", { extensions: [sniExtension("*.a.b")] }, /valid/],
    ["an IPv6 literal", { extensions: [sniExtension("::1")] }, /valid/],
    ["a 64-byte label", { extensions: [sniExtension(`${"a".repeat(64)}.com`)] }, /valid/],
    ["a 254-byte name", { extensions: [sniExtension(`${"a.".repeat(126)}ab`)] }, /valid/],
    ["an empty ALPN list", { extensions: [{ type: 16, data: Uint8Array.of(0, 0) }] }, /ALPN list/],
    ["an empty ALPN protocol", { extensions: [{ type: 16, data: Uint8Array.of(0, 3, 2, 0x68, 0x32, 0) }] }, /ALPN/],
    ["an odd supported_versions", { extensions: [{ type: 43, data: Uint8Array.of(3, 3, 4, 3) }] }, /supported_versions/],
    ["an empty supported_versions", { extensions: [supportedVersionsExtension([])] }, /supported_versions/],
  ];
  for (const [name, spec, reason] of bodyErrors) {
    test(`error: ${name}`, () => expectError(hello(spec), reason));
  }

  test("an extension that overruns the extension block", () => {
    const message = clientHelloMessage({ extensions: [alpnExtension(["h2"])] });
    // Grow the ALPN extension's declared length by one, past the block's end.
    const extLengthAt = message.length - 5 - 2; // type(2) length(2) data(5)
    message[extLengthAt + 1]! += 1;
    expectError(parseClientHello(inRecords(message)), /overruns/);
  });

  test("an extensions block that does not fill the body", () => {
    const message = concatBytes(clientHelloMessage({ extensions: [] }), [0]);
    message[3]! += 1; // the handshake length now covers the stray byte
    expectError(parseClientHello(inRecords(message)), /do not fill/);
  });

  test("host names: canonical form and limits", () => {
    const sni = (name: string) => expectHello(hello({ extensions: [sniExtension(name)] })).sni;
    expect(sni("API.GitHub.COM")).toBe("api.github.com");
    expect(sni("api.github.com.")).toBe("api.github.com");
    expect(sni("_acme.x-y.example")).toBe("_acme.x-y.example");
    expect(sni("10.0.0.1")).toBe("10.0.0.1");
    expect(sni(`${"a".repeat(63)}.com`)).toBe(`${"a".repeat(63)}.com`);
    const longest = `${"a.".repeat(126)}a`; // 253 bytes
    expect(sni(longest)).toBe(longest);
    expect(sni(`${longest}.`)).toBe(longest);
  });

  test("an unknown name type beside host_name is skipped", () => {
    const data = Uint8Array.of(0, 8, 9, 0, 1, 0x7a, 0, 0, 1, 0x61);
    expect(expectHello(hello({ extensions: [{ type: 0, data }] })).sni).toBe("a");
  });

  test("ALPN ids are read as opaque bytes", () => {
    const data = Uint8Array.of(0, 4, 3, 0xff, 0x00, 0x41);
    expect(expectHello(hello({ extensions: [{ type: 16, data }] })).alpn).toEqual(["\xff\x00A"]);
  });
});

describe("fuzz: never throws, only documented outcomes", () => {
  const kinds = new Set(["need-more", "hello", "not-tls", "error"]);
  const validHostName = /^[a-z0-9_-]{1,63}(\.[a-z0-9_-]{1,63})*$/;

  function checkOutcome(bytes: Uint8Array) {
    const result = parseClientHello(bytes);
    if (!kinds.has(result.kind)) throw new Error(`unknown outcome ${JSON.stringify(result)}`);
    if (result.kind === "hello") {
      if (result.length > bytes.length || result.length < 5 + 4 + 38) throw new Error(`bad length ${result.length}`);
      if (result.sni !== undefined && (!validHostName.test(result.sni) || result.sni.length > 253)) {
        throw new Error(`bad sni ${JSON.stringify(result.sni)}`);
      }
    }
    if (result.kind === "error" && result.reason.length === 0) throw new Error("error without a reason");
    return result;
  }

  const seeds = [...capturedHellos.map((c) => fromHex(c.hex)), basicHello(), inRecords(clientHelloMessage(), 40)];
  const seed = fc.constantFrom(...seeds);

  test("random bytes", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), (b) => void checkOutcome(b)), { numRuns: 2000 });
  });

  test("random bytes behind a plausible record header", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.integer({ min: 0, max: 4 }), (b, minor) => {
        const header = [22, 3, minor, (b.length >> 8) & 0xff, b.length & 0xff, 1];
        checkOutcome(concatBytes(header, b));
      }),
      { numRuns: 2000 },
    );
  });

  test("valid hellos with random byte mutations", () => {
    fc.assert(
      fc.property(
        seed,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
        (original, edits) => {
          const bytes = original.slice();
          for (const [at, value] of edits) bytes[at % bytes.length] = value;
          checkOutcome(bytes);
        },
      ),
      { numRuns: 3000 },
    );
  });

  test("valid hellos truncated are need-more; with garbage appended they are unchanged", () => {
    fc.assert(
      fc.property(seed, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 200 }), (original, cutAt, garbage) => {
        const cut = cutAt % original.length;
        expect(checkOutcome(original.subarray(0, cut)).kind).toBe("need-more");
        expect(checkOutcome(concatBytes(original, garbage))).toEqual(parseClientHello(original));
      }),
      { numRuns: 1000 },
    );
  });

  test("valid hellos cut then followed by garbage never throw", () => {
    fc.assert(
      fc.property(seed, fc.nat(), fc.uint8Array({ maxLength: 300 }), (original, cutAt, garbage) => {
        checkOutcome(concatBytes(original.subarray(0, cutAt % original.length), garbage));
      }),
      { numRuns: 2000 },
    );
  });

  test("arbitrary server names: a canonical host or an error", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 300 }), (name) => {
        const result = checkOutcome(inRecords(clientHelloMessage({ extensions: [sniExtension(name)] })));
        expect(["hello", "error"]).toContain(result.kind);
        expect(result.kind === "hello").toBe(canonicalHostName(name) !== null);
      }),
      { numRuns: 1000 },
    );
  });

  test("DNS names come back lower-cased", () => {
    fc.assert(
      fc.property(fc.domain(), fc.boolean(), (domain, upper) => {
        const sent = upper ? domain.toUpperCase() : domain;
        const result = expectHello(parseClientHello(inRecords(clientHelloMessage({ extensions: [sniExtension(sent)] }))));
        expect(result.sni).toBe(domain.toLowerCase());
      }),
      { numRuns: 500 },
    );
  });
});
