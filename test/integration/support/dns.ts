// DNS over real sockets for tests: a client (UDP and RFC 7766 TCP) and a
// small upstream resolver built on dns-packet. The upstream is a real DNS
// server: it answers `real.example` (A), truncates `big.example` over UDP
// and answers it whole over TCP, and never answers `slow.example`.
import dgram from "node:dgram";
import net from "node:net";
import dnsPacket from "dns-packet";

export const REAL_ADDRESS = "192.0.2.10";
export const BIG_COUNT = 60;

export function query(name: string, type: dnsPacket.RecordType = "A", id = (Math.random() * 0xffff) | 0): Buffer {
  return dnsPacket.encode({ id, type: "query", flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: "IN" }] });
}

/** One datagram out, the first datagram back (or undefined after `ms`). */
export async function udpExchange(port: number, msg: Uint8Array, ms = 8_000, host = "127.0.0.1"): Promise<Buffer | undefined> {
  const s = dgram.createSocket("udp4");
  try {
    return await new Promise((resolve) => {
      const t = setTimeout(() => resolve(undefined), ms);
      s.on("message", (m) => {
        clearTimeout(t);
        resolve(m);
      });
      s.send(msg, port, host);
    });
  } finally {
    s.close();
  }
}

/** Several framed queries on one TCP connection; the answers, in arrival order. */
export async function tcpExchange(port: number, msgs: Uint8Array[], host = "127.0.0.1"): Promise<Buffer[]> {
  return await new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    let buf = Buffer.alloc(0);
    const c = net.connect(port, host, () => {
      for (const m of msgs) {
        const f = Buffer.alloc(2 + m.length);
        f.writeUInt16BE(m.length, 0);
        f.set(m, 2);
        c.write(f);
      }
    });
    c.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        out.push(buf.subarray(2, 2 + buf.readUInt16BE(0)));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
      if (out.length === msgs.length) {
        c.destroy();
        resolve(out);
      }
    });
    c.on("error", reject);
    c.on("close", () => resolve(out));
  });
}

export interface TestUpstream {
  port: number;
  /** Queries seen, by transport. */
  seen: { udp: string[]; tcp: string[] };
  close(): Promise<void>;
}

function answer(q: dnsPacket.DecodedPacket, transport: "udp" | "tcp"): Buffer | undefined {
  const question = q.questions?.[0];
  if (!question) return undefined;
  const base = { id: q.id ?? 0, type: "response" as const, flags: dnsPacket.RECURSION_AVAILABLE | dnsPacket.RECURSION_DESIRED, questions: [question] };
  const name = question.name.toLowerCase();
  if (name === "slow.example") return undefined;
  if (name === "real.example") {
    return dnsPacket.encode({ ...base, answers: [{ type: "A", class: "IN", name: question.name, ttl: 300, data: REAL_ADDRESS }] });
  }
  if (name === "big.example") {
    if (transport === "udp") return dnsPacket.encode({ ...base, flags: base.flags | dnsPacket.TRUNCATED_RESPONSE });
    const answers: dnsPacket.Answer[] = [];
    for (let i = 0; i < BIG_COUNT; i++) answers.push({ type: "A", class: "IN", name: question.name, ttl: 300, data: `198.51.100.${i + 1}` });
    return dnsPacket.encode({ ...base, answers });
  }
  return dnsPacket.encode({ ...base, flags: base.flags | 3 }); // NXDOMAIN
}

export async function startTestUpstream(): Promise<TestUpstream> {
  const seen = { udp: [] as string[], tcp: [] as string[] };
  const udp = dgram.createSocket("udp4");
  udp.on("message", (m, r) => {
    const q = dnsPacket.decode(m);
    seen.udp.push(q.questions?.[0]?.name ?? "");
    const a = answer(q, "udp");
    if (a) udp.send(a, r.port, r.address);
  });
  await new Promise<void>((resolve) => udp.bind(0, "127.0.0.1", resolve));
  const port = udp.address().port;
  const tcp = net.createServer((c) => {
    let buf = Buffer.alloc(0);
    c.on("error", () => c.destroy());
    c.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const q = dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0)));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
        seen.tcp.push(q.questions?.[0]?.name ?? "");
        const a = answer(q, "tcp");
        if (!a) continue;
        const f = Buffer.alloc(2 + a.length);
        f.writeUInt16BE(a.length, 0);
        f.set(a, 2);
        c.write(f);
      }
    });
  });
  await new Promise<void>((resolve) => tcp.listen(port, "127.0.0.1", resolve));
  return {
    port,
    seen,
    async close() {
      udp.close();
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
    },
  };
}
