// The intercepted connection's HTTP/1.1 forwarding as playbooks: the
// agent's and the upstream's bytes, connects, timers and approvals in;
// writes, reads asked for, connects, timers and events out, each described
// as a line so a mismatch reads as a diff. Deciding is the real
// ExchangeDecider on a real policy (HCL through the loader); the clock is
// the test's.
import { beforeAll, describe, test } from "bun:test";
import { policyFrom } from "../policy/helpers.ts";
import { Playbook } from "../support/playbook.ts";
import { ExchangeDecider } from "../../../app/endpoints/https/decider.ts";
import { InterceptConnection, type ConnectionCommand, type ConnectionEvent } from "../../../app/endpoints/https/connection.ts";
import type { Policy } from "../../../app/policy/types.ts";
import type { HoldOutcome } from "../../../app/approvers/hub.ts";

const T0 = Date.parse("2026-12-07T12:00:00Z");
const TIMEOUTS = { headerMs: 10_000, idleMs: 30_000, minRateBytesPerSec: 1_000 };

let policy: Policy;

beforeAll(async () => {
  policy = await policyFrom(`schema_version = 1
defaults {
  verdict = "allow"
  profile = profile.agents
  inspect_limit = "64B"
}
endpoint "https" "plain" {
  hosts = ["plain.test"]
}
endpoint "https" "judged" {
  hosts = ["judged.test"]
}
profile "agents" {}
rule "no-deletes" {
  endpoint = https.plain
  condition = "http.method == 'DELETE'"
  verdict = "deny"
  reason = "deletes need a human"
}
rule "puts-need-a-human" {
  endpoint = https.plain
  condition = "http.method == 'PUT' && http.path == '/config'"
  approve = [dashboard]
  reason = "PUT needs approval"
}
rule "no-prod" {
  endpoint = https.judged
  condition = "http.body_json.env == 'prod'"
  verdict = "deny"
  reason = "no prod from agents"
}
`);
});

type In = ConnectionEvent | { type: "start" };

/** A connection for `sni` with the test's clock, and a playbook over it. */
function connection(sni: string) {
  const clock = { now: T0 };
  const conn = new InterceptConnection({
    timeouts: TIMEOUTS,
    sni,
    now: () => clock.now,
    decider: (_head, now) =>
      new ExchangeDecider({
        policy,
        device: { name: "laptop", profile: "agents" },
        sni,
        now,
        secretFor: () => ({ ok: false, reason: "no secret set" }),
        redact: (t) => t,
        approvals: true,
      }),
  });
  const pb = new Playbook<In, ConnectionCommand>({ handle: (ev) => (ev.type === "start" ? conn.start() : conn.handle(ev)) }, (c) => describeCommand(c, clock.now));
  return { pb, clock };
}

const bytes = (s: string) => new Uint8Array(Buffer.from(s, "latin1"));
/** Bytes as text, CRLF as `|`; a long run of one byte as `x*2000`. */
const show = (b: Uint8Array) =>
  Buffer.from(b)
    .toString("latin1")
    .replaceAll("\r\n", "|")
    .replace(/(.)\1{63,}/g, (run, c: string) => `${c}*${run.length}`);

function describeCommand(c: ConnectionCommand, now: number): string[] {
  switch (c.type) {
    case "write":
      return [`${c.to} <- ${show(c.data)}`];
    case "read":
      return [`read ${c.from}${c.afterDrain.length > 0 ? ` after ${c.afterDrain.join("+")} drained` : ""}`];
    case "connect":
      return [`connect ${c.endpoint?.ref ?? "-"}`];
    case "release-upstream":
      return ["release upstream to the pool"];
    case "close-upstream":
      return ["close upstream"];
    case "end":
      return [`end ${c.to}`];
    case "timer":
      return [c.at === undefined ? "timer off" : `timer in ${c.at - now} ms`];
    case "hold":
      return [`hold for ${c.rule.name}`];
    case "publish": {
      const f = c.fields;
      const parts = [f.verdict, f.status, f.reason && f.verdict !== "allow" ? JSON.stringify(f.reason) : undefined, f.detail ? `detail=${JSON.stringify(f.detail)}` : undefined, `up=${f.bytesUp ?? 0}`, `down=${f.bytesDown ?? 0}`];
      return [`event ${c.head.method} ${c.head.target} ${parts.filter((p) => p !== undefined).join(" ")}`];
    }
    case "log":
      return [`log ${c.level} ${c.message}`];
    case "close":
      return [c.abort ? "abort" : `close (destroy after ${c.graceMs} ms)`];
  }
}

