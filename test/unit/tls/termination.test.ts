// Peek → decide → terminate, under Bun, with a real TLS client: which ways
// of handing the peeked ClientHello back to node:tls complete a handshake.
// The gateway's dispatcher depends on these answers.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { Duplex } from "node:stream";
import tls from "node:tls";
import { loadOrCreateCA, type CertificateAuthority } from "../../../app/tls/ca.ts";
import { parseClientHello, type ClientHelloResult } from "../../../app/tls/clienthello.ts";
import { LeafCertificates } from "../../../app/tls/leaf.ts";

let root: string;
let ca: CertificateAuthority;
let leaves: LeafCertificates;
beforeAll(async () => {
  root = mkdtempSync(path.join(os.tmpdir(), "clawpatrol-term-"));
  ca = await loadOrCreateCA(root);
  leaves = new LeafCertificates(ca);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const payload = randomBytes(512 * 1024);
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** Reads from `stream` until the ClientHello parser decides; leaves the stream paused. */
function peekClientHello(stream: Duplex): Promise<{ result: ClientHelloResult; peeked: Buffer }> {
  return new Promise((resolve, reject) => {
    let peeked = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      peeked = Buffer.concat([peeked, chunk]);
      const result = parseClientHello(peeked);
      if (result.kind === "need-more") return;
      stream.off("data", onData);
      stream.off("error", reject);
      stream.pause();
      resolve({ result, peeked });
    };
    stream.on("data", onData);
    stream.on("error", reject);
  });
}

/** A Duplex over `inner` whose readable side starts with `prefix`: the peeked bytes, replayed. */
class ReplayDuplex extends Duplex {
  readonly #inner: Duplex;

  constructor(inner: Duplex, prefix: Buffer) {
    super();
    this.#inner = inner;
    // Pushed before `inner` can flow again, so the order on the wire holds.
    this.push(prefix);
    inner.on("data", (chunk: Buffer) => {
      if (!this.push(chunk)) inner.pause();
    });
    inner.on("end", () => this.push(null));
    inner.on("error", (error) => this.destroy(error));
  }

  override _read(): void {
    this.#inner.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.#inner.write(chunk, done);
  }

  override _final(done: (error?: Error | null) => void): void {
    this.#inner.end();
    done();
  }

  override _destroy(error: Error | null, done: (error?: Error | null) => void): void {
    this.#inner.destroy();
    done(error);
  }
}

/** Two in-memory Duplex ends: what one writes, the other reads (no socket anywhere). */
function duplexPair(): [Duplex, Duplex] {
  const ends: Duplex[] = [];
  const make = (peer: () => Duplex) =>
    new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, done) {
        peer().push(chunk);
        done();
      },
      final(done) {
        peer().push(null);
        done();
      },
    });
  ends.push(make(() => ends[1]!), make(() => ends[0]!));
  return [ends[0]!, ends[1]!];
}

/** The terminated side: echoes everything, half-closing when the client does. */
function echo(tlsSocket: tls.TLSSocket): void {
  tlsSocket.on("error", () => {});
  tlsSocket.pipe(tlsSocket);
}

interface ClientOutcome {
  authorized: boolean;
  alpn: string | false | null;
  peerCN: string;
  echoedSha: string;
}

/**
 * A real TLS client: sends the payload and collects the echo. With
 * `halfClose` it ends its side right after the payload (close_notify + FIN
 * while the echo is still coming back); otherwise it ends once the whole
 * echo arrived.
 */
function runClient(options: tls.ConnectionOptions, { halfClose = true } = {}): Promise<ClientOutcome> {
  return new Promise((resolve, reject) => {
    const client = tls.connect({ servername: "api.example.com", ca: ca.certPem, ALPNProtocols: ["h2", "http/1.1"], ...options });
    const chunks: Buffer[] = [];
    let received = 0;
    client.on("secureConnect", () => (halfClose ? client.end(payload) : client.write(payload)));
    client.on("data", (d: Buffer) => {
      chunks.push(d);
      received += d.length;
      if (!halfClose && received === payload.length) client.end();
    });
    client.on("end", () =>
      resolve({
        authorized: client.authorized,
        alpn: client.alpnProtocol ?? null,
        peerCN: String(client.getPeerCertificate().subject?.CN),
        echoedSha: sha256(Buffer.concat(chunks)),
      }),
    );
    client.on("error", reject);
    setTimeout(() => reject(new Error("client timed out")), 10_000).unref();
  });
}

