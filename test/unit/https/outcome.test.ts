// The end of an upstream attempt, table-driven: try again, answer 502, give
// the upstream back, keep the agent's connection.
import { describe, expect, test } from "bun:test";
import { afterResponse, attemptFailed, dialFailed } from "../../../app/endpoints/https/outcome.ts";

const text = (b: Uint8Array | undefined) => (b === undefined ? undefined : new TextDecoder().decode(b));

/** dialFailed's answer when it does not retry. */
function answered(r: ReturnType<typeof dialFailed>): Extract<ReturnType<typeof dialFailed>, { retry: false }> {
  if (r.retry) throw new Error("retried");
  return r;
}

describe("dialFailed", () => {
  test("a transient failure is dialed once more, never twice", () => {
    const x = { sni: "api.test", message: "connect timeout after 10000 ms", complete: true, keepAlive: true };
    expect(dialFailed({ ...x, transient: true })).toEqual({ retry: true });
    // Even a request not read whole: nothing of it was sent on a connection that never was.
    expect(dialFailed({ ...x, complete: false, transient: true })).toEqual({ retry: true });
    expect(answered(dialFailed({ ...x, transient: true, retried: true })).status).toBe(502);
    // A certificate refused does not pass by dialing again.
    expect(answered(dialFailed({ ...x, transient: false })).status).toBe(502);
  });

  test("502 naming the host; the connection goes on only for a whole keep-alive request", () => {
    const kept = answered(dialFailed({ sni: "api.test", message: "ECONNREFUSED", complete: true, keepAlive: true }));
    expect(kept.close).toBe(false);
    expect(kept.detail).toBe("upstream: ECONNREFUSED");
    expect(text(kept.data)).toMatch(/^HTTP\/1\.1 502 [^\r]*\r\n/);
    expect(text(kept.data)).not.toContain("Connection: close");
    expect(text(kept.data)).toContain('{"error":"could not reach api.test"}');
    expect(text(kept.data)).not.toContain("ECONNREFUSED");
    expect(answered(dialFailed({ sni: "api.test", message: "x", complete: true, keepAlive: false })).close).toBe(true);
    const unread = answered(dialFailed({ sni: "api.test", message: "x", complete: false, keepAlive: true }));
    expect(unread.close).toBe(true);
    expect(text(unread.data)).toContain("Connection: close");
  });
});

describe("attemptFailed", () => {
  const base = { refused: false, message: "upstream closed before responding", pooled: true, replayable: true, attempt: 1, responseStarted: false, sni: "api.test" };
  test("a pooled connection gone stale: the whole request is sent again once", () => {
    expect(attemptFailed(base)).toEqual({ retry: true });
  });
  const noRetry: [string, Partial<typeof base>][] = [
    ["a fresh connection", { pooled: false }],
    ["a request not held whole", { replayable: false }],
    ["the second attempt", { attempt: 2 }],
    ["a response already started", { responseStarted: true }],
    ["a refused response", { refused: true, message: "upstream chose a WebSocket extension the gateway did not offer" }],
  ];
  for (const [name, over] of noRetry) {
    test(`${name}: 502 and close, no retry`, () => {
      const r = attemptFailed({ ...base, ...over });
      if (r.retry) throw new Error("retried");
      expect(r.status).toBe(502);
      if (over.refused) {
        expect(r.detail).toBe(over.message!);
        expect(text(r.data)).toContain("api.test sent a response the gateway does not forward");
      } else {
        expect(r.detail).toBe("upstream closed the connection");
        if (!over.responseStarted) expect(text(r.data)).toContain("api.test closed the connection");
      }
      // Once the agent has response bytes, another head would corrupt the stream.
      if (over.responseStarted) expect(r.data).toBeUndefined();
      else expect(text(r.data)).toContain("Connection: close");
    });
  }
});

describe("afterResponse", () => {
  const clean = { reusable: true, requestComplete: true, method: "GET", atCleanBoundary: true, agentClose: false, keepAlive: true };
  const cases: [string, Partial<typeof clean>, { release: boolean; close: boolean }][] = [
    ["a clean keep-alive exchange", {}, { release: true, close: false }],
    ["the upstream said close", { reusable: false }, { release: false, close: false }],
    ["the request body not sent whole", { requestComplete: false }, { release: false, close: true }],
    ["HEAD (a lenient server may still send a body)", { method: "HEAD" }, { release: false, close: false }],
    ["bytes buffered past the response", { atCleanBoundary: false }, { release: false, close: false }],
    ["the agent's connection ends with the response", { agentClose: true }, { release: true, close: true }],
    ["the agent did not keep alive", { keepAlive: false }, { release: true, close: true }],
  ];
  for (const [name, over, want] of cases) test(name, () => expect(afterResponse({ ...clean, ...over })).toEqual(want));
});