const client = (s: string): In => ({ type: "client-data", data: bytes(s) });
const upstream = (s: string): In => ({ type: "upstream-data", data: bytes(s) });
const OK_HI = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
const AGENT_OK_HI = "client <- HTTP/1.1 200 OK|Content-Length: 2||hi";
const WAIT_REQUEST = ["read client after upstream+client drained", "timer in 30000 ms"];

describe("forwarding", () => {
  test("keep-alive: two requests on one connection, the second on the pooled upstream", () => {
    const { pb } = connection("plain.test");
    pb.in({ type: "start" }).out(...WAIT_REQUEST);
    pb.in(client("GET /one HTTP/1.1\r\nHost: plain.test\r\n\r\n")).out("connect https.plain", "timer off");
    pb.in({ type: "upstream-connected", pooled: false }).out("upstream <- GET /one HTTP/1.1|Host: plain.test||", "read upstream after client drained");
    pb.in(upstream(OK_HI)).out(AGENT_OK_HI, "event GET /one allow 200 up=0 down=2", "release upstream to the pool", ...WAIT_REQUEST);
    pb.in(client("GET /two HTTP/1.1\r\nHost: plain.test\r\n\r\n")).out("connect https.plain", "timer off");
    pb.in({ type: "upstream-connected", pooled: true }).out("upstream <- GET /two HTTP/1.1|Host: plain.test||", "read upstream after client drained");
    pb.in(upstream(OK_HI)).out(AGENT_OK_HI, "event GET /two allow 200 up=0 down=2", "release upstream to the pool", ...WAIT_REQUEST);
    pb.in({ type: "client-closed" }).out("timer off", "close (destroy after 5000 ms)");
    pb.done();
  });

  test("a chunked request body streams as it comes, each chunk read once the upstream drained", () => {
    const { pb, clock } = connection("plain.test");
    pb.in({ type: "start" }).out(...WAIT_REQUEST);
    // The part already here goes with the head; the rest is not waited for.
    pb.in(client("POST /up HTTP/1.1\r\nHost: plain.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")).out("connect https.plain", "timer off");
    pb.in({ type: "upstream-connected", pooled: false }).out(
      "upstream <- POST /up HTTP/1.1|Host: plain.test|Transfer-Encoding: chunked||5|hello|",
      "read client after upstream drained",
      "read upstream after client drained",
    );
    // Only time spent waiting on the agent counts against its rate.
    clock.now += 60_000;
    pb.in({ type: "client-waiting" }).out("timer in 10000 ms");
    clock.now += 1_000;
    pb.in(client("6\r\n world\r\n")).out("upstream <- 6| world|", "read client after upstream drained", "timer off");
    pb.in(client("0\r\n\r\n")).out("upstream <- 0||");
    pb.in(upstream("HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")).out(
      "client <- HTTP/1.1 201 Created|Content-Length: 0||",
      "event POST /up allow 201 up=11 down=0",
      "release upstream to the pool",
      ...WAIT_REQUEST,
    );
    pb.done();
  });

  test("Expect: 100-continue: the gateway asks for the body a rule reads, then forwards it whole", () => {
    const { pb } = connection("judged.test");
    pb.in({ type: "start" }).out(...WAIT_REQUEST);
    pb.in(client("POST /deploy HTTP/1.1\r\nHost: judged.test\r\nExpect: 100-continue\r\nContent-Length: 15\r\n\r\n")).out(
      "client <- HTTP/1.1 100 Continue||",
      "read client after upstream+client drained",
      "timer off",
    );
    // The body's time starts once the shell waits on the agent.
    pb.in({ type: "client-waiting" }).out("timer in 10000 ms");
    pb.in(client('{"env":"stage"}')).out("connect https.judged", "timer off");
    pb.in({ type: "upstream-connected", pooled: false }).out(
      'upstream <- POST /deploy HTTP/1.1|Host: judged.test|Content-Length: 15||{"env":"stage"}',
      "read upstream after client drained",
    );
    pb.in(upstream(OK_HI)).out(AGENT_OK_HI, "event POST /deploy allow 200 up=15 down=2", "release upstream to the pool", ...WAIT_REQUEST);
    pb.done();
  });

  test("an upstream that cannot be reached: 502, and the connection carries the next request", () => {
    const { pb } = connection("plain.test");
    pb.in({ type: "start" }).out(...WAIT_REQUEST);
    pb.in(client("GET /a HTTP/1.1\r\nHost: plain.test\r\n\r\n")).out("connect https.plain", "timer off");
    pb.in({ type: "upstream-failed", message: "connect ECONNREFUSED" }).out(
      "log warn upstream connect failed",
      'event GET /a allow 502 detail="upstream: connect ECONNREFUSED" up=0 down=0',
      'client <- HTTP/1.1 502 Bad Gateway|Content-Type: application/json|Content-Length: 39||{"error":"could not reach plain.test"}\n',
      ...WAIT_REQUEST,
    );
    pb.done();
  });

  test("a dial that failed transiently is tried once more; a second failure is the 502", () => {
    const { pb } = connection("plain.test");
    pb.in({ type: "start" }).out(...WAIT_REQUEST);
    pb.in(client("GET /a HTTP/1.1\r\nHost: plain.test\r\n\r\n")).out("connect https.plain", "timer off");
    pb.in({ type: "upstream-failed", message: "connect timeout after 10000 ms", transient: true }).out("log info upstream connect failed, dialing again", "connect https.plain");
    pb.in({ type: "upstream-failed", message: "connect ECONNREFUSED", transient: true }).out(
      "log warn upstream connect failed",
      'event GET /a allow 502 detail="upstream: connect ECONNREFUSED" up=0 down=0',
      'client <- HTTP/1.1 502 Bad Gateway|Content-Type: application/json|Content-Length: 39||{"error":"could not reach plain.test"}\n',
      ...WAIT_REQUEST,
    );
    pb.done();
  });

  test("a retried dial that connects sends the request whole, once", () => {
    const { pb } = connection("plain.test");
    pb.in({ type: "start" }).out(...WAIT_REQUEST);
    pb.in(client("GET /a HTTP/1.1\r\nHost: plain.test\r\n\r\n")).out("connect https.plain", "timer off");
    pb.in({ type: "upstream-failed", message: "read ECONNRESET", transient: true }).out("log info upstream connect failed, dialing again", "connect https.plain");
    pb.in({ type: "upstream-connected", pooled: false }).out("upstream <- GET /a HTTP/1.1|Host: plain.test||", "read upstream after client drained");
    pb.in(upstream(OK_HI)).out(AGENT_OK_HI, "event GET /a allow 200 up=0 down=2", "release upstream to the pool", ...WAIT_REQUEST);
    pb.done();
  });

  test("shutdown: an idle connection closes at once", () => {
    const { pb } = connection("plain.test");
    pb.in({ type: "start" }).out(...WAIT_REQUEST);
    pb.in({ type: "shutdown" }).out("timer off", "close (destroy after 5000 ms)");
    pb.done();
  });

  test("shutdown: the exchange under way is answered and recorded, then the connection closes", () => {
    const { pb } = connection("plain.test");
    pb.in({ type: "start" }).out(...WAIT_REQUEST);
    pb.in(client("GET /a HTTP/1.1\r\nHost: plain.test\r\n\r\n")).out("connect https.plain", "timer off");
    pb.in({ type: "shutdown" }).out();
    pb.in({ type: "upstream-connected", pooled: false }).out("upstream <- GET /a HTTP/1.1|Host: plain.test||", "read upstream after client drained");
    pb.in(upstream(OK_HI)).out(AGENT_OK_HI, "event GET /a allow 200 up=0 down=2", "release upstream to the pool", "close (destroy after 5000 ms)");
    pb.done();
  });

  test("a pooled upstream the server closed meanwhile: the request is sent once more on a fresh one", () => {
    const { pb } = connection("plain.test");
    pb.in({ type: "start" }).out(...WAIT_REQUEST);
    pb.in(client("GET /a HTTP/1.1\r\nHost: plain.test\r\n\r\n")).out("connect https.plain", "timer off");
    pb.in({ type: "upstream-connected", pooled: true }).out("upstream <- GET /a HTTP/1.1|Host: plain.test||", "read upstream after client drained");
    pb.in({ type: "upstream-closed" }).out("log debug upstream exchange failed", "close upstream", "connect https.plain");
    pb.in({ type: "upstream-connected", pooled: false }).out("upstream <- GET /a HTTP/1.1|Host: plain.test||", "read upstream after client drained");
    pb.in(upstream(OK_HI)).out(AGENT_OK_HI, "event GET /a allow 200 up=0 down=2", "release upstream to the pool", ...WAIT_REQUEST);
    pb.done();
  });

  test("a fresh upstream that closes without answering: 502 and no second try", () => {
    const { pb } = connection("plain.test");
    pb.in({ type: "start" }).out(...WAIT_REQUEST);
    pb.in(client("GET /a HTTP/1.1\r\nHost: plain.test\r\n\r\n")).out("connect https.plain", "timer off");
    pb.in({ type: "upstream-connected", pooled: false }).out("upstream <- GET /a HTTP/1.1|Host: plain.test||", "read upstream after client drained");
    pb.in({ type: "upstream-closed" }).out(
      "log debug upstream exchange failed",
      "close upstream",
      'event GET /a allow 502 detail="upstream closed the connection" up=0 down=0',
      'client <- HTTP/1.1 502 Bad Gateway|Content-Type: application/json|Connection: close|Content-Length: 45||{"error":"plain.test closed the connection"}\n',
      "close (destroy after 5000 ms)",
    );
    pb.done();
  });

  test("a denied request, then the next one on the same connection", () => {
    const { pb } = connection("plain.test");
    pb.in({ type: "start" }).out(...WAIT_REQUEST);
    // Both requests in one read: the second waits its turn.
    pb.in(client("DELETE /x HTTP/1.1\r\nHost: plain.test\r\n\r\nGET /y HTTP/1.1\r\nHost: plain.test\r\n\r\n")).out(
      'event DELETE /x deny 403 "deletes need a human" up=0 down=0',
      'client <- HTTP/1.1 403 Forbidden|Content-Type: application/json|Content-Length: 85||{"error":"denied by clawpatrol","rule":"no-deletes","reason":"deletes need a human"}\n',
      "connect https.plain",
      "timer off",
    );
    pb.in({ type: "upstream-connected", pooled: false }).out("upstream <- GET /y HTTP/1.1|Host: plain.test||", "read upstream after client drained");
    pb.in(upstream(OK_HI)).out(AGENT_OK_HI, "event GET /y allow 200 up=0 down=2", "release upstream to the pool", ...WAIT_REQUEST);
    pb.done();
  });

  test("a WebSocket upgrade, then bytes spliced both ways until both sides end", () => {
    const { pb } = connection("plain.test");
    pb.in({ type: "start" }).out(...WAIT_REQUEST);
    const upgrade = "GET /ws HTTP/1.1\r\nHost: plain.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    pb.in(client(upgrade)).out("connect https.plain", "timer off");
    pb.in({ type: "upstream-connected", pooled: false }).out(
      "upstream <- GET /ws HTTP/1.1|Host: plain.test|Sec-WebSocket-Version: 13|Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==|Connection: Upgrade|Upgrade: websocket||",
      "read upstream after client drained",
    );
    // A frame that came with the 101 is relayed after it.
    pb.in(upstream("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x02hi")).out(
      "client <- HTTP/1.1 101 Switching Protocols|Connection: Upgrade|Upgrade: websocket|Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=||",
      "event GET /ws allow 101 up=0 down=0",
      "client <- \x81\x02hi",
      "read upstream after client drained",
      "read client after upstream drained",
    );
    pb.in(client("\x81\x82abcd\x09\x0b")).out("upstream <- \x81\x82abcd\x09\x0b", "read client after upstream drained");
    pb.in(upstream("\x81\x03bye")).out("client <- \x81\x03bye", "read upstream after client drained");
    pb.in({ type: "client-closed" }).out("end upstream");
    pb.in({ type: "upstream-closed" }).out("end client", "close upstream", "close (destroy after 5000 ms)");
    pb.done();
  });
});

