import { describe, expect, test } from "bun:test";
import type { HeaderList } from "../../../app/endpoints/http1/headers.ts";
import type { Credential, CredentialType } from "../../../app/policy/types.ts";
import { pluginFor, type OutboundRequest } from "../../../app/credentials/plugin.ts";
import { setCookiePair } from "../../../app/credentials/cookie_token.ts";
import { replaceKeyParam } from "../../../app/credentials/gemini_api_key.ts";

const SECRET = "s3cr3t-V4lue_xyz";
const b64 = (s: string) => Buffer.from(s).toString("base64");

function cred(type: CredentialType, settings: Record<string, string> = {}, name = "main"): Credential {
  return { type, name, ref: `${type}.${name}`, settings, source: { file: "t.hcl", line: 1 } };
}

function req(headers: HeaderList, target = "/v1/x?a=1"): OutboundRequest {
  return { method: "POST", target, headers: headers.map(([n, v]) => [n, v]) };
}

function inject(c: Credential, headers: HeaderList, target?: string, secret = SECRET): OutboundRequest {
  const r = req(headers, target);
  pluginFor(c.type).inject(r, secret, c);
  return r;
}

// Each type: the slot header, the value it must end up with, and a credential.
const SLOTS: { c: Credential; header: string; value: string }[] = [
  { c: cred("bearer_token"), header: "Authorization", value: `Bearer ${SECRET}` },
  { c: cred("header_token", { header: "X-Auth-Token" }), header: "X-Auth-Token", value: SECRET },
  { c: cred("header_token", { header: "PRIVATE-TOKEN", prefix: "tok " }), header: "PRIVATE-TOKEN", value: `tok ${SECRET}` },
  { c: cred("basic_auth", { username: "bob" }), header: "Authorization", value: `Basic ${b64(`bob:${SECRET}`)}` },
  { c: cred("basic_auth"), header: "Authorization", value: `Basic ${b64(SECRET)}` },
  { c: cred("anthropic_manual_key"), header: "x-api-key", value: SECRET },
  { c: cred("openai_api_key"), header: "Authorization", value: `Bearer ${SECRET}` },
  { c: cred("github_token"), header: "Authorization", value: `Bearer ${SECRET}` },
  { c: cred("gemini_api_key"), header: "x-goog-api-key", value: SECRET },
  { c: cred("cookie_token", { cookie: "session" }), header: "Cookie", value: `session=${SECRET}` },
];

const OTHERS: HeaderList = [
  ["Host", "api.example.com"],
  ["User-Agent", "agent/1.0"],
  ["Content-Type", "application/json"],
  ["Content-Length", "12"],
];

describe("each type writes its one slot", () => {
  for (const { c, header, value } of SLOTS) {
    const label = `${c.type} ${JSON.stringify(c.settings)}`;

    test(`${label}: absent slot is appended, others untouched`, () => {
      const r = inject(c, OTHERS);
      expect(r.headers).toEqual([...OTHERS, [header, value]]);
      expect(r.method).toBe("POST");
      expect(r.target).toBe("/v1/x?a=1");
    });

    test(`${label}: placeholder replaced in place, keeping position and spelling`, () => {
      const ph = pluginFor(c.type).placeholder(c);
      const sent = header === "Cookie" ? `session=${ph}` : `Bearer ${ph}`;
      const odd = header.toUpperCase();
      const r = inject(c, [OTHERS[0]!, [odd, sent], ...OTHERS.slice(1)]);
      expect(r.headers).toEqual([OTHERS[0]!, [odd, value], ...OTHERS.slice(1)]);
      expect(JSON.stringify(r.headers)).not.toContain(ph);
    });

    test(`${label}: duplicates (mixed case) collapse to the first position`, () => {
      const lower = header.toLowerCase();
      const r = inject(c, [["A", "1"], [lower, "x"], ["B", "2"], [header, "y"], ["C", "3"], [lower.toUpperCase(), "z"]]);
      const slot = header === "Cookie" ? `x; y; z; session=${SECRET}` : value;
      expect(r.headers).toEqual([["A", "1"], [lower, slot], ["B", "2"], ["C", "3"]]);
    });

    test(`${label}: placeholder is recognisable and never the secret`, () => {
      const ph = pluginFor(c.type).placeholder(c);
      expect(ph).toContain("clawpatrol");
      expect(ph).not.toBe(SECRET);
      expect(ph).not.toContain(SECRET);
      expect(ph).toMatch(/^[A-Za-z0-9._~:-]+$/);
    });

    test(`${label}: revealing forms cover what was written`, () => {
      const forms = pluginFor(c.type).revealingForms(SECRET, c);
      expect(forms).toContain(value.startsWith("Basic ") ? value : SECRET);
      expect(forms.every((f) => f.length > 0)).toBe(true);
      // Every form scrubbed means the injected header value no longer shows the secret.
      let scrubbed = value;
      for (const f of [...forms].sort((a, b) => b.length - a.length)) scrubbed = scrubbed.split(f).join("#");
      expect(scrubbed).not.toContain(SECRET);
    });
  }
});

