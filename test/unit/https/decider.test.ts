// The HTTPS exchange decider as playbooks: a parsed request head in (then
// the body, a drain's result, an approval's outcome, as it asks), commands
// out, each described as lines so a mismatch reads as a diff. The policy is
// real HCL through the loader; rules are judged by the real engine.
import { beforeAll, describe, expect, test } from "bun:test";
import { policyFrom } from "../policy/helpers.ts";
import { Playbook } from "../support/playbook.ts";
import {
  DRAIN_LIMIT,
  ExchangeDecider,
  type DeciderCommand,
  type DeciderContext,
  type DeciderEvent,
  type EventFields,
} from "../../../app/endpoints/https/decider.ts";
import type { BodyKind, RequestHead } from "../../../app/endpoints/http1/parser.ts";
import type { HeaderList } from "../../../app/endpoints/http1/headers.ts";
import type { HoldOutcome } from "../../../app/approvers/hub.ts";
import type { Policy } from "../../../app/policy/types.ts";

const SECRET = "real-secret-0123456789";
const KEY = "real-key-9876543210";
const NOW = Date.parse("2026-12-07T12:00:00Z");
const LIMIT = 16;

let policy: Policy;

beforeAll(async () => {
  policy = await policyFrom(`schema_version = 1
defaults {
  verdict = "allow"
  profile = profile.agents
  inspect_limit = "${LIMIT}B"
}
endpoint "https" "api" {
  hosts = ["api.test"]
  credential = bearer_token.api
}
endpoint "https" "plain" {
  hosts = ["plain.test"]
}
endpoint "https" "keyed" {
  hosts = ["keyed.test"]
  credential = header_token.key
}
endpoint "https" "unset" {
  hosts = ["unset.test"]
  credential = bearer_token.unset
}
credential "bearer_token" "api" {}
credential "bearer_token" "unset" {}
credential "header_token" "key" {
  header = "X-Key"
}
profile "agents" {
  credentials = [bearer_token.api, bearer_token.unset, header_token.key]
}
profile "bare" {}
rule "no-deletes" {
  endpoint = https.plain
  condition = "http.method == 'DELETE'"
  verdict = "deny"
  reason = "deletes need a human"
}
rule "no-prod-in-body" {
  endpoint = https.api
  condition = "http.method == 'POST' && http.body_json.env == 'prod'"
  verdict = "deny"
  reason = "no prod from agents"
}
rule "no-admin" {
  endpoint = https.plain
  condition = "http.path.startsWith('/admin')"
  verdict = "deny"
  reason = "admin is off limits"
}
rule "header-arithmetic" {
  endpoint = https.plain
  condition = "http.path == '/count' && int(http.headers['x-count']) > 1"
  verdict = "deny"
}
rule "puts-need-a-human" {
  endpoint = https.plain
  condition = "http.method == 'PUT'"
  approve = [dashboard]
  reason = "PUT needs approval"
}
`);
});

function context(over: Partial<DeciderContext> = {}): DeciderContext {
  return {
    policy,
    device: { name: "laptop", profile: "agents" },
    sni: "api.test",
    now: NOW,
    secretFor: (cred) => {
      if (cred.ref === "bearer_token.api") return { ok: true, value: SECRET, needles: [SECRET] };
      if (cred.ref === "header_token.key") return { ok: true, value: KEY, needles: [KEY] };
      return { ok: false, reason: "no secret set" };
    },
    redact: (t) => t.replaceAll(SECRET, "[secret]").replaceAll("hunter2", "[secret]"),
    approvals: true,
    ...over,
  };
}

function head(
  method: string,
  target: string,
  over: { host?: string; headers?: HeaderList; body?: BodyKind; keepAlive?: boolean; expectContinue?: boolean } = {},
): RequestHead {
  return {
    method,
    target,
    version: "1.1",
    headers: [["Host", over.host ?? "api.test"], ...(over.headers ?? [])],
    bodyKind: over.body ?? { kind: "none" },
    keepAlive: over.keepAlive ?? true,
    expectContinue: over.expectContinue ?? false,
  };
}

const text = (s: string) => new TextEncoder().encode(s);
const decode = (b: Uint8Array) => new TextDecoder().decode(b);

