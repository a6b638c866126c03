import { describe, expect, test } from "bun:test";
import { grpcReply, h2Reply, h2RequestHeaders, h2ResponseHeaders, requestHeadFromH2 } from "../../../app/endpoints/https/h2head.ts";
import { denyResponse } from "../../../app/endpoints/https/decider.ts";

describe("requestHeadFromH2", () => {
  test("pseudo-headers become the HTTP/1.1 head the decider judges: :authority as Host, framing from END_STREAM and content-length", () => {
    const r = requestHeadFromH2({ ":method": "POST", ":path": "/v1/x?q=1", ":authority": "api.test", ":scheme": "https", "content-length": "5", authorization: "Bearer p" }, false);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.head.method).toBe("POST");
    expect(r.head.target).toBe("/v1/x?q=1");
    expect(r.head.headers[0]).toEqual(["host", "api.test"]);
    expect(r.head.headers).toContainEqual(["authorization", "Bearer p"]);
    expect(r.head.bodyKind).toEqual({ kind: "length", length: 5 });
    const get = requestHeadFromH2({ ":method": "GET", ":path": "/", ":authority": "api.test" }, true);
    expect(get.ok && get.head.bodyKind).toEqual({ kind: "none" });
    const streamed = requestHeadFromH2({ ":method": "POST", ":path": "/", ":authority": "api.test" }, false);
    expect(streamed.ok && streamed.head.bodyKind).toEqual({ kind: "chunked" });
  });

  test("what the rules could misread is refused", () => {
    const refused = (h: Record<string, string>, end = true) => {
      const r = requestHeadFromH2(h, end);
      return r.ok ? 0 : r.status;
    };
    expect(refused({ ":method": "CONNECT", ":authority": "x.test:443", ":protocol": "websocket" })).toBe(405);
    expect(refused({ ":method": "GET", ":path": "/" })).toBe(400);
    expect(refused({ ":method": "GET", ":path": "/", ":authority": "a.test", connection: "keep-alive" })).toBe(400);
    expect(refused({ ":method": "GET", ":path": "/", ":authority": "a.test", "transfer-encoding": "chunked" })).toBe(400);
    expect(refused({ ":method": "GET", ":path": "/", ":authority": "a.test", te: "gzip" })).toBe(400);
    expect(refused({ ":method": "GET", ":path": "/", ":authority": "a.test", "x-a": "one\r\ntwo" })).toBe(400);
    expect(refused({ ":method": "POST", ":path": "/", ":authority": "a.test", "content-length": "-1" }, false)).toBe(400);
    expect(refused({ ":method": "GET", ":path": "/", ":authority": "a.test", "content-length": "3" }, true)).toBe(400);
  });
});

describe("responses", () => {
  test("connection-specific fields go, needles are masked at the same length", () => {
    const h = h2ResponseHeaders(200, [["Connection", "keep-alive"], ["Transfer-Encoding", "chunked"], ["X-Echo", "tok-SECRET-1"], ["Set-Cookie", "a=1"], ["Set-Cookie", "b=2"]], ["SECRET"]);
    expect(h).toEqual({ ":status": 200, "x-echo": "tok-******-1", "set-cookie": ["a=1", "b=2"] });
  });

  test("the decider's 403 becomes h2 headers and the same JSON body; on a gRPC call, grpc-status 7 with the reason", () => {
    const reply = h2Reply(denyResponse(403, "no-x", "not this", false));
    expect(reply.headers[":status"]).toBe(403);
    expect(JSON.parse(Buffer.from(reply.body).toString())).toEqual({ error: "denied by clawpatrol", rule: "no-x", reason: "not this" });
    const g = grpcReply(reply);
    expect(g["grpc-status"]).toBe("7");
    expect(decodeURIComponent(String(g["grpc-message"]))).toBe("denied by clawpatrol: rule no-x: not this");
  });

  test("the outbound head toward an h2 upstream: Host as :authority, hop-by-hop gone, te only as trailers", () => {
    const h = h2RequestHeaders({ method: "GET", target: "/a", headers: [["Host", "api.test:8443"], ["Authorization", "Bearer real"], ["Content-Length", "0"]] }, "api.test", 8443, true);
    expect(h).toEqual({ ":method": "GET", ":scheme": "https", ":authority": "api.test:8443", ":path": "/a", authorization: "Bearer real", "content-length": "0", te: "trailers" });
  });
});