describe("slot isolation", () => {
  test("a plugin leaves every other type's slot alone", () => {
    const all: HeaderList = [
      ["Authorization", "Bearer agent-own"],
      ["x-api-key", "agent-key"],
      ["x-goog-api-key", "agent-goog"],
      ["Cookie", "a=1"],
      ["X-Auth-Token", "agent-tok"],
    ];
    for (const { c, header } of SLOTS) {
      const r = inject(c, all);
      for (const [n, v] of all) {
        if (n.toLowerCase() === header.toLowerCase()) continue;
        expect(r.headers.find(([m]) => m === n)).toEqual([n, v]);
      }
      const hadSlot = all.some(([n]) => n.toLowerCase() === header.toLowerCase());
      expect(r.headers.length).toBe(all.length + (hadSlot ? 0 : 1));
    }
  });

  test("method, target (but gemini's key=) and anything beyond the headers stay as they were", () => {
    for (const { c } of [...SLOTS, { c: cred("passthrough") }]) {
      const body = new TextEncoder().encode(`{"token":"clawpatrol-placeholder-main"}`);
      const r = { ...req(OTHERS, "/v1/x?a=1&key=ph"), body };
      pluginFor(c.type).inject(r, SECRET, c);
      expect(r.method).toBe("POST");
      expect(r.body).toBe(body);
      expect(new TextDecoder().decode(r.body)).toBe(`{"token":"clawpatrol-placeholder-main"}`);
      expect(r.target).toBe(c.type === "gemini_api_key" ? `/v1/x?a=1&key=${SECRET}` : "/v1/x?a=1&key=ph");
    }
  });

  test("anthropic leaves an Authorization placeholder as sent (not its slot)", () => {
    const c = cred("anthropic_manual_key");
    const ph = pluginFor(c.type).placeholder(c);
    const r = inject(c, [["Authorization", `Bearer ${ph}`], ["x-api-key", ph]]);
    expect(r.headers).toEqual([["Authorization", `Bearer ${ph}`], ["x-api-key", SECRET]]);
  });

  test("passthrough injects nothing and reveals nothing", () => {
    const c = cred("passthrough");
    const r = inject(c, [["Authorization", "Bearer agent-own"], ...OTHERS]);
    expect(r.headers).toEqual([["Authorization", "Bearer agent-own"], ...OTHERS]);
    expect(pluginFor("passthrough").revealingForms(SECRET, c)).toEqual([]);
    expect(pluginFor("passthrough").placeholder(c)).toBe("");
  });

  test("a secret with a line break is refused, never written (basic_auth base64-encodes it)", () => {
    for (const { c } of SLOTS) {
      if (c.type === "basic_auth") continue;
      expect(() => inject(c, [], "/", "abc\r\nX-Evil: 1")).toThrow();
    }
  });

  test("pluginFor an unknown type throws", () => {
    expect(() => pluginFor("nope" as CredentialType)).toThrow();
  });
});

describe("github_token scheme", () => {
  const c = cred("github_token");
  test("keeps the agent's `token` scheme word", () => {
    expect(inject(c, [["authorization", "token ghp_placeholder"]]).headers).toEqual([["authorization", `token ${SECRET}`]]);
    expect(inject(c, [["Authorization", "Token x"]]).headers).toEqual([["Authorization", `Token ${SECRET}`]]);
  });
  test("anything else becomes Bearer", () => {
    expect(inject(c, [["Authorization", "Bearer x"]]).headers).toEqual([["Authorization", `Bearer ${SECRET}`]]);
    expect(inject(c, [["Authorization", "tokenish x"]]).headers).toEqual([["Authorization", `Bearer ${SECRET}`]]);
  });
  test("revealing forms include both schemes", () => {
    const forms = pluginFor("github_token").revealingForms(SECRET, c);
    expect(forms).toContain(`token ${SECRET}`);
    expect(forms).toContain(`Bearer ${SECRET}`);
  });
});

describe("basic_auth", () => {
  test("without username the password half is still revealing; the user is not", () => {
    const forms = pluginFor("basic_auth").revealingForms("alice:pw-123456", cred("basic_auth"));
    expect(forms).toContain("pw-123456");
    expect(forms).toContain("alice:pw-123456");
    expect(forms).toContain(b64("alice:pw-123456"));
    expect(forms).toContain(`Basic ${b64("alice:pw-123456")}`);
    expect(forms).not.toContain("alice");
  });
  test("placeholder shapes: user:password pair without a username, password with one", () => {
    expect(pluginFor("basic_auth").placeholder(cred("basic_auth", {}, "db"))).toBe("clawpatrol-placeholder:db");
    expect(pluginFor("basic_auth").placeholder(cred("basic_auth", { username: "u" }, "db"))).toBe("clawpatrol-placeholder-db");
  });
});

