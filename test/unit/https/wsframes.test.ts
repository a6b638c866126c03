// Server-to-client WebSocket frames after a credentialed upgrade: masked
// one frame at a time, however the bytes are cut; never held past a frame's
// end; refused when they cannot be masked.
import { describe, expect, test } from "bun:test";
import { ServerFrameScrubber } from "../../../app/endpoints/https/wsframes.ts";

const SECRET = "sk-ws-0123456789abcdef";

function frame(payload: Uint8Array | string, opts: { opcode?: number; fin?: boolean; rsv1?: boolean; mask?: boolean } = {}): Buffer {
  const p = typeof payload === "string" ? Buffer.from(payload) : Buffer.from(payload);
  const b0 = (opts.fin === false ? 0 : 0x80) | (opts.rsv1 ? 0x40 : 0) | (opts.opcode ?? 1);
  const m = opts.mask ? 0x80 : 0;
  let head: Buffer;
  if (p.length < 126) head = Buffer.from([b0, m | p.length]);
  else if (p.length < 65536) head = Buffer.from([b0, m | 126, p.length >> 8, p.length & 0xff]);
  else {
    head = Buffer.alloc(10);
    head[0] = b0;
    head[1] = m | 127;
    head.writeUInt32BE(p.length, 6);
  }
  return Buffer.concat([head, opts.mask ? Buffer.from([1, 2, 3, 4]) : Buffer.alloc(0), p]);
}

function run(s: ServerFrameScrubber, wire: Buffer, cut: number): Buffer {
  const out: Uint8Array[] = [];
  for (let i = 0; i < wire.length; i += cut) {
    const r = s.push(wire.subarray(i, i + cut));
    if (!r.ok) throw new Error(r.reason);
    out.push(...r.out);
  }
  return Buffer.concat(out);
}

describe("ServerFrameScrubber", () => {
  const big = "x".repeat(70_000) + SECRET + "y".repeat(300);
  const wire = Buffer.concat([frame(`token=${SECRET}`), frame(Buffer.alloc(200, 7), { opcode: 2 }), frame(big), frame(`ping ${SECRET}`, { opcode: 9 })]);
  const masked = wire.toString("latin1").split(SECRET).join("*".repeat(SECRET.length));

  for (const cut of [1, 3, 17, 1000, wire.length]) {
    test(`every frame masked at the same length, cut every ${cut} bytes`, () => {
      const out = run(new ServerFrameScrubber([SECRET]), wire, cut);
      expect(out.toString("latin1")).toBe(masked);
    });
  }

  test("a frame is emitted at its last byte, even when it ends like a secret begins", () => {
    const s = new ServerFrameScrubber([SECRET]);
    const r = s.push(frame("hello sk-ws"));
    expect(r.ok && Buffer.concat(r.out).toString("latin1")).toEndWith("hello sk-ws");
  });

  test("compressed, masked and oversized frames are refused", () => {
    expect(new ServerFrameScrubber([SECRET]).push(frame("x", { rsv1: true })).ok).toBe(false);
    expect(new ServerFrameScrubber([SECRET]).push(frame("x", { mask: true })).ok).toBe(false);
    expect(new ServerFrameScrubber([SECRET], 1000).push(frame(Buffer.alloc(2000))).ok).toBe(false);
    const huge = Buffer.from([0x82, 127, 0, 0, 0, 1, 0, 0, 0, 0]); // 2^32 bytes announced
    expect(new ServerFrameScrubber([SECRET]).push(huge).ok).toBe(false);
  });
});