const expected = () => ({ authorized: true, alpn: "http/1.1", peerCN: "api.example.com", echoedSha: sha256(payload) });
// A client over a Duplex (tls.connect({ socket })) in Bun 1.4.5 returns an
// empty getPeerCertificate(); the gateway's clients are real sockets, so
// the in-memory cases do not check the peer name.
const expectedInMemory = () => ({ ...expected(), peerCN: "undefined" });

async function listen(onSocket: (socket: net.Socket) => void): Promise<{ port: number; close: () => void }> {
  const server = net.createServer(onSocket);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}

async function terminate(stream: Duplex, peeked: Buffer, result: ClientHelloResult): Promise<tls.TLSSocket> {
  if (result.kind !== "hello" || result.sni === undefined) throw new Error(`no SNI: ${JSON.stringify(result)}`);
  const secureContext = await leaves.secureContextFor(result.sni);
  return new tls.TLSSocket(stream, { isServer: true, secureContext, ALPNProtocols: ["http/1.1"] });
}

describe("terminating after the peek", () => {
  test("net.Socket: unshift(peeked), then new TLSSocket(socket, { isServer })", async () => {
    const server = await listen(async (socket) => {
      const { result, peeked } = await peekClientHello(socket);
      socket.unshift(peeked);
      echo(await terminate(socket, peeked, result));
    });
    try {
      expect(await runClient({ host: "127.0.0.1", port: server.port })).toEqual(expected());
    } finally {
      server.close();
    }
  });

  const replayOverSocket = () =>
    listen(async (socket) => {
      const { result, peeked } = await peekClientHello(socket);
      echo(await terminate(new ReplayDuplex(socket, peeked), peeked, result));
    });

  test("a generic Duplex replaying the peeked bytes over a net.Socket", async () => {
    const server = await replayOverSocket();
    try {
      expect(await runClient({ host: "127.0.0.1", port: server.port }, { halfClose: false })).toEqual(expected());
    } finally {
      server.close();
    }
  });

  // Known Bun 1.4.5 gap (oven-sh/bun#42176, #43198): over a generic Duplex,
  // the peer's close_notify makes the TLSSocket end the transport at once;
  // data still being written back is lost and the TLSSocket emits neither
  // 'end' nor 'close'. Marked failing so a Bun upgrade that fixes it shows.
  test.failing("KNOWN GAP: a generic Duplex when the client half-closes early", async () => {
    const server = await replayOverSocket();
    try {
      expect(await runClient({ host: "127.0.0.1", port: server.port }, { halfClose: true })).toEqual(expected());
    } finally {
      server.close();
    }
  });

  test("in memory, no socket at all: a Duplex pair, the server side replayed", async () => {
    const [clientEnd, serverEnd] = duplexPair();
    void peekClientHello(serverEnd).then(async ({ result, peeked }) => {
      echo(await terminate(new ReplayDuplex(serverEnd, peeked), peeked, result));
    });
    expect(await runClient({ socket: clientEnd }, { halfClose: false })).toEqual(expectedInMemory());
  });

  test("in memory: unshift(peeked) on a plain Duplex, then TLSSocket over it", async () => {
    const [clientEnd, serverEnd] = duplexPair();
    void peekClientHello(serverEnd).then(async ({ result, peeked }) => {
      serverEnd.unshift(peeked);
      echo(await terminate(serverEnd, peeked, result));
    });
    expect(await runClient({ socket: clientEnd }, { halfClose: false })).toEqual(expectedInMemory());
  });

  test("net.Socket: unshift(peeked), then tlsServer.emit('connection') with an SNICallback", async () => {
    let sniSeen = null as string | null;
    const tlsServer = tls.createServer({
      ALPNProtocols: ["http/1.1"],
      SNICallback: (servername, done) => {
        sniSeen = servername;
        leaves.secureContextFor(servername).then((context) => done(null, context), done);
      },
    });
    tlsServer.on("secureConnection", echo);
    const server = await listen(async (socket) => {
      const { peeked } = await peekClientHello(socket);
      socket.unshift(peeked);
      tlsServer.emit("connection", socket);
    });
    try {
      expect(await runClient({ host: "127.0.0.1", port: server.port })).toEqual(expected());
      expect(sniSeen).toBe("api.example.com");
    } finally {
      server.close();
    }
  });
});