describe("placeholders", () => {
  test("type-appropriate shapes", () => {
    const p = (t: CredentialType, s: Record<string, string> = {}) => pluginFor(t).placeholder(cred(t, s, "gh-prod.token"));
    expect(p("bearer_token")).toBe("clawpatrol-placeholder-gh-prod.token");
    expect(p("anthropic_manual_key")).toBe("sk-ant-clawpatrol-placeholder-gh-prod.token");
    expect(p("openai_api_key")).toBe("sk-clawpatrol-placeholder-gh-prod.token");
    expect(p("github_token")).toBe("ghp_clawpatrol_placeholder_gh-prod.token");
    expect(p("gemini_api_key")).toStartWith("AIza");
    expect(p("cookie_token", { cookie: "s" })).toBe("clawpatrol-placeholder-gh-prod.token");
  });
  test("odd characters in a name never need escaping", () => {
    expect(pluginFor("bearer_token").placeholder(cred("bearer_token", {}, "a b;c\"d/é"))).toBe("clawpatrol-placeholder-a_b_c_d__");
  });
});

describe("cookie_token", () => {
  const c = cred("cookie_token", { cookie: "session" });
  test("replaces the named cookie, other cookies untouched", () => {
    const r = inject(c, [["Cookie", "a=1; session=clawpatrol-placeholder-main; b=2"]]);
    expect(r.headers).toEqual([["Cookie", `a=1; session=${SECRET}; b=2`]]);
  });
  test("adds the cookie when absent", () => {
    expect(inject(c, [["Cookie", "a=1;b=2"]]).headers).toEqual([["Cookie", `a=1; b=2; session=${SECRET}`]]);
  });
  test("merges several Cookie headers into the first with '; '", () => {
    const r = inject(c, [["cookie", "a=1"], ["X", "y"], ["Cookie", "session=ph; b=2"], ["COOKIE", "c=3"]]);
    expect(r.headers).toEqual([["cookie", `a=1; session=${SECRET}; b=2; c=3`], ["X", "y"]]);
  });
  test("cookie names are case-sensitive and matched whole", () => {
    expect(setCookiePair(["Session=x; sessionid=y; session=z"], "session", "S")).toBe("Session=x; sessionid=y; session=S");
  });
  test("duplicate pairs of the slot cookie are dropped; valueless pairs kept", () => {
    expect(setCookiePair(["session=a; flag; session=b", " ; "], "session", "S")).toBe("session=S; flag");
  });
  test("values containing '=' are kept intact", () => {
    expect(setCookiePair(["t=a=b==; session=x"], "session", "S")).toBe("t=a=b==; session=S");
  });
});

describe("gemini_api_key query key", () => {
  const c = cred("gemini_api_key");
  test("replaces key= in the target, URL-encoded, and sets the header", () => {
    const r = inject(c, [["Host", "g"]], "/v1beta/models/x:generateContent?alt=sse&key=AIza-ph&x=1", "a+b/c=d&e");
    expect(r.target).toBe(`/v1beta/models/x:generateContent?alt=sse&key=${encodeURIComponent("a+b/c=d&e")}&x=1`);
    expect(r.headers).toEqual([["Host", "g"], ["x-goog-api-key", "a+b/c=d&e"]]);
  });
  test("no key parameter: target untouched", () => {
    expect(inject(c, [], "/v1/models?alt=sse&apikey=z&keys=2").target).toBe("/v1/models?alt=sse&apikey=z&keys=2");
    expect(inject(c, [], "/v1/models").target).toBe("/v1/models");
  });
  test("repeated, valueless and percent-encoded key params", () => {
    expect(replaceKeyParam("/p?key=a&b=1&key=c", "S")).toBe("/p?key=S&b=1");
    expect(replaceKeyParam("/p?key", "S")).toBe("/p?key=S");
    expect(replaceKeyParam("/p?%6Bey=a", "S")).toBe("/p?%6Bey=S");
    expect(replaceKeyParam("/p?%zz=a", "S")).toBe("/p?%zz=a");
  });
  test("revealing forms include the URL-encoded secret", () => {
    expect(pluginFor("gemini_api_key").revealingForms("a+b/c", c)).toContain("a%2Bb%2Fc");
  });
});

describe("header_token", () => {
  test("prefix defaults to empty; revealing forms include prefix+secret", () => {
    const c = cred("header_token", { header: "X-Key", prefix: "Token " });
    expect(pluginFor("header_token").revealingForms(SECRET, c)).toContain(`Token ${SECRET}`);
  });
  test("a missing header setting is a programming error", () => {
    expect(() => inject(cred("header_token"), [])).toThrow();
  });
});

describe("base64 echoes", () => {
  test("the secret base64-encoded inside any surrounding text contains one of its forms", () => {
    const forms = pluginFor("bearer_token").revealingForms(SECRET, cred("bearer_token"));
    for (const before of ["", "B", "Be", "Bearer ", "Authorization: Bearer "]) {
      for (const after of ["", "\n", "\r\n", "xyz"]) {
        for (const encoding of ["base64", "base64url"] as const) {
          const echoed = Buffer.from(before + SECRET + after).toString(encoding);
          expect(forms.some((f) => echoed.includes(f))).toBe(true);
        }
      }
    }
  });
});