const EVENT_KEYS = ["verdict", "status", "rule", "reason", "detail", "endpoint", "path", "credential", "bytesUp", "approvers", "operator", "approvalMs", "remembered"] as const;

function eventLine(e: EventFields): string {
  const parts = EVENT_KEYS.filter((k) => e[k] !== undefined).map((k) => `${k}=${typeof e[k] === "string" ? JSON.stringify(e[k]) : String(e[k])}`);
  return `event ${parts.join(" ")}`;
}

/** A reply as `reply STATUS [Connection: close] then-close|then-continue`, then its headers and body. */
function replyLines(data: Uint8Array, close: boolean): string[] {
  const raw = decode(data);
  const [headPart, body] = raw.split("\r\n\r\n") as [string, string];
  const [status, ...fields] = headPart.split("\r\n");
  const shown = fields.filter((f) => !/^(content-length|content-type|date):/i.test(f));
  return [`reply ${status!.split(" ")[1]} ${close ? "then-close" : "then-continue"}`, ...shown.map((f) => `< ${f}`), `< ${body.trim()}`];
}

function describeCommand(c: DeciderCommand): string[] {
  switch (c.type) {
    case "log":
      return [`log ${c.level} ${c.message} ${JSON.stringify(c.fields)}`];
    case "read-body":
      return [`read-body ${c.wait ? "wait" : "arrived"} atMost=${c.atMost}${c.sendContinue ? " send-100" : ""}`];
    case "drain":
      return [`drain atMost=${c.atMost}`];
    case "hold":
      return [
        `hold rule=${c.rule.name} chain=${c.chain.join(",")} operation=${c.operationId ?? "-"}`,
        `  ${c.request.method} ${c.request.host}${c.request.path} at ${c.request.time} body=${JSON.stringify(c.request.bodyPreview)}${c.request.bodyTruncated ? " truncated" : ""}`,
      ];
    case "reply":
      return [...replyLines(c.data, c.close), eventLine(c.event)];
    case "forward":
      return [
        `forward ${c.endpoint?.ref ?? "-"} ${c.head.method} ${c.head.target} body=${c.bodyBytes}${c.complete ? " complete" : ""}${c.chunked ? " chunked" : ""} needles=${c.needles.length}`,
        ...c.head.headers.map(([n, v]) => `> ${n}: ${v}`),
        eventLine(c.event),
      ];
  }
}

function playbook(over: Partial<DeciderContext> = {}): Playbook<DeciderEvent, DeciderCommand> {
  return new Playbook(new ExchangeDecider(context(over)), describeCommand);
}

const body = (...parts: string[]): DeciderEvent => ({ type: "body", chunks: parts.map(text), done: true });

function decided(decision: "allow" | "deny", reason: string, operator?: string): HoldOutcome {
  return {
    status: "decided",
    result: { id: "op-1", decision, reason, approvals: [{ decision, reason, approver: "dashboard", ...(operator ? { operator } : {}) }], latencyMs: 1500, remembered: false },
  };
}

