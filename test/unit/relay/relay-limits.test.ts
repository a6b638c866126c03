// The relay's limits: an idle relay is closed (both sides), an active one
// is not; running out of descriptors is named as such, not as the
// runtime's misleading error.
import { afterAll, beforeAll, expect, test } from "bun:test";
import net from "node:net";
import { relay, dialTcp } from "../../../app/endpoints/relay.ts";
import { fdLimit, isFdExhaustion, fdStats, fdMetrics } from "../../../app/net/fds.ts";

let echo: net.Server;
let port = 0;
beforeAll(async () => {
  echo = net.createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, "127.0.0.1", () => r()));
  port = (echo.address() as net.AddressInfo).port;
});
afterAll(() => echo.close());

/** The agent side: a connected pair, `agent` handed to the relay, `device` is what the device holds. */
async function agentPair(): Promise<{ agent: net.Socket; device: net.Socket; close(): void }> {
  const front = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => front.listen(0, "127.0.0.1", () => r()));
  const accepted = new Promise<net.Socket>((r) => front.once("connection", r));
  const device = net.connect((front.address() as net.AddressInfo).port, "127.0.0.1");
  const agent = await accepted;
  return { agent, device, close: () => front.close() };
}

test("a relay idle both ways is closed after the idle time, and the device sees its connection end", async () => {
  const { agent, device, close } = await agentPair();
  const deviceClosed = new Promise<void>((r) => device.once("close", () => r()));
  device.on("error", () => undefined);
  const result = await relay(agent, "127.0.0.1", port, undefined, dialTcp, 300);
  expect(result.error).toBe("idle for 0.3 s");
  await deviceClosed;
  close();
});

test("traffic keeps a relay alive past the idle time", async () => {
  const { agent, device, close } = await agentPair();
  const done = relay(agent, "127.0.0.1", port, undefined, dialTcp, 1000);
  let echoed = "";
  device.on("data", (d: Buffer) => (echoed += d.toString()));
  // a byte every 100 ms for 3 s: three idle times, never idle for one (900 ms of margin for a stalled machine)
  for (let i = 0; i < 30; i++) {
    device.write("x");
    await Bun.sleep(100);
  }
  device.end();
  const result = await done;
  expect(result.error).toBeUndefined();
  expect(echoed).toBe("x".repeat(30));
  close();
});

test("descriptor exhaustion: EMFILE/ENFILE, or any dial error at the limit; counted for /metrics", () => {
  const before = fdStats.exhausted;
  expect(isFdExhaustion("EMFILE", 10, 1024)).toBe(true);
  expect(isFdExhaustion("ENFILE", 10, 1024)).toBe(true);
  // what the runtime reported in issue 22, while every descriptor was in use
  expect(isFdExhaustion("ECONNREFUSED", 1020, 1024)).toBe(true);
  expect(isFdExhaustion("ECONNREFUSED", 100, 1024)).toBe(false);
  expect(isFdExhaustion("ECONNREFUSED", undefined, undefined)).toBe(false);
  expect(fdStats.exhausted).toBe(before + 3);
  expect(fdMetrics().join("\n")).toContain(`clawpatrol_fd_exhausted_total ${before + 3}`);
});

test("fdLimit reads the soft limit from /proc/self/limits", () => {
  const text = "Limit                     Soft Limit           Hard Limit           Units     \nMax open files            1024                 524288               files     \n";
  expect(fdLimit(text)).toBe(1024);
  expect(fdLimit("Max open files            unlimited            unlimited            files\n")).toBe(Infinity);
  expect(fdLimit("")).toBeUndefined();
  expect(fdLimit()).toBeGreaterThan(0); // this process's own
});
