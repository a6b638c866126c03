// A device's DNS over TCP (:53, whatever address it dialled) is relayed to
// the DNS-VIP responder, as its UDP queries are: a real responder, a real
// Flow through handleFlow.
import { afterAll, beforeAll, expect, test } from "bun:test";
import net from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import dnsPacket from "dns-packet";
import { handleFlow, type FlowDeps } from "../../../app/dispatch/handle.ts";
import { newFlowId } from "../../../app/dispatch/flow.ts";
import { loadOrCreateCA } from "../../../app/tls/ca.ts";
import { LeafCertificates } from "../../../app/tls/leaf.ts";
import { UpstreamPool } from "../../../app/endpoints/https/upstream.ts";
import { localNameTable } from "../../../app/net/stack/local-names.ts";
import { startDnsResponder, type DnsResponder } from "../../../app/dns/server.ts";
import type { GatewayEvent } from "../../../app/events/types.ts";
import { policyFrom } from "../policy/helpers.ts";
import { query, tcpExchange } from "../../integration/support/dns.ts";

const dir = mkdtempSync(join(tmpdir(), "clawpatrol-dnstcp-"));
let responder: DnsResponder;
let front: net.Server;
const events: GatewayEvent[] = [];

beforeAll(async () => {
  responder = await startDnsResponder({
    listen: "127.0.0.1:0",
    upstream: "127.0.0.1:9", // never asked here
    names: () => localNameTable({ "db.internal.test": "100.80.0.7" }),
  });
  const policy = await policyFrom(`schema_version = 1\nprofile "default" {\n  credentials = []\n}\n`);
  const deps: FlowDeps = {
    policy: () => policy,
    secretFor: () => ({ ok: false, reason: "none" }),
    publish: (e) => events.push(e),
    pool: new UpstreamPool(),
    leaves: new LeafCertificates(await loadOrCreateCA(dir)),
    dnsTcp: () => responder.address,
  };
  front = net.createServer((conn) => {
    void handleFlow({ id: newFlowId(), proto: "tcp", src: { host: "10.77.0.2", port: 40000 }, dst: { host: "10.77.0.1", port: 53 }, device: { name: "d", profile: "default" }, conn, startedAt: Date.now() }, deps);
  });
  await new Promise<void>((r) => front.listen(0, "127.0.0.1", () => r()));
});

afterAll(async () => {
  front?.close();
  await responder?.close();
  rmSync(dir, { recursive: true, force: true });
});

test("TCP :53 to the gateway's tunnel address reaches the responder and its answer comes back", async () => {
  const [answer] = await tcpExchange((front.address() as net.AddressInfo).port, [query("db.internal.test", "A", 31)]);
  const a = dnsPacket.decode(answer!);
  expect(a.id).toBe(31);
  expect(a.answers?.map((x) => (x as { data: string }).data)).toEqual(["100.80.0.7"]);
  expect(responder.counters.local).toBe(1);
});
