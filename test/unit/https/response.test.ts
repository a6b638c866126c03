// The response relay as playbooks: upstream bytes in (through the real
// HTTP/1.1 response parser, as the session feeds them), bytes for the agent
// and the outcome out. Each agent write is shown as its lines, so a
// mismatch reads as a diff.
import { describe, expect, test } from "bun:test";
import { gunzipSync, gzipSync } from "node:zlib";
import { Playbook } from "../support/playbook.ts";
import { ResponseRelay, type RelayCommand } from "../../../app/endpoints/https/response.ts";
import { Http1Parser, type RequestHead } from "../../../app/endpoints/http1/parser.ts";

const SECRET = "real-secret-0123456789";
const MASK = "*".repeat(SECRET.length);

/** What the session feeds the relay: upstream bytes (parsed), the upstream's EOF. */
type Upstream = { bytes: string; requestSent?: boolean } | { closed: true };

/** The relay behind the real response parser, as the session drives it. */
class Fed {
  private readonly parser = new Http1Parser("response");
  readonly relay: ResponseRelay;

  constructor(request: Pick<RequestHead, "version" | "keepAlive" | "upgrade">, needles: string[], method = "GET") {
    this.relay = new ResponseRelay(request, needles);
    this.parser.expectResponseTo(method);
  }

  handle(u: Upstream): RelayCommand[] {
    const out: RelayCommand[] = [];
    // The session stops reading at the response's end or failure.
    const feed = (ev: Parameters<ResponseRelay["handle"]>[0]) => {
      if (!out.some((c) => c.type !== "send-agent")) out.push(...this.relay.handle(ev));
    };
    if ("closed" in u) {
      // At EOF the parser's tail comes first, then the end of stream.
      const tail = this.parser.end();
      for (const ev of tail) feed({ type: "upstream", ev, requestSent: true });
      if (tail.length === 0) feed({ type: "upstream-closed" });
      return out;
    }
    for (const ev of this.parser.push(new TextEncoder().encode(u.bytes))) feed({ type: "upstream", ev, requestSent: u.requestSent ?? true });
    return out;
  }
}

function describeCommand(c: RelayCommand): string[] {
  switch (c.type) {
    case "send-agent":
      return [`agent ${JSON.stringify(new TextDecoder().decode(c.data))}`];
    case "done":
      return [`done ${c.status} bytesDown=${c.bytesDown}${c.reusable ? " reusable" : ""}${c.agentClose ? " agent-close" : ""}${c.early ? " early" : ""}`];
    case "upgraded":
      return [`upgraded ${c.status} rest=${JSON.stringify(new TextDecoder().decode(c.rest))}`];
    case "fail":
      return [`fail${c.refused ? " refused" : ""}: ${c.message}`];
  }
}

const H11 = { version: "1.1" as const, keepAlive: true };

function playbook(request: Pick<RequestHead, "version" | "keepAlive" | "upgrade"> = H11, needles: string[] = [], method = "GET") {
  return new Playbook<Upstream, RelayCommand>(new Fed(request, needles, method), describeCommand);
}