describe("allowed requests are forwarded", () => {
  test("the credential is injected, hop-by-hop fields dropped, an identity answer asked for", () => {
    playbook()
      .in({ type: "head", head: head("GET", "/v1/models", { headers: [["Connection", "keep-alive"], ["Keep-Alive", "timeout=5"], ["Authorization", "Bearer placeholder"], ["Accept-Encoding", "gzip"]] }) })
      .out(
        "forward https.api GET /v1/models body=0 complete needles=1",
        "> Host: api.test",
        `> Authorization: Bearer ${SECRET}`,
        "> Accept-Encoding: identity",
        'event reason="no rule matched (default allow)" endpoint="https.api" path="/v1/models" credential="bearer_token.api"',
      )
      .done();
  });

  test("an endpoint without a credential forwards the agent's own headers untouched", () => {
    playbook({ sni: "plain.test" })
      .in({ type: "head", head: head("GET", "/x?q=1", { host: "plain.test", headers: [["Accept-Encoding", "gzip"]] }) })
      .out("forward https.plain GET /x?q=1 body=0 complete needles=0", "> Host: plain.test", "> Accept-Encoding: gzip", 'event reason="no rule matched (default allow)" endpoint="https.plain" path="/x?q=1"')
      .done();
  });

  test("a body a rule reads is read first (100 Continue sent), judged, and forwarded whole without Expect", () => {
    playbook()
      .in({
        type: "head",
        head: head("POST", "/deploy", { headers: [["Content-Length", "16"], ["Expect", "100-continue"]], body: { kind: "length", length: 16 }, expectContinue: true }),
      })
      .out(`read-body wait atMost=${LIMIT} send-100`)
      .in(body('{"env":"stage"}', "\n"))
      .out(
        "forward https.api POST /deploy body=16 complete needles=1",
        "> Host: api.test",
        `> Authorization: Bearer ${SECRET}`,
        "> Accept-Encoding: identity",
        "> Content-Length: 16",
        'event reason="no rule matched (default allow)" endpoint="https.api" path="/deploy" credential="bearer_token.api"',
      )
      .done();
  });

  test("a chunked upload no rule reads: what arrived is taken; whole, it goes out with a length", () => {
    playbook({ sni: "plain.test" })
      .in({ type: "head", head: head("POST", "/upload", { host: "plain.test", headers: [["Transfer-Encoding", "chunked"]], body: { kind: "chunked" } }) })
      .out(`read-body arrived atMost=${LIMIT}`)
      .in(body("abc", "de"))
      .out("forward https.plain POST /upload body=5 complete needles=0", "> Host: plain.test", "> Content-Length: 5", 'event reason="no rule matched (default allow)" endpoint="https.plain" path="/upload"')
      .done();
  });

  test("a chunked upload still arriving streams on chunked", () => {
    playbook({ sni: "plain.test" })
      .in({ type: "head", head: head("POST", "/upload", { host: "plain.test", headers: [["Transfer-Encoding", "chunked"]], body: { kind: "chunked" } }) })
      .out(`read-body arrived atMost=${LIMIT}`)
      .in({ type: "body", chunks: [text("abc")], done: false })
      .out("forward https.plain POST /upload body=3 chunked needles=0", "> Host: plain.test", "> Transfer-Encoding: chunked", 'event reason="no rule matched (default allow)" endpoint="https.plain" path="/upload"')
      .done();
  });

  test("a WebSocket upgrade keeps its Upgrade and drops compression when a secret must be scrubbed", () => {
    playbook()
      .in({
        type: "head",
        head: {
          ...head("GET", "/ws", { headers: [["Connection", "Upgrade"], ["Upgrade", "websocket"], ["Sec-WebSocket-Extensions", "permessage-deflate"]] }),
          upgrade: "websocket",
        },
      })
      .out(
        "forward https.api GET /ws body=0 complete needles=1",
        "> Host: api.test",
        "> Connection: Upgrade",
        "> Upgrade: websocket",
        `> Authorization: Bearer ${SECRET}`,
        "> Accept-Encoding: identity",
        'event reason="no rule matched (default allow)" endpoint="https.api" path="/ws" credential="bearer_token.api"',
      )
      .done();
  });
});

