// Throughput of the HTTP/1.1 codec (not a test; `bun test` does not pick it up).
//   ./node_modules/.bin/bun test/unit/http1/parser.bench.ts
// Prints heads/s for a typical 8-header request, MB/s for chunked decoding,
// and a baseline (find CRLFCRLF + decode the head as one string) measured in
// the same run, so the ratio travels between machines.
import { Http1Parser } from "../../app/endpoints/http1/parser.ts";
import { encodeChunk, serializeRequestHead } from "../../app/endpoints/http1/serialize.ts";
import type { HeaderList } from "../../app/endpoints/http1/headers.ts";

const H8: HeaderList = [
  ["Host", "api.anthropic.com"],
  ["User-Agent", "claude-cli/1.0.50 (external, cli)"],
  ["Accept", "application/json"],
  ["Accept-Encoding", "gzip, deflate, br"],
  ["Authorization", "Bearer clawpatrol-placeholder-0123456789abcdef"],
  ["Content-Type", "application/json"],
  ["Anthropic-Version", "2023-06-01"],
  ["X-Request-Id", "6f1c2a9e-5b1d-4c8e-9f3a-2d7b8e0c4a11"],
];
const reqBytes = serializeRequestHead({ method: "GET", target: "/v1/models?limit=20", headers: H8 });

function time(label: string, iterations: number, fn: () => void): number {
  for (let i = 0; i < Math.min(iterations / 10, 20000); i++) fn(); // warm-up
  const t0 = Bun.nanoseconds();
  for (let i = 0; i < iterations; i++) fn();
  const s = (Bun.nanoseconds() - t0) / 1e9;
  const rate = iterations / s;
  console.log(`${label.padEnd(52)} ${rate.toFixed(0).padStart(10)} /s`);
  return rate;
}

const N = 300_000;
const CRLFCRLF = new Uint8Array([13, 10, 13, 10]);
const baseline = time("baseline: indexOf CRLFCRLF + latin1 decode", N, () => {
  const b = Buffer.from(reqBytes.buffer, reqBytes.byteOffset, reqBytes.length);
  const end = b.indexOf(CRLFCRLF);
  b.toString("latin1", 0, end);
});
const keepAlive = new Http1Parser("request");
const reused = time("heads, 8 headers, one keep-alive parser", N, () => {
  keepAlive.push(reqBytes);
});
const fresh = time("heads, 8 headers, new parser per request", N, () => {
  new Http1Parser("request").push(reqBytes);
});
const split = new Http1Parser("request");
const half = reqBytes.length >> 1;
const a = reqBytes.subarray(0, half);
const b = reqBytes.subarray(half);
const splitRate = time("heads, 8 headers, split in two pushes", N, () => {
  split.push(a);
  split.push(b);
});
console.log(`ratio keep-alive / baseline: ${(reused / baseline).toFixed(2)}; fresh ${(fresh / baseline).toFixed(2)}; split ${(splitRate / baseline).toFixed(2)}`);

function chunkedBench(label: string, chunkSize: number, readSize: number): void {
  const count = Math.floor((64 * 1024 * 1024) / chunkSize);
  const total = count * chunkSize;
  const data = new Uint8Array(chunkSize).fill(0x61);
  const parts: Uint8Array[] = [];
  for (let i = 0; i < count; i++) parts.push(...encodeChunk(data));
  const wire = Buffer.concat(parts);
  const reads: Uint8Array[] = [];
  for (let o = 0; o < wire.length; o += readSize) reads.push(wire.subarray(o, o + readSize));
  const p = new Http1Parser("response");
  p.push(Buffer.from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "latin1"));
  let got = 0;
  const t0 = Bun.nanoseconds();
  for (const r of reads) for (const e of p.push(r)) if (e.type === "body") got += e.data.length;
  const s = (Bun.nanoseconds() - t0) / 1e9;
  if (got !== total) throw new Error(`decoded ${got} of ${total}`);
  console.log(`${label.padEnd(52)} ${(total / 1e6 / s).toFixed(0).padStart(10)} MB/s`);
}
chunkedBench("chunked decode, 16 KiB chunks, 64 KiB reads", 16384, 65536);
chunkedBench("chunked decode, 1 KiB chunks, 16 KiB reads", 1024, 16384);
chunkedBench("chunked decode, 100 B chunks (SSE-like), 16 KiB reads", 100, 16384);
