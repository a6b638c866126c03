// Test buffers: ClientHellos built from values, split into records, and
// captured live from a node:tls client. (pg-protocol's test-buffers idea.)
import net from "node:net";
import tls from "node:tls";

export interface Extension {
  type: number;
  data: Uint8Array;
}

export interface HelloSpec {
  legacyVersion?: number;
  sessionId?: Uint8Array;
  cipherSuites?: number[];
  compressionMethods?: number[];
  /** null: a hello with no extensions block at all (pre-TLS 1.2 style). */
  extensions?: Extension[] | null;
}

const u16 = (n: number) => [(n >> 8) & 0xff, n & 0xff];
const u24 = (n: number) => [(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
const ascii = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));

export function concatBytes(...parts: (Uint8Array | number[])[]): Uint8Array {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A ClientHello handshake message (header included). */
export function clientHelloMessage(spec: HelloSpec = {}): Uint8Array {
  const sessionId = spec.sessionId ?? new Uint8Array(32).fill(7);
  const suites = spec.cipherSuites ?? [0x1301, 0x1302, 0xc02f];
  const compression = spec.compressionMethods ?? [0];
  const extensions =
    spec.extensions === undefined
      ? [sniExtension("api.example.com"), alpnExtension(["h2", "http/1.1"]), supportedVersionsExtension([0x0304, 0x0303])]
      : spec.extensions;
  const extBlock =
    extensions === null
      ? new Uint8Array(0)
      : (() => {
          const body = concatBytes(...extensions.map((e) => concatBytes(u16(e.type), u16(e.data.length), e.data)));
          return concatBytes(u16(body.length), body);
        })();
  const body = concatBytes(
    u16(spec.legacyVersion ?? 0x0303),
    new Uint8Array(32).fill(0xab),
    [sessionId.length],
    sessionId,
    u16(suites.length * 2),
    suites.flatMap(u16),
    [compression.length],
    compression,
    extBlock,
  );
  return concatBytes([1], u24(body.length), body);
}

/** Wraps handshake bytes in handshake records of at most `fragmentSize` bytes each. */
export function inRecords(message: Uint8Array, fragmentSize = 16384, version = 0x0301): Uint8Array {
  const records: Uint8Array[] = [];
  for (let at = 0; at < message.length; at += fragmentSize) {
    const fragment = message.subarray(at, Math.min(at + fragmentSize, message.length));
    records.push(concatBytes([22], u16(version), u16(fragment.length), fragment));
  }
  return concatBytes(...records);
}

/** Wraps handshake bytes in records whose sizes are given (the last takes the rest). */
export function inRecordsOfSizes(message: Uint8Array, sizes: number[]): Uint8Array {
  const records: Uint8Array[] = [];
  let at = 0;
  for (const size of sizes) {
    if (at >= message.length) break;
    const fragment = message.subarray(at, Math.min(at + size, message.length));
    records.push(concatBytes([22, 3, 1], u16(fragment.length), fragment));
    at += fragment.length;
  }
  if (at < message.length) {
    const rest = message.subarray(at);
    records.push(concatBytes([22, 3, 1], u16(rest.length), rest));
  }
  return concatBytes(...records);
}

export function sniExtension(name: string | Uint8Array, nameType = 0): Extension {
  const bytes = typeof name === "string" ? ascii(name) : name;
  const entry = concatBytes([nameType], u16(bytes.length), bytes);
  return { type: 0, data: concatBytes(u16(entry.length), entry) };
}

export function alpnExtension(protocols: string[]): Extension {
  const list = concatBytes(...protocols.map((p) => concatBytes([p.length], ascii(p))));
  return { type: 16, data: concatBytes(u16(list.length), list) };
}

export function supportedVersionsExtension(versions: number[]): Extension {
  return { type: 43, data: concatBytes([versions.length * 2], versions.flatMap(u16)) };
}

/**
 * The first flight a real node:tls client sends: starts a plain TCP
 * listener, points `tls.connect` at it, and returns the bytes of the first
 * record(s) once a full handshake record arrived.
 */
export async function captureClientHello(options: tls.ConnectionOptions): Promise<Uint8Array> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  try {
    return await new Promise<Uint8Array>((resolve, reject) => {
      server.once("connection", (socket) => {
        let got = Buffer.alloc(0);
        socket.on("data", (chunk: Buffer) => {
          got = Buffer.concat([got, chunk]);
          if (got.length >= 5 && got.length >= 5 + got.readUInt16BE(3)) {
            resolve(new Uint8Array(got));
            socket.destroy();
          }
        });
        socket.on("error", () => {});
      });
      const client = tls.connect({ host: "127.0.0.1", port, ...options });
      client.on("error", () => {}); // the listener hangs up mid-handshake by design
      setTimeout(() => reject(new Error("no ClientHello within 5 s")), 5000).unref();
    });
  } finally {
    server.close();
  }
}
