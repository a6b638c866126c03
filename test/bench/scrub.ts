// Scrubber throughput (not a test; `bun test` skips it). Run:
//   ./node_modules/.bin/bun test/unit/credentials/scrub.bench.ts
// A 10 MB body with 3 needles (a few occurrences), fed in 16 KiB chunks and
// in SSE-sized 200-byte chunks, against a plain copy of the same chunks as
// the baseline measured in the same run.
import { StreamScrubber } from "../../app/credentials/scrub.ts";

const MB = 1024 * 1024;
const SIZE = 10 * MB;
const secret = "sk-ant-api03-" + "Zq8".repeat(30);
const needles = [secret, `Bearer ${secret}`, Buffer.from(`user:${secret}`).toString("base64")];

// Realistic-ish text: JSON/SSE lines with the secret echoed every ~1 MB.
const line = 'data: {"type":"content_block_delta","delta":{"type":"text_delta","text":"some streamed tokens s k"}}\n\n';
let text = "";
while (text.length < SIZE) text += text.length % MB < line.length ? `{"echo":"${secret}"}\n` : line;
const body = new TextEncoder().encode(text.slice(0, SIZE));

function chunks(size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < body.length; i += size) out.push(body.subarray(i, i + size));
  return out;
}

function time(label: string, cs: Uint8Array[], f: (c: Uint8Array[]) => number): number {
  f(cs); // warm-up
  const runs = 5;
  const t0 = performance.now();
  let n = 0;
  for (let r = 0; r < runs; r++) n += f(cs);
  const s = (performance.now() - t0) / 1000;
  const mbs = (n / MB) / s;
  console.log(`${label.padEnd(34)} ${mbs.toFixed(0).padStart(7)} MB/s`);
  return mbs;
}

for (const size of [16 * 1024, 200]) {
  const cs = chunks(size);
  const base = time(`copy baseline, ${size} B chunks`, cs, (c) => {
    let n = 0;
    for (const x of c) n += x.slice().length;
    return n;
  });
  const scrub = time(`scrub 3 needles, ${size} B chunks`, cs, (c) => {
    const s = new StreamScrubber(needles);
    let n = 0;
    for (const x of c) n += s.push(x).length;
    return n + s.flush().length;
  });
  console.log(`  ratio scrub/copy: ${(scrub / base).toFixed(2)}`);
}