describe("truthful events when a side ends mid-response", () => {
  const BIG = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + "x".repeat(40);

  test("the agent closes mid-download: recorded as the 200 it got and the bytes it got, closed by the client", () => {
    const { pb } = connection("plain.test");
    pb.in({ type: "start" }).out(...WAIT_REQUEST);
    pb.in(client("GET /big HTTP/1.1\r\nHost: plain.test\r\n\r\n")).out("connect https.plain", "timer off");
    pb.in({ type: "upstream-connected", pooled: false }).out("upstream <- GET /big HTTP/1.1|Host: plain.test||", "read upstream after client drained");
    pb.in(upstream(BIG)).out(`client <- HTTP/1.1 200 OK|Content-Length: 100||${"x".repeat(40)}`, "read upstream after client drained");
    pb.in({ type: "client-gone" }).out('event GET /big allow 200 detail="the agent closed the connection mid-response" up=0 down=40', "close upstream", "close (destroy after 0 ms)");
    pb.done();
  });

  test("the upstream closes mid-body: the 200 that was sent and the bytes relayed, closed by the upstream", () => {
    const { pb } = connection("plain.test");
    pb.in({ type: "start" }).out(...WAIT_REQUEST);
    pb.in(client("GET /big HTTP/1.1\r\nHost: plain.test\r\n\r\n")).out("connect https.plain", "timer off");
    pb.in({ type: "upstream-connected", pooled: false }).out("upstream <- GET /big HTTP/1.1|Host: plain.test||", "read upstream after client drained");
    pb.in(upstream(BIG)).out(`client <- HTTP/1.1 200 OK|Content-Length: 100||${"x".repeat(40)}`, "read upstream after client drained");
    pb.in({ type: "upstream-closed" }).out(
      "log debug upstream exchange failed",
      "close upstream",
      'event GET /big allow 200 detail="upstream ended the response early: upstream sent a malformed response: connection closed inside a message body" up=0 down=40',
      "close (destroy after 5000 ms)",
    );
    pb.done();
  });
});

