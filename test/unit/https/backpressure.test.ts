// writeWithBackpressure: waits for drain when the stream is full, fails when
// it closes, and leaves no listener behind either way.
import { expect, test } from "bun:test";
import { PassThrough } from "node:stream";
import { writeWithBackpressure } from "../../../app/endpoints/https/upstream.ts";

test("many blocked writes leave no listeners behind", async () => {
  const s = new PassThrough({ highWaterMark: 4 });
  s.on("data", () => {});
  for (let i = 0; i < 200; i++) await writeWithBackpressure(s, new Uint8Array(64));
  expect(s.listenerCount("close")).toBe(0);
  expect(s.listenerCount("drain")).toBe(0);
});

test("a stream that closes while full rejects the write", async () => {
  const s = new PassThrough({ highWaterMark: 4 });
  const pending = writeWithBackpressure(s, new Uint8Array(64));
  s.destroy();
  await expect(pending).rejects.toThrow("stream closed");
  expect(s.listenerCount("drain")).toBe(0);
  await expect(writeWithBackpressure(s, "x")).rejects.toThrow("stream closed");
});
