// The SPDY/3.1 frame scrubber: data frames masked at their own length,
// control frames untouched, frames split across reads held until whole.
import { expect, test } from "bun:test";
import { SpdyFrameScrubber, isSpdy } from "../../../app/endpoints/kubernetes/spdyframes.ts";

const SECRET = "k8s-REAL-token-0123456789";

function dataFrame(stream: number, payload: string): Buffer {
  const p = Buffer.from(payload);
  return Buffer.concat([Buffer.from([(stream >> 24) & 0x7f, (stream >> 16) & 0xff, (stream >> 8) & 0xff, stream & 0xff, 0, p.length >> 16, (p.length >> 8) & 0xff, p.length & 0xff]), p]);
}

function controlFrame(type: number, data: Buffer, version = 3): Buffer {
  return Buffer.concat([Buffer.from([0x80 | (version >> 8), version & 0xff, type >> 8, type & 0xff, 0, data.length >> 16, (data.length >> 8) & 0xff, data.length & 0xff]), data]);
}

test("a data frame's payload is masked at its own length; control frames pass as they are", () => {
  const s = new SpdyFrameScrubber([SECRET]);
  const reply = controlFrame(2, Buffer.from([0, 0, 0, 1, 0x78, 0x9c, 0x01, 0x02]));
  const data = dataFrame(1, `token: ${SECRET}\n`);
  const r = s.push(Buffer.concat([reply, data]));
  expect(r.ok).toBe(true);
  const out = Buffer.concat(r.ok ? r.out : []);
  expect(out.length).toBe(reply.length + data.length);
  expect(out.subarray(0, reply.length).equals(reply)).toBe(true);
  expect(out.toString("latin1")).not.toContain(SECRET);
  expect(out.subarray(reply.length + 8).toString()).toBe(`token: ${"*".repeat(SECRET.length)}\n`);
});

test("a frame split across reads comes out whole, once complete, and masked", () => {
  const s = new SpdyFrameScrubber([SECRET]);
  const data = dataFrame(3, `a${SECRET}b`);
  const parts = [data.subarray(0, 5), data.subarray(5, 14), data.subarray(14)];
  const out: Buffer[] = [];
  for (const [i, p] of parts.entries()) {
    const r = s.push(p);
    if (!r.ok) throw new Error(r.reason);
    if (i < 2) expect(r.out.length).toBe(0);
    out.push(...r.out.map((b) => Buffer.from(b)));
  }
  expect(Buffer.concat(out).subarray(8).toString()).toBe(`a${"*".repeat(SECRET.length)}b`);
});

test("a control frame of another SPDY version is refused", () => {
  const r = new SpdyFrameScrubber([SECRET]).push(controlFrame(2, Buffer.alloc(4), 2));
  expect(r.ok).toBe(false);
});

test("isSpdy", () => {
  expect(isSpdy("SPDY/3.1")).toBe(true);
  expect(isSpdy("websocket")).toBe(false);
  expect(isSpdy(undefined)).toBe(false);
});
