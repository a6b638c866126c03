// SCRAM-SHA-256 pieces: the RFC 7677 test vector, server-first checks,
// server-final verification; SASLprep as PostgreSQL applies it; md5; the
// tls-server-end-point hash of real certificates made by openssl.
import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { certificateSignatureOid, tlsServerEndPoint } from "../../../app/endpoints/postgres/auth/channel-binding.ts";
import { md5PasswordResponse } from "../../../app/endpoints/postgres/auth/md5.ts";
import { saslprep, saslprepPassword } from "../../../app/endpoints/postgres/auth/saslprep.ts";
import {
  clientFinalMessage,
  clientFirstMessage,
  parseServerFirst,
  verifyServerFinal,
  type ServerFirst,
} from "../../../app/endpoints/postgres/auth/scram.ts";

describe("RFC 7677 test vector", () => {
  const clientNonce = "rOprNGfwEbeRWgbNEkqO";
  const serverFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";

  test("client-first, client-final and the server signature", () => {
    const first = clientFirstMessage("n", clientNonce, "user");
    expect(first.message).toBe("n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    const server = parseServerFirst(serverFirst, clientNonce) as ServerFirst;
    expect(typeof server).toBe("object");
    expect(server.iterations).toBe(4096);
    const final = clientFinalMessage("pencil", first, server);
    expect(final.message).toBe("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
    expect(verifyServerFinal("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", final.expectedServerSignature)).toBe("ok");
  });

  test("a server signature off by one bit is refused", () => {
    const first = clientFirstMessage("n", clientNonce, "user");
    const final = clientFinalMessage("pencil", first, parseServerFirst(serverFirst, clientNonce) as ServerFirst);
    expect(verifyServerFinal("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G0=", final.expectedServerSignature)).toMatch(/does not match/);
    expect(verifyServerFinal("v=", final.expectedServerSignature)).toMatch(/does not match/);
    expect(verifyServerFinal("v=!!!!", final.expectedServerSignature)).toMatch(/not base64/);
    expect(verifyServerFinal("x=abc", final.expectedServerSignature)).toMatch(/malformed/);
    expect(verifyServerFinal("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=,x=1", final.expectedServerSignature)).toMatch(/malformed/);
    expect(verifyServerFinal("e=invalid-proof", final.expectedServerSignature)).toBe("server refused: invalid-proof");
  });

  test("the user name is escaped", () => {
    expect(clientFirstMessage("n", "abc", "a=b,c").bare).toBe("n=a=3Db=2Cc,r=abc");
    expect(clientFirstMessage("y", "abc").message).toBe("y,,n=,r=abc");
    expect(clientFirstMessage("p", "abc").message).toBe("p=tls-server-end-point,,n=,r=abc");
  });
});

describe("server-first checks", () => {
  const cases: [string, RegExp][] = [
    ["r=abcdef,s=c2FsdA==", /2 attributes/],
    ["r=abcdef,s=c2FsdA==,i=4096,x=1", /4 attributes/],
    ["s=c2FsdA==,r=abcdef,i=4096", /out of order/],
    ["m=ext,r=abcdef,s=c2FsdA==", /out of order/],
    ["r=xyzdef,s=c2FsdA==,i=4096", /does not extend/],
    ["r=abc,s=c2FsdA==,i=4096", /does not extend/],
    ["r=abc def,s=c2FsdA==,i=4096", /invalid characters/],
    ["r=abcdef,s=,i=4096", /not base64/],
    ["r=abcdef,s=c2FsdA=,i=4096", /not base64/],
    ["r=abcdef,s=c2FsdA==,i=0", /iteration/],
    ["r=abcdef,s=c2FsdA==,i=-1", /iteration/],
    ["r=abcdef,s=c2FsdA==,i=4096x", /iteration/],
    ["r=abcdef,s=c2FsdA==,i=99999999999", /iteration/],
    ["r=abcdef,s=c2FsdA==,i=2000000", /over the limit 1000000/],
  ];
  for (const [message, why] of cases) {
    test(message, () => expect(parseServerFirst(message, "abc")).toMatch(why));
  }
  test("a valid one", () => {
    expect(parseServerFirst("r=abcdef,s=c2FsdA==,i=4096", "abc")).toMatchObject({ nonce: "abcdef", iterations: 4096 });
  });
});

describe("SASLprep as PostgreSQL applies it", () => {
  const cases: [string, string, string | null][] = [
    ["ASCII is unchanged", "pencil", "pencil"],
    ["ASCII control characters are unchanged (the ASCII fast path)", "a\u0007b", "a\u0007b"],
    ["soft hyphen is mapped to nothing (RFC 4013 example)", "I\u00adX", "IX"],
    ["no-break space becomes a space", "a\u00a0b", "a b"],
    ["ideographic space becomes a space", "a\u3000b", "a b"],
    ["NFKC: feminine ordinal (RFC 4013 example)", "\u00aa", "a"],
    ["NFKC: roman numeral nine (RFC 4013 example)", "\u2168", "IX"],
    ["NFKC composes", "A\u030a", "\u00c5"],
    ["latin letters are kept", "pässwörd", "pässwörd"],
    ["only mapped-to-nothing is prohibited (empty)", "\u00ad\u180b", null],
    ["zero-width space counts as a space (C.1.2 is checked before B.1, as PostgreSQL does)", "\u00ad\u200b", " "],
    ["a non-ASCII control is prohibited", "é\u0085", null],
    ["a private-use character is prohibited", "é\ue000", null],
    ["unassigned in Unicode 3.2 is prohibited (emoji)", "é\u{1f600}", null],
    ["unassigned in Unicode 3.2 is prohibited (U+0221)", "\u0221", null],
    ["RandALCat with LCat is prohibited", "\u0627a\u0627", null],
    ["RandALCat not at both ends is prohibited", "\u06271", null],
    ["RandALCat at both ends is fine", "\u06271\u0627", "\u06271\u0627"],
  ];
  for (const [name, input, output] of cases) {
    test(name, () => {
      const r = saslprep(input);
      if (output === null) expect(r).toEqual({ kind: "prohibited" });
      else expect(r).toEqual({ kind: "prepared", text: output });
    });
  }

  test("a prohibited password is hashed raw, as PostgreSQL does", () => {
    expect(new TextDecoder().decode(saslprepPassword("é\u{1f600}"))).toBe("é\u{1f600}");
    expect(new TextDecoder().decode(saslprepPassword("I\u00adX"))).toBe("IX");
  });
});

test("md5 response (the value PostgreSQL computes for user 'postgres', password 'secret', salt 01020304)", () => {
  const inner = createHash("md5").update("secretpostgres").digest("hex");
  const outer = "md5" + createHash("md5").update(Buffer.concat([Buffer.from(inner), Buffer.from([1, 2, 3, 4])])).digest("hex");
  expect(md5PasswordResponse("postgres", "secret", new Uint8Array([1, 2, 3, 4]))).toBe(outer);
  expect(outer).toMatch(/^md5[0-9a-f]{32}$/);
});

describe("tls-server-end-point", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "pgw-cb-"));
  function cert(name: string, keyArgs: string[], digest: string[]): Uint8Array {
    const r = Bun.spawnSync(
      ["openssl", "req", "-x509", ...keyArgs, "-nodes", "-keyout", `${name}.key`, "-out", `${name}.der`, "-outform", "DER", "-days", "1", "-subj", "/CN=t", ...digest],
      { cwd: dir, stderr: "pipe" },
    );
    if (r.exitCode !== 0) throw new Error(r.stderr.toString());
    return new Uint8Array(readFileSync(path.join(dir, `${name}.der`)));
  }
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

  test("ECDSA with SHA-256: SHA-256 of the DER", () => {
    const der = cert("p256", ec, ["-sha256"]);
    expect(certificateSignatureOid(der)).toBe("1.2.840.10045.4.3.2");
    expect(Buffer.from(tlsServerEndPoint(der)!).toString("hex")).toBe(createHash("sha256").update(der).digest("hex"));
  });

  test("ECDSA with SHA-384: SHA-384 of the DER", () => {
    const der = cert("p384", ec, ["-sha384"]);
    expect(Buffer.from(tlsServerEndPoint(der)!).toString("hex")).toBe(createHash("sha384").update(der).digest("hex"));
  });

  test("RSA with SHA-1: SHA-256 (RFC 5929 replaces SHA-1)", () => {
    const der = cert("rsa1", ["-newkey", "rsa:2048"], ["-sha1"]);
    expect(certificateSignatureOid(der)).toBe("1.2.840.113549.1.1.5");
    expect(Buffer.from(tlsServerEndPoint(der)!).toString("hex")).toBe(createHash("sha256").update(der).digest("hex"));
  });

  test("Ed25519: no binding data (as PostgreSQL 15)", () => {
    const der = cert("ed", ["-newkey", "ed25519"], []);
    expect(certificateSignatureOid(der)).toBe("1.3.101.112");
    expect(tlsServerEndPoint(der)).toBeNull();
  });

  test("garbage is not a certificate", () => {
    expect(tlsServerEndPoint(new Uint8Array([0x30, 0x82, 0xff]))).toBeNull();
    expect(tlsServerEndPoint(new Uint8Array())).toBeNull();
    rmSync(dir, { recursive: true, force: true });
  });
});