describe("rules deny", () => {
  test("a deny without a body keeps the connection", () => {
    playbook({ sni: "plain.test" })
      .in({ type: "head", head: head("DELETE", "/repo", { host: "plain.test" }) })
      .out(
        "reply 403 then-continue",
        '< {"error":"denied by clawpatrol","rule":"no-deletes","reason":"deletes need a human"}',
        'event verdict="deny" status=403 rule="no-deletes" reason="deletes need a human" endpoint="https.plain" path="/repo" bytesUp=0',
      )
      .done();
  });

  test("a deny drains a small unread body so the connection can go on", () => {
    playbook({ sni: "plain.test" })
      .in({ type: "head", head: head("DELETE", "/repo", { host: "plain.test", headers: [["Content-Length", "5"]], body: { kind: "length", length: 5 } }) })
      .out(`drain atMost=${DRAIN_LIMIT}`)
      .in({ type: "drained", bytes: 5, done: true })
      .out(
        "reply 403 then-continue",
        '< {"error":"denied by clawpatrol","rule":"no-deletes","reason":"deletes need a human"}',
        'event verdict="deny" status=403 rule="no-deletes" reason="deletes need a human" endpoint="https.plain" path="/repo" bytesUp=5',
      )
      .done();
  });

  test("a body too large to drain closes the connection after the answer", () => {
    playbook({ sni: "plain.test" })
      .in({ type: "head", head: head("DELETE", "/repo", { host: "plain.test", body: { kind: "chunked" } }) })
      .out(`read-body arrived atMost=${LIMIT}`)
      .in({ type: "body", chunks: [], done: false })
      .out(`drain atMost=${DRAIN_LIMIT}`)
      .in({ type: "drained", bytes: DRAIN_LIMIT, done: false })
      .out(
        "reply 403 then-close",
        "< Connection: close",
        '< {"error":"denied by clawpatrol","rule":"no-deletes","reason":"deletes need a human"}',
        `event verdict="deny" status=403 rule="no-deletes" reason="deletes need a human" endpoint="https.plain" path="/repo" bytesUp=${DRAIN_LIMIT}`,
      )
      .done();
  });

  test("an agent waiting on 100-continue is refused at once (nothing drained) and the connection closed", () => {
    playbook({ sni: "plain.test" })
      .in({ type: "head", head: head("DELETE", "/repo", { host: "plain.test", headers: [["Expect", "100-continue"]], body: { kind: "length", length: 10 }, expectContinue: true }) })
      .out(
        "reply 403 then-close",
        "< Connection: close",
        '< {"error":"denied by clawpatrol","rule":"no-deletes","reason":"deletes need a human"}',
        'event verdict="deny" status=403 rule="no-deletes" reason="deletes need a human" endpoint="https.plain" path="/repo" bytesUp=0',
      )
      .done();
  });

  test("a rule reading the body denies after reading it", () => {
    playbook()
      .in({ type: "head", head: head("POST", "/deploy", { body: { kind: "length", length: 14 } }) })
      .out(`read-body wait atMost=${LIMIT}`)
      .in(body('{"env":"prod"}'))
      .out(
        "reply 403 then-continue",
        '< {"error":"denied by clawpatrol","rule":"no-prod-in-body","reason":"no prod from agents"}',
        'event verdict="deny" status=403 rule="no-prod-in-body" reason="no prod from agents" endpoint="https.api" path="/deploy" bytesUp=14',
      )
      .done();
  });

  test("a body past the inspection limit leaves body_json unknown: the rule fails closed", () => {
    const detail = "the request body was truncated past the inspection limit";
    playbook()
      .in({ type: "head", head: head("POST", "/deploy", { body: { kind: "length", length: 100 } }) })
      .out(`read-body wait atMost=${LIMIT}`)
      .in({ type: "body", chunks: [text('{"env":"stage","pad":"')], done: false })
      .out(
        `log warn rule evaluation failed closed ${JSON.stringify({ rule: "no-prod-in-body", detail })}`,
        `drain atMost=${DRAIN_LIMIT - 22}`,
      )
      .in({ type: "drained", bytes: 78, done: true })
      .out(
        "reply 403 then-continue",
        '< {"error":"denied by clawpatrol","rule":"no-prod-in-body","reason":"rule \\"no-prod-in-body\\" could not be evaluated"}',
        `event verdict="deny" status=403 rule="no-prod-in-body" reason="rule \\"no-prod-in-body\\" could not be evaluated" detail="${detail}" endpoint="https.api" path="/deploy" bytesUp=100`,
      )
      .done();
  });

  test("a condition that cannot be evaluated denies and logs why (the agent is not told)", () => {
    const pb = playbook({ sni: "plain.test" }).in({ type: "head", head: head("GET", "/count", { host: "plain.test", headers: [["X-Count", "many"]] }) });
    const cmds = pb.peek();
    expect(cmds.map((c) => c.type)).toEqual(["log", "reply"]);
    const reply = cmds[1] as Extract<DeciderCommand, { type: "reply" }>;
    expect(reply.event.detail).toBeTruthy();
    expect(decode(reply.data)).not.toContain(reply.event.detail!);
    pb.out(...cmds.flatMap(describeCommand)).done();
  });

  test("the path is judged normalised and forwarded in that form", () => {
    playbook({ sni: "plain.test" })
      .in({ type: "head", head: head("GET", "//%61dmin/x", { host: "plain.test" }) })
      .out(
        "reply 403 then-continue",
        '< {"error":"denied by clawpatrol","rule":"no-admin","reason":"admin is off limits"}',
        'event verdict="deny" status=403 rule="no-admin" reason="admin is off limits" endpoint="https.plain" path="/admin/x" bytesUp=0',
      )
      .done();
  });

  test("an endpoint no longer claiming the server name: 403, the connection kept when the request was whole", () => {
    playbook({ sni: "gone.test" })
      .in({ type: "head", head: head("GET", "/", { host: "gone.test" }) })
      .out(
        "reply 403 then-continue",
        '< {"error":"denied by clawpatrol","rule":null,"reason":"no endpoint claims gone.test"}',
        'event verdict="deny" status=403 reason="no endpoint claims gone.test any more" path="/"',
      )
      .done();
  });
});

