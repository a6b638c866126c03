// The explicit proxy's door: clients still in the handshake are bounded per
// source address (before its token a client is no device with quotas, and
// each holds a descriptor); a flow the device's quotas refuse is answered in
// the protocol's own form (CONNECT: 429; SOCKS5: "not allowed by ruleset")
// before any success, and never becomes a Flow.
import { afterEach, expect, test } from "bun:test";
import net from "node:net";
import { startProxyListener, type ProxyListener } from "../../../app/net/proxy/listener.ts";
import type { Flow } from "../../../app/dispatch/flow.ts";

let listener: ProxyListener | undefined;
const clients: net.Socket[] = [];
let flows: Flow[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  // (a Flow's connection is its owner's to end: here, the test's)
  for (const f of flows) f.conn.destroy();
  await listener?.close();
  listener = undefined;
});

const device = { name: "laptop", profile: "p" };

async function start(extra: Partial<Parameters<typeof startProxyListener>[0]> = {}) {
  flows = [];
  listener = await startProxyListener({
    listen: "127.0.0.1:0",
    protocols: "both",
    identify: (token) => (token === "tok" ? device : undefined),
    allowAnonymous: () => false,
    onFlow: (f) => flows.push(f),
    ...extra,
  });
  return flows;
}

function connect(): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(listener!.address.port, "127.0.0.1", () => resolve(s));
    s.on("error", reject);
    clients.push(s);
  });
}

/** Everything the server sends until it closes (or `ms`). */
function answer(s: net.Socket, ms = 5000): Promise<{ data: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const done = (closed: boolean) => resolve({ data: Buffer.concat(chunks), closed });
    s.on("data", (d: Buffer) => chunks.push(d));
    s.once("close", () => done(true));
    setTimeout(() => done(false), ms).unref?.();
  });
}

const CONNECT = "CONNECT upstream.test:443 HTTP/1.1\r\nHost: upstream.test:443\r\nProxy-Authorization: Basic " + Buffer.from("laptop:tok").toString("base64") + "\r\n\r\n";

test("clients in the handshake past the bound for their address are closed at once; one finishing frees a place", async () => {
  const flows = await start({ maxHandshakingPerSource: 3 });
  const idle = [await connect(), await connect(), await connect()];
  const fourth = await connect();
  expect((await answer(fourth)).closed).toBe(true);
  // one of the three finishes its handshake (a Flow): a new client is let in
  idle[0]!.write(CONNECT);
  await answer(idle[0]!, 200).catch(() => undefined);
  for (let i = 0; i < 100 && flows.length === 0; i++) await Bun.sleep(10);
  expect(flows.length).toBe(1);
  const fifth = await connect();
  fifth.write(CONNECT);
  const a = await answer(fifth, 500);
  expect(a.data.toString()).toStartWith("HTTP/1.1 200");
  expect(flows.length).toBe(2);
});

test("a CONNECT the device's quotas refuse gets 429 with the reason, and no Flow; an admitted one is released when it closes", async () => {
  let admitted = 0;
  let released = 0;
  let refuse = true;
  const flows = await start({
    admit: (d, dst) => {
      expect(d).toEqual(device);
      expect(dst).toEqual({ host: "upstream.test", port: 443 });
      if (refuse) return { ok: false, reason: "device laptop is over its quota tcp_flows: 1 concurrent TCP flows" };
      admitted++;
      return { ok: true, release: () => released++ };
    },
  });
  const s = await connect();
  s.write(CONNECT);
  const a = await answer(s);
  expect(a.data.toString()).toStartWith("HTTP/1.1 429 Too Many Requests");
  expect(a.data.toString()).toContain("over its quota tcp_flows");
  expect(flows.length).toBe(0);
  refuse = false;
  const ok = await connect();
  ok.write(CONNECT);
  for (let i = 0; i < 100 && flows.length === 0; i++) await Bun.sleep(10);
  expect(admitted).toBe(1);
  flows[0]!.conn.destroy();
  for (let i = 0; i < 100 && released === 0; i++) await Bun.sleep(10);
  expect(released).toBe(1);
});

test("SOCKS5: a flow the quotas refuse gets reply 0x02 (not allowed by ruleset), never 0x00", async () => {
  const flows = await start({ admit: () => ({ ok: false, reason: "over quota" }) });
  const s = await connect();
  const got = answer(s);
  s.write(Buffer.from([0x05, 0x01, 0x02])); // username/password
  // The credentials once the server chose the method, as a client does.
  await new Promise<void>((resolve) => s.once("data", () => resolve()));
  s.write(Buffer.concat([Buffer.from([0x01, 6]), Buffer.from("laptop"), Buffer.from([3]), Buffer.from("tok")]));
  s.write(Buffer.concat([Buffer.from([0x05, 0x01, 0x00, 0x03, 13]), Buffer.from("upstream.test"), Buffer.from([0x01, 0xbb])]));
  const a = await got;
  // method choice (05 02), auth ok (01 00), then the refusal
  expect([...a.data.subarray(0, 4)]).toEqual([0x05, 0x02, 0x01, 0x00]);
  expect(a.data[4]).toBe(0x05);
  expect(a.data[5]).toBe(0x02);
  expect(flows.length).toBe(0);
});
