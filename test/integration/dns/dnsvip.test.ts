// The dnsvip role as the appliance runs it: its own process beside the
// gateway role, sharing the state database. Real sockets both ways: queries
// from dns-packet over UDP and TCP, a real upstream resolver behind it.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import dnsPacket from "dns-packet";
import { startGateway, type RunningGateway } from "../../../app/gateway.ts";
import { tempDir } from "../support/gateway.ts";
import { freePort, startRole, type RoleProcess } from "../support/role-process.ts";
import { BIG_COUNT, query, REAL_ADDRESS, startTestUpstream, tcpExchange, udpExchange, type TestUpstream } from "../support/dns.ts";

let dir: string;
let configPath: string;
let upstream: TestUpstream;
let dnsPort: number;
let gw: RunningGateway | undefined;
let dnsvip: RoleProcess | undefined;

function writeConfig(vipHosts: string[]): void {
  writeFileSync(
    configPath,
    `schema_version = 1
gateway {
  state_dir = "state"
  control_socket = "control.sock"
  dashboard_listen = "127.0.0.1:0"
  wireguard {
    listen      = "127.0.0.1:0"
    subnet_cidr = "10.66.0.0/24"
  }
  dns {
    listen    = "127.0.0.1:${dnsPort}"
    upstream  = "127.0.0.1:${upstream.port}"
    vip_range = "100.80.0.0/24"
    vip_hosts = ${JSON.stringify(vipHosts)}
  }
}
`,
  );
}

const startGw = () => startGateway({ configPath, role: "gateway", watch: false, stderrEvents: false, env: {} });
const startDns = async () => {
  const p = startRole("dnsvip", configPath);
  await p.waitFor("dnsvip answering on");
  return p;
};

const decode = (b: Buffer | undefined) => {
  expect(b).toBeDefined();
  return dnsPacket.decode(b!);
};
const aRecords = (p: dnsPacket.DecodedPacket) => (p.answers ?? []).filter((a) => a.type === "A").map((a) => (a as { data: string }).data);
const RCODES = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN"];
/** dns-packet decodes the RCODE into `rcode` but its types do not say so: read it from the flags. */
const rcode = (p: dnsPacket.DecodedPacket) => RCODES[(p.flags ?? 0) & 0x0f] ?? String((p.flags ?? 0) & 0x0f);

beforeAll(async () => {
  dir = tempDir("dnsvip");
  configPath = path.join(dir, "gateway.hcl");
  upstream = await startTestUpstream();
  dnsPort = await freePort();
  writeConfig(["db.internal.test", "ssh.corp.test"]);
  gw = await startGw();
  dnsvip = await startDns();
});