describe("requests refused before any rule (connection closed)", () => {
  const cases: [string, RequestHead, number, string][] = [
    ["Host naming another server", head("GET", "/", { host: "evil.test" }), 421, "Host header does not match the TLS server name"],
    ["absolute-form naming another authority", head("GET", "https://evil.test/x"), 421, "request target names another authority"],
    ["two Host fields", head("GET", "/", { headers: [["Host", "api.test"]] }), 400, "more than one Host header"],
    ["CONNECT", head("CONNECT", "api.test:443"), 405, "method CONNECT is not forwarded on an intercepted connection"],
    ["TRACE", head("TRACE", "/"), 405, "method TRACE is not forwarded on an intercepted connection"],
    ["a lower-case method", head("get", "/"), 501, 'method "get" is not supported'],
    ["PROPFIND", head("PROPFIND", "/"), 501, 'method "PROPFIND" is not supported'],
    ["a dot-dot segment", head("GET", "/a/../admin"), 400, "dot segment in the path"],
    ["an encoded dot-dot", head("GET", "/%2e%2e/admin"), 400, "dot segment in the path"],
    ["an encoded slash", head("GET", "/a%2fb"), 400, "encoded slash or backslash in the path"],
    ["a backslash", head("GET", "/a\\b"), 400, "backslash in the path"],
    ["a GET with a body", head("GET", "/", { body: { kind: "length", length: 3 } }), 400, "a GET request with a body is not forwarded"],
    ["a HEAD with a chunked body", head("HEAD", "/", { body: { kind: "chunked" } }), 400, "a HEAD request with a body is not forwarded"],
    ["an upgrade to h2c", { ...head("GET", "/"), upgrade: "h2c" }, 400, 'upgrade to "h2c" is not bridged'],
  ];
  for (const [name, h, status, reason] of cases) {
    test(name, () => {
      const pb = playbook().in({ type: "head", head: h });
      const cmds = pb.peek();
      expect(cmds).toHaveLength(1);
      const r = cmds[0] as Extract<DeciderCommand, { type: "reply" }>;
      expect(r.type).toBe("reply");
      expect(r.close).toBe(true);
      expect(r.event.status).toBe(status);
      expect(r.event.verdict).toBe("deny");
      expect(r.event.rule).toBeUndefined();
      expect(r.event.endpoint).toBeUndefined();
      // The reason is the shape check's own; the exact words are pinned for the stable ones.
      if (!name.includes("dot") && !name.includes("slash")) expect(r.event.reason).toBe(reason);
      const lines = replyLines(r.data, r.close);
      expect(lines.slice(0, 2)).toEqual([`reply ${status} then-close`, "< Connection: close"]);
      pb.out(...cmds.flatMap(describeCommand)).done();
    });
  }
});