describe("approvals", () => {
  const allowed: HoldOutcome = {
    status: "decided",
    result: { id: "op-1", decision: "allow", reason: "fine", approvals: [{ decision: "allow", reason: "fine", approver: "dashboard", operator: "alice" }], latencyMs: 1500, remembered: false },
  };

  test("a held request reads nothing more while it waits, then is forwarded", () => {
    const { pb, clock } = connection("plain.test");
    pb.in({ type: "start" }).out(...WAIT_REQUEST);
    pb.in(client("PUT /config HTTP/1.1\r\nHost: plain.test\r\nContent-Length: 2\r\n\r\nok")).out("hold for puts-need-a-human", "timer off");
    clock.now += 1_500;
    pb.in({ type: "approval", outcome: allowed }).out("connect https.plain");
    pb.in({ type: "upstream-connected", pooled: false }).out("upstream <- PUT /config HTTP/1.1|Host: plain.test|Content-Length: 2||ok", "read upstream after client drained");
    pb.in(upstream(OK_HI)).out(AGENT_OK_HI, "event PUT /config allow 200 up=2 down=2", "release upstream to the pool", ...WAIT_REQUEST);
    pb.done();
  });
});

describe("client timeouts", () => {
  test("header: a head not finished in time gets 408 and the connection closes", () => {
    const { pb, clock } = connection("plain.test");
    pb.in({ type: "start" }).out(...WAIT_REQUEST);
    clock.now += 1_000;
    pb.in(client("GET / HTTP/1.1\r\nHo")).out("read client after upstream+client drained", "timer in 10000 ms");
    pb.in({ type: "client-waiting" }).out();
    clock.now += 9_999;
    // A timer that fires a little early finds time left and is set again.
    pb.in({ type: "timer" }).out("timer in 1 ms");
    clock.now += 1;
    pb.in({ type: "timer" }).out(
      "log debug intercepted client out of time",
      'client <- HTTP/1.1 408 Request Timeout|Content-Type: application/json|Connection: close|Content-Length: 39||{"error":"request head took too long"}\n',
      "close (destroy after 1000 ms)",
    );
    // Nothing after the end.
    pb.in({ type: "client-closed" }).out();
    pb.done();
  });

  test("idle: a connection with no request in time closes without an answer", () => {
    const { pb, clock } = connection("plain.test");
    pb.in({ type: "start" }).out(...WAIT_REQUEST);
    pb.in({ type: "client-waiting" }).out();
    clock.now += 30_000;
    pb.in({ type: "timer" }).out("log debug intercepted client out of time", "close (destroy after 1000 ms)");
    pb.done();
  });

  test("min rate: a body trickled slower than min_rate gets 408; the upstream is closed", () => {
    const { pb, clock } = connection("plain.test");
    pb.in({ type: "start" }).out(...WAIT_REQUEST);
    pb.in(client("PUT /big HTTP/1.1\r\nHost: plain.test\r\nContent-Length: 100000\r\n\r\n")).out("connect https.plain", "timer off");
    pb.in({ type: "upstream-connected", pooled: false }).out(
      "upstream <- PUT /big HTTP/1.1|Host: plain.test|Content-Length: 100000||",
      "read client after upstream drained",
      "read upstream after client drained",
    );
    // The grace (header_timeout) and 1 s per 1000 bytes, counted while waiting on the agent.
    pb.in({ type: "client-waiting" }).out("timer in 10000 ms");
    clock.now += 4_000;
    pb.in(client("x".repeat(2_000))).out("upstream <- x*2000", "read client after upstream drained", "timer off");
    pb.in({ type: "client-waiting" }).out("timer in 8000 ms");
    clock.now += 8_000;
    pb.in({ type: "timer" }).out(
      "log debug intercepted client out of time",
      'event PUT /big allow 408 detail="client out of time (slow_body)" up=2000 down=0',
      'client <- HTTP/1.1 408 Request Timeout|Content-Type: application/json|Connection: close|Content-Length: 34||{"error":"request body too slow"}\n',
      "close upstream",
      "close (destroy after 1000 ms)",
    );
    pb.done();
  });
});
