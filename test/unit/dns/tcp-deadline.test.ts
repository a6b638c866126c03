// DNS over TCP: a connection must bring a whole query within the deadline;
// bytes that trickle in do not extend it (issue 22: 260 slow connections
// held the responder's 256), while a connection that asks whole queries
// lives on.
import { afterAll, beforeAll, expect, test } from "bun:test";
import net from "node:net";
import dnsPacket from "dns-packet";
import { startDnsResponder, type DnsResponder } from "../../../app/dns/server.ts";
import { localNameTable } from "../../../app/net/stack/local-names.ts";
import { query } from "../../integration/support/dns.ts";

// Long enough that a loaded machine's stalls stay well inside the margins below.
const DEADLINE_MS = 1500;
let responder: DnsResponder;

beforeAll(async () => {
  responder = await startDnsResponder({
    listen: "127.0.0.1:0",
    upstream: "127.0.0.1:9",
    names: () => localNameTable({ "db.internal.test": "100.80.0.7" }),
    tcpQueryDeadlineMs: DEADLINE_MS,
  });
});
afterAll(async () => {
  await responder?.close();
});

const connect = async () => {
  const sock = net.connect(responder.address.port, "127.0.0.1");
  await new Promise<void>((r) => sock.once("connect", () => r()));
  const closed = new Promise<number>((r) => sock.once("close", () => r(performance.now())));
  return { sock, closed };
};

test("a connection that trickles one byte at a time is closed at the deadline, not kept by each byte", async () => {
  const { sock, closed } = await connect();
  const opened = performance.now();
  // a 2-byte length announcing a large query, then one byte every DEADLINE_MS / 4: never a whole query
  sock.write(Buffer.from([0x01, 0x00]));
  const trickle = setInterval(() => !sock.destroyed && sock.write(Buffer.from([0x61])), DEADLINE_MS / 4);
  const at = await closed;
  clearInterval(trickle);
  // closed by the server although bytes kept arriving (each would have reset an idle timer)
  expect(at - opened).toBeGreaterThanOrEqual(DEADLINE_MS - 50);
  expect(sock.bytesWritten).toBeGreaterThan(3);
});

test("whole queries are answered and each answer restarts the deadline", async () => {
  const { sock, closed } = await connect();
  const answers: number[] = [];
  let buf = Buffer.alloc(0);
  sock.on("data", (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      answers.push(dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0))).id!);
      buf = buf.subarray(2 + buf.readUInt16BE(0));
    }
  });
  const ask = (id: number) => {
    const q = query("db.internal.test", "A", id);
    const frame = Buffer.alloc(2 + q.length);
    frame.writeUInt16BE(q.length, 0);
    q.copy(frame, 2);
    sock.write(frame);
  };
  // five queries, each asked a third of a deadline after the previous answer:
  // the connection outlives 1.5 deadlines (each gap leaves 1 s of margin)
  for (const id of [1, 2, 3, 4, 5]) {
    ask(id);
    const want = answers.length + 1;
    while (answers.length < want) await Bun.sleep(5);
    await Bun.sleep(DEADLINE_MS / 3);
  }
  expect(answers).toEqual([1, 2, 3, 4, 5]);
  expect(sock.destroyed).toBe(false);
  // then, silent, it is closed
  await closed;
});