describe("approvals", () => {
  const put = (over: Parameters<typeof head>[2] = {}) => head("PUT", "/config", { host: "plain.test", ...over });
  const HOLD = "hold rule=puts-need-a-human chain=dashboard operation=-";

  test("without an approval gate the request is denied (fail closed)", () => {
    playbook({ sni: "plain.test", approvals: false })
      .in({ type: "head", head: put() })
      .out(
        "reply 403 then-continue",
        expect.stringContaining("approval required; no approver is available") as unknown as string,
        'event verdict="deny" status=403 rule="puts-need-a-human" reason="PUT needs approval (approval required; no approver is available)" endpoint="https.plain" path="/config" bytesUp=0',
      )
      .done();
  });

  test("held with the body read for the approvers (time passed in), then allowed and forwarded", () => {
    playbook({ sni: "plain.test" })
      .in({ type: "head", head: put({ body: { kind: "length", length: 9 } }) })
      .out(`read-body wait atMost=${LIMIT}`)
      .in(body(`x=${SECRET.slice(0, 7)}`))
      .out(HOLD, `  PUT plain.test/config at 2026-12-07T12:00:00.000Z body="x=real-se"`)
      .in({ type: "approval", outcome: decided("allow", "fine", "alice") })
      .out(
        "forward https.plain PUT /config body=9 complete needles=0",
        "> Host: plain.test",
        "> Content-Length: 9",
        'event rule="puts-need-a-human" reason="PUT needs approval" endpoint="https.plain" path="/config" approvers="dashboard" operator="alice" approvalMs=1500',
      )
      .done();
  });

  test("approvers are shown the body redacted and marked truncated past the limit", () => {
    playbook({ sni: "plain.test" })
      .in({ type: "head", head: put({ body: { kind: "length", length: 40 } }) })
      .out(`read-body wait atMost=${LIMIT}`)
      .in({ type: "body", chunks: [text("p=hunter2&pad=xxxxxxxx")], done: false })
      .out(HOLD, `  PUT plain.test/config at 2026-12-07T12:00:00.000Z body="p=[secret]&pad=xx" truncated`)
      .in({ type: "approval", outcome: decided("allow", "fine") })
      .out(
        "forward https.plain PUT /config body=22 needles=0",
        "> Host: plain.test",
        "> Content-Length: 40",
        'event rule="puts-need-a-human" reason="PUT needs approval" endpoint="https.plain" path="/config" approvers="dashboard" approvalMs=1500',
      )
      .done();
  });

  test("denied by the approver: 403 with the approver's reason", () => {
    playbook({ sni: "plain.test" })
      .in({ type: "head", head: put({ headers: [["Clawpatrol-Operation", "op-7"]] }) })
      .out("hold rule=puts-need-a-human chain=dashboard operation=op-7", `  PUT plain.test/config at 2026-12-07T12:00:00.000Z body=""`)
      .in({ type: "approval", outcome: decided("deny", "not today", "bob") })
      .out(
        "reply 403 then-continue",
        '< {"error":"denied by clawpatrol","rule":"puts-need-a-human","reason":"not today"}',
        'event verdict="deny" status=403 rule="puts-need-a-human" reason="not today" endpoint="https.plain" path="/config" bytesUp=0 approvers="dashboard" operator="bob" approvalMs=1500',
      )
      .done();
  });

  test("still pending: 202 with the operation to retry with", () => {
    playbook({ sni: "plain.test" })
      .in({ type: "head", head: put() })
      .out(HOLD, `  PUT plain.test/config at 2026-12-07T12:00:00.000Z body=""`)
      .in({ type: "approval", outcome: { status: "pending", operation: "op-9", retryAfterS: 2 } })
      .out(
        "reply 202 then-continue",
        "< Clawpatrol-Operation: op-9",
        "< Retry-After: 2",
        '< {"status":"pending","operation":"op-9","retry_after":2}',
        'event verdict="pending" status=202 rule="puts-need-a-human" reason="held for approval (operation op-9)" endpoint="https.plain" path="/config" bytesUp=0',
      )
      .done();
  });

  test("pending on a connection that is not kept alive: the 202 says Connection: close", () => {
    playbook({ sni: "plain.test" })
      .in({ type: "head", head: put({ keepAlive: false }) })
      .out(HOLD, `  PUT plain.test/config at 2026-12-07T12:00:00.000Z body=""`)
      .in({ type: "approval", outcome: { status: "pending", operation: "op-9", retryAfterS: 2 } })
      .out(
        "reply 202 then-close",
        "< Clawpatrol-Operation: op-9",
        "< Retry-After: 2",
        "< Connection: close",
        '< {"status":"pending","operation":"op-9","retry_after":2}',
        'event verdict="pending" status=202 rule="puts-need-a-human" reason="held for approval (operation op-9)" endpoint="https.plain" path="/config" bytesUp=0',
      )
      .done();
  });

  test("a retry naming an operation that differs: 409 in the approval API's form", () => {
    playbook({ sni: "plain.test" })
      .in({ type: "head", head: put({ headers: [["Clawpatrol-Operation", "op-1"]] }) })
      .out("hold rule=puts-need-a-human chain=dashboard operation=op-1", `  PUT plain.test/config at 2026-12-07T12:00:00.000Z body=""`)
      .in({ type: "approval", outcome: { status: "refused", httpStatus: 409, code: "operation_mismatch", reason: "the request differs" } })
      .out(
        "reply 409 then-continue",
        '< {"error":"operation_mismatch","reason":"the request differs"}',
        'event verdict="deny" status=409 rule="puts-need-a-human" reason="the request differs" endpoint="https.plain" path="/config" bytesUp=0',
      )
      .done();
  });
});

