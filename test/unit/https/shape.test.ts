// The request's shape before any rule judges it: method, Host, target and
// path normalisation. Table-driven: input, then the verdict or the form.
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { checkRequestShape } from "../../../app/endpoints/https/shape.ts";
import { normalisePath, parseHostField } from "../../../app/endpoints/http1/target.ts";
import type { RequestHead } from "../../../app/endpoints/http1/parser.ts";
import type { HeaderList } from "../../../app/endpoints/http1/headers.ts";
import { httpFactsFromRequest } from "../../../app/policy/facts.ts";
import { celActivation, compileCondition } from "../../../app/policy/cel.ts";

function head(method: string, target: string, headers: HeaderList = [["Host", "api.test"]]): RequestHead {
  return { method, target, version: "1.1", headers, bodyKind: { kind: "none" }, keepAlive: true, expectContinue: false };
}

describe("normalisePath", () => {
  const cases: [string, string][] = [
    ["/", "/"],
    ["/v1/models", "/v1/models"],
    ["/%61dmin", "/admin"],
    ["/%7euser", "/~user"],
    ["/a%2bb", "/a%2Bb"],
    ["/a%20b", "/a%20b"],
    ["//admin///x", "/admin/x"],
    ["/a.b/..c/.d", "/a.b/..c/.d"],
  ];
  for (const [raw, want] of cases) {
    test(`${raw} -> ${want}`, () => expect(normalisePath(raw)).toEqual({ ok: true, path: want }));
  }
  const refused = ["/a/../b", "/a/./b", "/..", "/%2e%2e/x", "/.%2E/x", "/a%2fb", "/a%2Fb", "/a%5cb", "/a\\b", "/a%zz", "/a%2", "/a%00", "/\u00e9", "x/y"];
  for (const raw of refused) {
    test(`${JSON.stringify(raw)} is refused`, () => expect(normalisePath(raw).ok).toBe(false));
  }

  // The already-normal fast path must agree with the full walk everywhere.
  test("agrees with a character-by-character reference on paths near every rule", () => {
    const reference = (raw: string): string | undefined => {
      let out = "";
      for (let i = 0; i < raw.length; i++) {
        const c = raw[i]!;
        const code = c.charCodeAt(0);
        if (c === "\\" || code < 0x21 || code > 0x7e) return undefined;
        if (c !== "%") {
          out += c;
          continue;
        }
        const hex = raw.slice(i + 1, i + 3);
        if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return undefined;
        const ch = String.fromCharCode(parseInt(hex, 16));
        if (ch === "/" || ch === "\\" || ch === "\0") return undefined;
        out += /[A-Za-z0-9\-._~]/.test(ch) ? ch : "%" + hex.toUpperCase();
        i += 2;
      }
      out = out.replace(/\/{2,}/g, "/");
      return out.split("/").some((seg) => seg === "." || seg === "..") ? undefined : out;
    };
    const alphabet = ["/", "/", ".", ".", "a", "~", "%", "2", "e", "E", "f", "4", "1", "\\", " ", "\u00e9", "?", ";"];
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...alphabet), { maxLength: 12 }), (parts) => {
        const raw = "/" + parts.join("");
        const r = normalisePath(raw);
        expect(r.ok ? r.path : undefined).toBe(reference(raw));
      }),
      { numRuns: 5000 },
    );
  });
});

describe("parseHostField", () => {
  test("plain names and ports", () => {
    expect(parseHostField("API.test")).toEqual({ name: "api.test" });
    expect(parseHostField("api.test:8443")).toEqual({ name: "api.test", port: 8443 });
    expect(parseHostField("api.test.")).toEqual({ name: "api.test" });
  });
  for (const bad of ["", "evil@api.test", "[::1]", "[::1]:443", "api.test:99999", "api.test:0", "a b", "api.test:x"]) {
    test(`${JSON.stringify(bad)} is refused`, () => expect(parseHostField(bad)).toBeUndefined());
  }
});

describe("checkRequestShape", () => {
  const refusals: [string, RequestHead, 400 | 405 | 421 | 501][] = [
    ["lower-case method", head("get", "/"), 501],
    ["unknown method", head("PROPFIND", "/"), 501],
    ["CONNECT", head("CONNECT", "api.test:443"), 405],
    ["TRACE", head("TRACE", "/"), 405],
    ["no Host", head("GET", "/", []), 400],
    ["two Hosts", head("GET", "/", [["Host", "api.test"], ["host", "api.test"]]), 400],
    ["Host naming another server", head("GET", "/", [["Host", "evil.test"]]), 421],
    ["Host with userinfo", head("GET", "/", [["Host", "evil.test@api.test"]]), 400],
    ["absolute-form to another authority", head("GET", "https://evil.test/x"), 421],
    ["absolute-form with userinfo", head("GET", "https://u@api.test/x"), 400],
    ["authority-form outside CONNECT", head("GET", "api.test:443"), 400],
    ["asterisk outside OPTIONS", head("GET", "*"), 400],
    ["Connection naming Host", head("GET", "/", [["Host", "api.test"], ["Connection", "keep-alive, Host"]]), 400],
    ["Connection naming Authorization", head("GET", "/", [["Host", "api.test"], ["Connection", "authorization"]]), 400],
    ["Connection naming Content-Length", head("GET", "/", [["Host", "api.test"], ["Connection", "content-length"]]), 400],
    ["a fragment", head("GET", "/x#y"), 400],
    ["dot-segments", head("GET", "/a/../admin"), 400],
    ["an upgrade to h2c", { ...head("GET", "/"), upgrade: "h2c" }, 400],
    ["an upgrade listing two protocols", { ...head("GET", "/"), upgrade: "websocket, h2c" }, 400],
  ];
  for (const [name, h, status] of refusals) {
    test(`${name}: ${status}`, () => {
      const r = checkRequestShape(h, "api.test");
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.status).toBe(status);
    });
  }

  test("a credential slot named by Connection is refused", () => {
    const h = head("GET", "/", [["Host", "api.test"], ["Connection", "x-api-key"]]);
    expect(checkRequestShape(h, "api.test").ok).toBe(true);
    expect(checkRequestShape(h, "api.test", ["X-Api-Key"]).ok).toBe(false);
  });

  test("absolute-form for this authority becomes origin-form; the query is kept as sent", () => {
    expect(checkRequestShape(head("GET", "HTTPS://API.test:443/%61/b?x=%61"), "api.test")).toEqual({
      ok: true,
      path: "/a/b",
      rawPath: "/%61/b",
      target: "/a/b?x=%61",
    });
  });

  test("OPTIONS *", () => {
    expect(checkRequestShape(head("OPTIONS", "*"), "api.test")).toMatchObject({ ok: true, target: "*" });
  });
});

describe("http.path and http.raw_path", () => {
  test("rules see the normalised path, and the raw one on request", () => {
    const facts = httpFactsFromRequest("GET", "api.test", "//%61dmin?q=1", []);
    expect(facts.path).toBe("/admin");
    expect(facts.rawPath).toBe("//%61dmin");
    const act = celActivation(facts, "d", "p");
    for (const [src, want] of [
      ["http.path == '/admin'", true],
      ["http.raw_path == '//%61dmin'", true],
      ["http.raw_path == http.path", false],
    ] as const) {
      const c = compileCondition(src);
      if (!c.ok) throw new Error(c.message);
      expect(c.condition.test(act)).toBe(want);
    }
  });
});
