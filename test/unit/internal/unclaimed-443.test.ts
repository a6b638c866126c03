// :443 is always peeked now (for clawpatrol.internal), but on a :443 no
// endpoint claims, everything else is still relayed as before.
import { afterAll, beforeAll, expect, test } from "bun:test";
import net from "node:net";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { handleFlow, type FlowDeps } from "../../../app/dispatch/handle.ts";
import { newFlowId } from "../../../app/dispatch/flow.ts";
import { loadOrCreateCA } from "../../../app/tls/ca.ts";
import { LeafCertificates } from "../../../app/tls/leaf.ts";
import { UpstreamPool } from "../../../app/endpoints/https/upstream.ts";
import type { GatewayEvent } from "../../../app/events/types.ts";
import { policyFrom } from "../policy/helpers.ts";

let echo: net.Server;
let front: net.Server;
const events: GatewayEvent[] = [];
const dialed: string[] = [];

beforeAll(async () => {
  const policy = await policyFrom(`schema_version = 1\ndefaults {\n  unknown_host = "deny"\n}\nendpoint "https" "a" {\n  hosts = ["a.example"]\n  ports = [8443]\n}\nprofile "default" {\n  credentials = []\n}\n`);
  echo = net.createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, "127.0.0.1", () => r()));
  const echoPort = (echo.address() as net.AddressInfo).port;
  const deps: FlowDeps = {
    policy: () => policy,
    secretFor: () => ({ ok: false, reason: "none" }),
    publish: (e) => events.push(e),
    pool: new UpstreamPool(),
    leaves: new LeafCertificates(await loadOrCreateCA(mkdtempSync(join(tmpdir(), "clawpatrol-unclaimed-")))),
    dial: (host, port) => {
      dialed.push(`${host}:${port}`);
      return net.connect({ host: "127.0.0.1", port: echoPort, allowHalfOpen: true });
    },
  };
  front = net.createServer((conn) => {
    void handleFlow({ id: newFlowId(), proto: "tcp", src: { host: "10.0.0.2", port: 1 }, dst: { host: "203.0.113.9", port: 443 }, device: { name: "d", profile: "default" }, conn, startedAt: Date.now() }, deps);
  });
  await new Promise<void>((r) => front.listen(0, "127.0.0.1", () => r()));
});

afterAll(() => {
  front?.close();
  echo?.close();
});

test("plain bytes to an unclaimed :443 are peeked, then relayed unchanged", async () => {
  const sock = net.connect((front.address() as net.AddressInfo).port, "127.0.0.1");
  sock.write("hello over 443\n");
  const got = await new Promise<string>((resolve) => {
    let s = "";
    sock.on("data", (d) => {
      s += d;
      if (s.includes("\n")) resolve(s);
    });
  });
  sock.destroy();
  expect(got).toBe("hello over 443\n");
  expect(dialed).toEqual(["203.0.113.9:443"]);
  for (const end = Date.now() + 10_000; events.at(-1)?.kind !== "connection" && Date.now() < end; ) await new Promise((r) => setTimeout(r, 5));
  expect(events.at(-1)).toMatchObject({ kind: "connection", verdict: "relay", reason: "port not claimed by any endpoint" });
});