describe("credentials", () => {
  test("a credential the device's profile is not granted: 403, nothing injected", () => {
    playbook({ device: { name: "ci", profile: "bare" } })
      .in({ type: "head", head: head("GET", "/") })
      .out(
        "reply 403 then-continue",
        '< {"error":"denied by clawpatrol","rule":null,"reason":"profile \\"bare\\" is not granted bearer_token.api"}',
        'event verdict="deny" status=403 reason="profile \\"bare\\" is not granted bearer_token.api" endpoint="https.api" path="/" bytesUp=0',
      )
      .done();
  });

  test("a credential without a value on the gateway: 502, logged, verdict error", () => {
    playbook({ sni: "unset.test" })
      .in({ type: "head", head: head("GET", "/", { host: "unset.test" }) })
      .out(
        'log error credential unavailable {"credential":"bearer_token.unset","reason":"no secret set"}',
        "reply 502 then-continue",
        '< {"error":"denied by clawpatrol","rule":null,"reason":"credential bearer_token.unset has no value configured on the gateway"}',
        'event verdict="error" status=502 reason="credential bearer_token.unset has no value configured on the gateway" endpoint="https.unset" path="/" credential="bearer_token.unset" bytesUp=0',
      )
      .done();
  });

  test("a Connection option naming the credential's slot: 400 (a hop would drop the credential)", () => {
    playbook({ sni: "keyed.test" })
      .in({ type: "head", head: head("GET", "/", { host: "keyed.test", headers: [["Connection", "X-Key"]] }) })
      .out(
        "reply 400 then-continue",
        `< {"error":"denied by clawpatrol","rule":null,"reason":"Connection names the credential's header"}`,
        `event verdict="deny" status=400 reason="Connection names the credential's header" endpoint="https.keyed" path="/" credential="header_token.key" bytesUp=0`,
      )
      .done();
  });

  test("the agent's own value in the slot is replaced by the real one", () => {
    playbook({ sni: "keyed.test" })
      .in({ type: "head", head: head("GET", "/", { host: "keyed.test", headers: [["X-Key", "placeholder"], ["x-key", "second"]] }) })
      .out(
        "forward https.keyed GET / body=0 complete needles=1",
        "> Host: keyed.test",
        `> X-Key: ${KEY}`,
        "> Accept-Encoding: identity",
        'event reason="no rule matched (default allow)" endpoint="https.keyed" path="/" credential="header_token.key"',
      )
      .done();
  });
});

describe("events out of order", () => {
  test("a body before any head is a bug in the shell, not a decision", () => {
    expect(() => new ExchangeDecider(context()).handle({ type: "body", chunks: [], done: true })).toThrow(/awaiting head/);
  });

  test("nothing more after a decision", () => {
    const d = new ExchangeDecider(context());
    d.handle({ type: "head", head: head("GET", "/", { host: "evil.test" }) });
    expect(() => d.handle({ type: "drained", bytes: 0, done: true })).toThrow(/awaiting decided/);
  });
});