afterAll(async () => {
  await dnsvip?.stop();
  await gw?.close();
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("dnsvip process", () => {
  test("the gateway role serves no public API; the VIPs it bound are answered over UDP", async () => {
    expect(() => gw!.publicServer).toThrow(/dashboard role/);
    const a = decode(await udpExchange(dnsPort, query("db.internal.test", "A", 4242)));
    expect(a.id).toBe(4242);
    expect(rcode(a)).toBe("NOERROR");
    expect(aRecords(a)).toEqual(["100.80.0.1"]);
    const b = decode(await udpExchange(dnsPort, query("SSH.Corp.Test.")));
    expect(aRecords(b)).toEqual(["100.80.0.2"]);
    // The name exists, with no IPv6 address: an empty NOERROR, not forwarded.
    const aaaa = decode(await udpExchange(dnsPort, query("db.internal.test", "AAAA")));
    expect(rcode(aaaa)).toBe("NOERROR");
    expect(aaaa.answers ?? []).toEqual([]);
    expect(upstream.seen.udp).not.toContain("db.internal.test");
  });

  test("clawpatrol.internal is the gateway's tunnel address, as the packet plane answers it", async () => {
    expect(aRecords(decode(await udpExchange(dnsPort, query("clawpatrol.internal"))))).toEqual(["10.66.0.1"]);
  });

  test("other names are forwarded to the upstream and answered verbatim, the client's id kept", async () => {
    const a = decode(await udpExchange(dnsPort, query("real.example", "A", 777)));
    expect(a.id).toBe(777);
    expect(aRecords(a)).toEqual([REAL_ADDRESS]);
    expect(upstream.seen.udp).toContain("real.example");
    const nx = decode(await udpExchange(dnsPort, query("nothing.example")));
    expect(rcode(nx)).toBe("NXDOMAIN");
  });

  test("a malformed query gets FORMERR; junk and responses get nothing; the responder lives on", async () => {
    // A header that promises one question, followed by a cut-off name.
    const bad = Buffer.from([0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0x05, 0x61, 0x62]);
    const f = await udpExchange(dnsPort, bad);
    expect(f).toBeDefined();
    expect(f!.readUInt16BE(0)).toBe(0x1234);
    expect(f![2]! & 0x80).toBe(0x80); // QR
    expect(f![3]! & 0x0f).toBe(1); // FORMERR
    expect(await udpExchange(dnsPort, Buffer.from([1, 2, 3]), 500)).toBeUndefined();
    const response = dnsPacket.encode({ id: 9, type: "response", questions: [{ type: "A", name: "real.example", class: "IN" }] });
    expect(await udpExchange(dnsPort, response, 500)).toBeUndefined();
    // Over TCP a zero-length frame ends only that connection.
    expect(await tcpExchange(dnsPort, [new Uint8Array(0)])).toEqual([]);
    expect(aRecords(decode(await udpExchange(dnsPort, query("db.internal.test"))))).toEqual(["100.80.0.1"]);
    expect(dnsvip!.proc.exitCode).toBeNull();
  });

  test("TCP (RFC 7766): a truncated UDP answer is retried over TCP and forwarded whole; several queries per connection", async () => {
    const truncated = decode(await udpExchange(dnsPort, query("big.example")));
    expect(truncated.flag_tc).toBe(true);
    const [whole, vip, internal] = await tcpExchange(dnsPort, [query("big.example", "A", 1), query("db.internal.test", "A", 2), query("clawpatrol.internal", "A", 3)]);
    const byId = new Map([whole, vip, internal].map((b) => [decode(b).id, decode(b)]));
    expect(aRecords(byId.get(1)!)).toHaveLength(BIG_COUNT);
    expect(byId.get(1)!.flag_tc).toBe(false);
    expect(aRecords(byId.get(2)!)).toEqual(["100.80.0.1"]);
    expect(aRecords(byId.get(3)!)).toEqual(["10.66.0.1"]);
    expect(upstream.seen.tcp).toContain("big.example");
  });

  test("an upstream that does not answer gets the client SERVFAIL", async () => {
    const s = decode(await udpExchange(dnsPort, query("slow.example", "A", 55)));
    expect(s.id).toBe(55);
    expect(rcode(s)).toBe("SERVFAIL");
    expect(s.questions?.[0]?.name).toBe("slow.example");
    const [t] = await tcpExchange(dnsPort, [query("slow.example", "A", 56)]);
    expect(rcode(decode(t))).toBe("SERVFAIL");
  });

  test("a reload binds new hostnames (seen by dnsvip at once) and releases removed ones; restarts keep every VIP", async () => {
    writeConfig(["db.internal.test", "new.corp.test"]);
    expect(await gw!.reload()).toEqual([]);
    expect(aRecords(decode(await udpExchange(dnsPort, query("new.corp.test"))))).toEqual(["100.80.0.3"]);
    // Released: no longer answered here, so it goes to the upstream (which knows nothing of it).
    expect(rcode(decode(await udpExchange(dnsPort, query("ssh.corp.test"))))).toBe("NXDOMAIN");

    // Both processes restart: the same bindings.
    await dnsvip!.stop();
    await gw!.close();
    gw = await startGw();
    dnsvip = await startDns();
    expect(aRecords(decode(await udpExchange(dnsPort, query("db.internal.test"))))).toEqual(["100.80.0.1"]);
    expect(aRecords(decode(await udpExchange(dnsPort, query("new.corp.test"))))).toEqual(["100.80.0.3"]);
    // The released name comes back to its old address.
    writeConfig(["db.internal.test", "new.corp.test", "ssh.corp.test"]);
    expect(await gw!.reload()).toEqual([]);
    expect(aRecords(decode(await udpExchange(dnsPort, query("ssh.corp.test"))))).toEqual(["100.80.0.2"]);
  });
});

test("in `all` the responder runs in the gateway process on its own socket", async () => {
  const d = tempDir("dnsvip-all");
  const cfg = path.join(d, "gateway.hcl");
  const up = await startTestUpstream();
  writeFileSync(
    cfg,
    `schema_version = 1
gateway {
  state_dir = "state"
  dashboard_listen = "127.0.0.1:0"
  dns {
    listen    = "127.0.0.1:0"
    upstream  = "127.0.0.1:${up.port}"
    vip_hosts = ["db.internal.test"]
  }
}
`,
  );
  const g = await startGateway({ configPath: cfg, watch: false, stderrEvents: false, env: {} });
  try {
    const port = g.dnsVip!.responder.address.port;
    expect(aRecords(decode(await udpExchange(port, query("db.internal.test"))))).toEqual(["100.80.0.1"]);
    expect(aRecords(decode(await udpExchange(port, query("real.example"))))).toEqual([REAL_ADDRESS]);
    expect(g.publicServer.address.port).toBeGreaterThan(0);
  } finally {
    await g.close();
    await up.close();
    rmSync(d, { recursive: true, force: true });
  }
});

test("dnsvip without a gateway { dns } block says so and exits 2", async () => {
  const d = tempDir("dnsvip-none");
  const cfg = path.join(d, "gateway.hcl");
  writeFileSync(cfg, `schema_version = 1\ngateway {\n  state_dir = "state"\n}\n`);
  const p = startRole("dnsvip", cfg);
  expect(await p.proc.exited).toBe(2);
  expect(p.stderr()).toContain("no gateway { dns { } } block");
  rmSync(d, { recursive: true, force: true });
});