describe("framing", () => {
  test("a length body: hop-by-hop fields dropped, the length kept, the upstream reusable", () => {
    playbook()
      .in({ bytes: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\nX-A: 1\r\n\r\nhel" })
      .out('agent "HTTP/1.1 200 OK\\r\\nContent-Length: 5\\r\\nX-A: 1\\r\\n\\r\\n"', 'agent "hel"')
      .in({ bytes: "lo" })
      .out('agent "lo"', "done 200 bytesDown=5 reusable")
      .done();
  });

  test("a chunked body is chunked again as it comes, with the last chunk at its end", () => {
    playbook()
      .in({ bytes: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n" })
      .out('agent "HTTP/1.1 200 OK\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n"', 'agent "3\\r\\n"', 'agent "abc"', 'agent "\\r\\n"')
      .in({ bytes: "0\r\n\r\n" })
      .out('agent "0\\r\\n\\r\\n"', "done 200 bytesDown=3 reusable")
      .done();
  });

  test("an until-close body to an HTTP/1.1 agent is re-chunked; the upstream is not reused", () => {
    playbook()
      .in({ bytes: "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nab" })
      .out('agent "HTTP/1.1 200 OK\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n"', 'agent "2\\r\\n"', 'agent "ab"', 'agent "\\r\\n"')
      .in({ closed: true })
      .out('agent "0\\r\\n\\r\\n"', "done 200 bytesDown=2")
      .done();
  });

  test("an until-close body to an HTTP/1.0 agent ends with the agent's connection", () => {
    playbook({ version: "1.0", keepAlive: true })
      .in({ bytes: "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nab" })
      .out('agent "HTTP/1.1 200 OK\\r\\nConnection: close\\r\\n\\r\\n"', 'agent "ab"')
      .in({ closed: true })
      .out("done 200 bytesDown=2 agent-close")
      .done();
  });

  test("an agent not keeping the connection is told Connection: close", () => {
    playbook({ version: "1.1", keepAlive: false })
      .in({ bytes: "HTTP/1.1 204 No Content\r\n\r\n" })
      .out('agent "HTTP/1.1 204 No Content\\r\\nConnection: close\\r\\n\\r\\n"', "done 204 bytesDown=0 reusable")
      .done();
  });

  test("an answer before the request went out whole closes both sides, the upstream unused", () => {
    playbook()
      .in({ bytes: "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n", requestSent: false })
      .out('agent "HTTP/1.1 413 Payload Too Large\\r\\nContent-Length: 0\\r\\nConnection: close\\r\\n\\r\\n"', "done 413 bytesDown=0 agent-close early")
      .done();
  });

  test("a HEAD response's length is kept though no body follows", () => {
    playbook(H11, [], "HEAD")
      .in({ bytes: "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n" })
      .out('agent "HTTP/1.1 200 OK\\r\\nContent-Length: 1234\\r\\n\\r\\n"', "done 200 bytesDown=0 reusable")
      .done();
  });
});

describe("the secret echoed back is masked at the same length", () => {
  test("in the reason, a header name and value, and a body split across reads", () => {
    const half = SECRET.length / 2;
    playbook(H11, [SECRET])
      .in({ bytes: `HTTP/1.1 200 ${SECRET}\r\nX-${SECRET}: ${SECRET}\r\nContent-Length: ${SECRET.length + 4}\r\n\r\nk=${SECRET.slice(0, half)}` })
      .out(`agent "HTTP/1.1 200 ${MASK}\\r\\nX-${MASK}: ${MASK}\\r\\nContent-Length: ${SECRET.length + 4}\\r\\n\\r\\n"`, 'agent "k="')
      .in({ bytes: `${SECRET.slice(half)};\n` })
      .out(`agent "${MASK};\\n"`, `done 200 bytesDown=${SECRET.length + 4} reusable`)
      .done();
  });

  test("in an Early Hints head", () => {
    playbook(H11, [SECRET])
      .in({ bytes: `HTTP/1.1 103 Early Hints\r\nLink: </x?k=${SECRET}>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n` })
      .out(`agent "HTTP/1.1 103 Early Hints\\r\\nLink: </x?k=${MASK}>\\r\\n\\r\\n"`, 'agent "HTTP/1.1 204 No Content\\r\\n\\r\\n"', "done 204 bytesDown=0 reusable")
      .done();
  });

  test("a gzip body despite identity is held, masked, coded again and sent with its length", () => {
    const coded = gzipSync(Buffer.from(`{"echo":"${SECRET}"}`));
    const fed = new Fed(H11, [SECRET]);
    const head = `HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: ${coded.length}\r\n\r\n`;
    const parser = new Http1Parser("response");
    parser.expectResponseTo("GET");
    const events = parser.push(Buffer.concat([Buffer.from(head), coded]));
    const out = events.flatMap((ev) => fed.relay.handle({ type: "upstream", ev, requestSent: true }));
    expect(out.map((c) => c.type)).toEqual(["send-agent", "send-agent", "done"]);
    const sentHead = new TextDecoder().decode((out[0] as { data: Uint8Array }).data);
    const body = (out[1] as { data: Uint8Array }).data;
    expect(sentHead).toBe(`HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: ${body.length}\r\n\r\n`);
    expect(gunzipSync(body).toString()).toBe(`{"echo":"${MASK}"}`);
  });

  test("a coding that cannot be re-coded is refused before anything is sent", () => {
    playbook(H11, [SECRET])
      .in({ bytes: "HTTP/1.1 200 OK\r\nContent-Encoding: zstd\r\nContent-Length: 3\r\n\r\nabc" })
      .out("fail refused: upstream sent Content-Encoding zstd despite identity")
      .done();
  });

  test("without a secret a coded body passes as it is", () => {
    playbook()
      .in({ bytes: "HTTP/1.1 200 OK\r\nContent-Encoding: zstd\r\nContent-Length: 3\r\n\r\nabc" })
      .out('agent "HTTP/1.1 200 OK\\r\\nContent-Encoding: zstd\\r\\nContent-Length: 3\\r\\n\\r\\n"', 'agent "abc"', "done 200 bytesDown=3 reusable")
      .done();
  });
});

describe("upgrades", () => {
  const ws = { ...H11, upgrade: "websocket" };
  const SWITCH = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\n";

  test("a WebSocket 101 the agent asked for: relayed, frames after it handed over raw", () => {
    playbook(ws)
      .in({ bytes: `${SWITCH}\r\n<frames>` })
      .out('agent "HTTP/1.1 101 Switching Protocols\\r\\nConnection: Upgrade\\r\\nUpgrade: websocket\\r\\nSec-WebSocket-Accept: x\\r\\n\\r\\n"', 'upgraded 101 rest="<frames>"')
      .done();
  });

  test("a 101 the agent did not ask for is refused", () => {
    playbook().in({ bytes: `${SWITCH}\r\n` }).out("fail refused: upstream switched to a protocol the agent did not ask for").done();
  });

  test("a WebSocket extension never offered is refused when a secret must be scrubbed", () => {
    playbook(ws, [SECRET])
      .in({ bytes: `${SWITCH}Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n` })
      .out("fail refused: upstream chose a WebSocket extension the gateway did not offer")
      .done();
  });
});

describe("upstream failures", () => {
  test("closed before responding", () => {
    playbook().in({ closed: true }).out("fail: upstream closed before responding").done();
  });

  test("closed mid-response", () => {
    playbook()
      .in({ bytes: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc" })
      .out('agent "HTTP/1.1 200 OK\\r\\nContent-Length: 10\\r\\n\\r\\n"', 'agent "abc"')
      .in({ closed: true })
      .out("fail: upstream sent a malformed response: connection closed inside a message body")
      .done();
  });

  test("the end of stream inside a framed body, told by the shell, is a failure too", () => {
    const relay = new ResponseRelay(H11, []);
    const head = { status: 200, reason: "OK", version: "1.1" as const, headers: [], bodyKind: { kind: "length" as const, length: 10 }, keepAlive: true };
    expect(relay.handle({ type: "upstream", ev: { type: "head", head }, requestSent: true }).map((c) => c.type)).toEqual(["send-agent"]);
    expect(relay.handle({ type: "upstream-closed" })).toEqual([{ type: "fail", refused: false, message: "upstream closed mid-response" }]);
  });

  test("a malformed response", () => {
    playbook().in({ bytes: "HTTP/2 200 OK\r\n\r\n" }).out(expect.stringMatching(/^fail: upstream sent a malformed response: /) as unknown as string).done();
  });

  test("nothing is relayed after the response ended (a bug in the shell)", () => {
    const relay = new ResponseRelay(H11, []);
    relay.handle({ type: "upstream-closed" });
    expect(() => relay.handle({ type: "upstream-closed" })).toThrow(/after the response ended/);
  });
});