describe("plain HTTP: each request names its host", () => {
  const plain = (over: Partial<DeciderContext> = {}) => playbook({ sni: "first.test", plain: {}, ...over });

  test("absolute-form to a claimed host: judged, forwarded in origin-form to that host, the credential not injected in clear", () => {
    const c = new ExchangeDecider(context({ sni: "first.test", plain: {} })).handle({
      type: "head",
      head: head("GET", "http://api.test/v1/models?x=1", { headers: [["Authorization", "Bearer placeholder"], ["Proxy-Authorization", "Basic abc"]] }),
    });
    const f = c.find((x) => x.type === "forward");
    if (f?.type !== "forward") throw new Error(JSON.stringify(c));
    expect(f.endpoint?.ref).toBe("https.api");
    expect(f.upstream).toEqual({ host: "api.test", port: 80, claimed: true });
    expect(f.head.target).toBe("/v1/models?x=1");
    expect(f.head.headers).toEqual([["Host", "api.test"], ["Authorization", "Bearer placeholder"]]);
    expect(f.needles).toEqual([]);
    expect(f.event.credential).toBeUndefined();
    expect(f.event.detail).toContain("not injected over plain HTTP");
    expect(f.event).toMatchObject({ host: "api.test", port: 80 });
  });

  test("a rule denies on the plain port as on TLS", () => {
    plain()
      .in({ type: "head", head: head("DELETE", "http://plain.test/x", { host: "plain.test" }) })
      .out("reply 403 then-continue", '< {"error":"denied by clawpatrol","rule":"no-deletes","reason":"deletes need a human"}', 'event verdict="deny" status=403 rule="no-deletes" reason="deletes need a human" endpoint="https.plain" path="/x" bytesUp=0')
      .done();
  });

  test("a port the endpoint does not claim is unclaimed: unknown_host = passthrough forwards it unjudged", () => {
    const c = new ExchangeDecider(context({ sni: "first.test", plain: {} })).handle({ type: "head", head: head("DELETE", "http://plain.test:8080/x", { host: "plain.test:8080" }) });
    const f = c.find((x) => x.type === "forward");
    if (f?.type !== "forward") throw new Error(JSON.stringify(c));
    expect(f.endpoint).toBeUndefined();
    expect(f.upstream).toEqual({ host: "plain.test", port: 8080, claimed: false });
    expect(f.event).toMatchObject({ verdict: "passthrough", reason: "no endpoint claims plain.test:8080 (unknown_host = passthrough)" });
  });

  test("unknown_host = deny refuses an unclaimed host with 403", async () => {
    const strict = await policyFrom(`schema_version = 1
defaults {
  verdict = "allow"
  unknown_host = "deny"
  profile = profile.agents
}
profile "agents" {}
`);
    const c = new ExchangeDecider(context({ policy: strict, sni: "x.test", plain: {} })).handle({ type: "head", head: head("GET", "http://x.test/", { host: "x.test" }) });
    expect(c).toHaveLength(1);
    expect(c[0]).toMatchObject({ type: "reply", close: false, event: { status: 403, verdict: "deny", reason: "no endpoint claims x.test:80 (unknown_host = deny)" } });
  });

  test("in the tunnel (a dialed port) the Host names the host; the explicit proxy needs absolute-form", () => {
    const c = new ExchangeDecider(context({ sni: "10.0.0.1", plain: { port: 80 } })).handle({ type: "head", head: head("GET", "/y", { host: "plain.test" }) });
    const f = c.find((x) => x.type === "forward");
    if (f?.type !== "forward") throw new Error(JSON.stringify(c));
    expect(f.upstream).toEqual({ host: "plain.test", port: 80, claimed: true });
    const refused = new ExchangeDecider(context({ sni: "first.test", plain: {} })).handle({ type: "head", head: head("GET", "/y", { host: "plain.test" }) });
    expect(refused[0]).toMatchObject({ type: "reply", close: true, event: { status: 400 } });
  });

  test("https:// in a plain request, or a Host naming another host than the target, is refused before any rule", () => {
    const https = new ExchangeDecider(context({ sni: "first.test", plain: {} })).handle({ type: "head", head: head("GET", "https://api.test/", {}) });
    expect(https[0]).toMatchObject({ type: "reply", close: true, event: { status: 400 } });
    const other = new ExchangeDecider(context({ sni: "first.test", plain: {} })).handle({ type: "head", head: head("GET", "http://plain.test/", { host: "api.test" }) });
    expect(other[0]).toMatchObject({ type: "reply", close: true, event: { status: 421 } });
  });
});
