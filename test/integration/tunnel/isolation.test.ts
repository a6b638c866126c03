// Devices are isolated from each other, from the gateway host and from the
// appliance's LAN, in both tunnel modes (issue 22), with the gateway process
// in its own namespace:
//
//   [a]   wireguard-go wg0 (device A)   eth0 ==== e-a  ┐
//   [b]   wireguard-go wg0 (device B),  eth0 ==== e-b  │ [gw] the gateway
//         a TCP echo on :7100                          │   (`all`; userspace
//   [lan] a machine on the appliance's LAN that routes │   WireGuard, or
//         the device subnet and the upstream via [gw]  │   wireguard-go as the
//         eth0 ==== e-lan ─────────────────────────────┤   kernel's wg0 + TUN);
//   [up]  TCP echo :7000, UDP echo :7000  eth0 ==== e-up┘  a UDP echo on :7200
//                                                          (a host service)
//
// A reaches the upstream (TCP and UDP) and the documented gateway services
// (DNS for clawpatrol.internal at the tunnel address); A does not reach B,
// the gateway host's addresses (dashboard, proxy, a UDP service) or its
// tunnel address on other ports, and every refused TCP flow is an event. The
// LAN reaches neither B nor, through the gateway, the upstream. A floods its
// quotas in turn (TCP flows, DNS-over-TCP connections, UDP flows; bounded
// in count), gets resets or ICMP and an event naming the quota, while B's
// TCP, UDP and DNS (UDP and TCP) keep working; A pushes into a stalled
// upstream and its buffered bytes stay under quota_buffered_bytes. The LAN
// checks hold over IPv6 (subnet6_cidr) too.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdirSync, readFileSync, writeFileSync, rmSync, existsSync } from "node:fs";
import path from "node:path";
import { canRunRootTests, Topology, sh, waitFor, type Background, type WireguardGo } from "../support/netns.ts";
import { tempDir } from "../support/gateway.ts";
import { controlFetch } from "../../../app/control/client.ts";
import { generateKeyPair } from "../../../app/net/wireguard/keys.ts";

const ROOT = path.resolve(import.meta.dir, "../../..");
const BUN = path.join(ROOT, "node_modules/.bin/bun");
const DNS_PACKET = JSON.stringify(path.join(ROOT, "node_modules/dns-packet/index.js"));
const WG_PORT = 51820;
const DASH_PORT = 8080;
const PROXY_PORT = 3128;

// TCP echo on :7000 and UDP echo on :7000 (the upstream), or a TCP echo on
// :7100 (device B) or a counting UDP echo on :7200 (a gateway host service).
const SERVERS_SCRIPT = `
import net from "node:net";
import dgram from "node:dgram";
const [host, tcpPort, udpPort] = process.argv.slice(2);
let accepted = 0;
let datagrams = 0;
if (tcpPort !== "-") net.createServer((s) => { accepted++; console.log("ACCEPTED " + accepted + " " + s.remoteAddress); s.pipe(s); }).listen(Number(tcpPort), host);
if (udpPort !== "-") {
  const u = dgram.createSocket("udp4");
  u.on("message", (m, r) => { datagrams++; console.log("DATAGRAM " + datagrams + " " + r.address); u.send(m, r.port, r.address); });
  u.bind(Number(udpPort), host);
}
setTimeout(() => console.log("SERVERS READY"), 100);
`;

// One UDP exchange from a device: prints "data", "refused <errno>" or "timeout".
const UDP_PROBE = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], int(sys.argv[2])))
s.send(b"isolation-probe")
s.settimeout(4)
try:
    s.recv(2048); print("data")
except OSError as e:
    print("timeout" if isinstance(e, socket.timeout) else "refused %s" % e.errno)
`;

// A DNS A query over UDP: prints the first address or NXDOMAIN/TIMEOUT.
const DNS_CLIENT_SCRIPT = `
import dgram from "node:dgram";
import dnsPacket from ${DNS_PACKET};
const [server, name] = process.argv.slice(2);
const s = dgram.createSocket("udp4");
s.on("message", (m) => {
  const a = dnsPacket.decode(m).answers?.find((x) => x.type === "A");
  console.log(a ? a.data : "NXDOMAIN");
  process.exit(0);
});
s.send(dnsPacket.encode({ type: "query", id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: "A", name }] }), 53, server);
setTimeout(() => { console.log("TIMEOUT"); process.exit(1); }, 4000);
`;

// Each probe that must fail waits out its own bounded timeout.
setDefaultTimeout(60_000);

// A device's flood (bounded): N TCP connections at once to HOST:PORT, each
// asks once (a line to an echo, or a DNS query over TCP to :53) and is then
// held open. Prints "SETTLED {answered, reset}" once every connection has
// its outcome, and exits when its stdin closes or after HOLD ms.
const FLOOD_SCRIPT = `
import net from "node:net";
import dnsPacket from ${DNS_PACKET};
const [host, port, n, hold] = process.argv.slice(2);
const counts = { answered: 0, reset: 0 };
const sockets = [];
let settled = 0;
const done = () => { if (++settled === Number(n)) console.log("SETTLED " + JSON.stringify(counts)); };
const ask = () => {
  if (port !== "53") return Buffer.from("x\\n");
  const q = dnsPacket.encode({ type: "query", id: 9, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: "A", name: "clawpatrol.internal" }] });
  const f = Buffer.alloc(2 + q.length); f.writeUInt16BE(q.length, 0); q.copy(f, 2); return f;
};
for (let i = 0; i < Number(n); i++) {
  const s = net.connect(Number(port), host);
  sockets.push(s);
  let outcome = false;
  const end = (what) => { if (outcome) return; outcome = true; counts[what]++; done(); };
  s.on("connect", () => s.write(ask()));
  s.on("data", () => end("answered"));
  s.on("error", () => end("reset"));
  s.on("close", () => end("reset"));
}
setTimeout(() => process.exit(0), Number(hold));
`;

// N UDP flows at once (N source ports) to HOST:PORT: prints {"data", "refused", "timeout"} counts.
const UDP_FLOOD = `
import socket, sys, json
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))
    s.send(b"flood")
    socks.append(s)
counts = {"data": 0, "refused": 0, "timeout": 0}
for s in socks:
    s.settimeout(4)
    try:
        s.recv(2048); counts["data"] += 1
    except socket.timeout:
        counts["timeout"] += 1
    except OSError:
        counts["refused"] += 1
print(json.dumps(counts))
`;

// An upstream that accepts and never reads, with a small receive buffer (no
// autotuning), so a device's pushes back up into the gateway. Prints "STALL READY".
const STALL_SERVER = `
import socket, sys, signal
signal.alarm(180)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(64)
print("STALL READY", flush=True)
held = []
while True:
    c, a = s.accept()
    held.append(c)
    print("ACCEPTED", a[0], flush=True)
`;

// N connections to HOST:PORT, each writing MB mebibytes as fast as it is let; exits after HOLD ms.
const PUSH_SCRIPT = `
import net from "node:net";
const [host, port, n, mb, hold] = process.argv.slice(2);
const chunk = Buffer.alloc(64 * 1024, 120);
let connected = 0;
for (let i = 0; i < Number(n); i++) {
  const s = net.connect(Number(port), host);
  s.on("error", () => {});
  s.on("connect", () => {
    if (++connected === Number(n)) console.log("PUSHING");
    let left = Number(mb) * 16;
    const go = () => { while (left > 0) { left--; if (!s.write(chunk)) { s.once("drain", go); return; } } };
    go();
  });
}
setTimeout(() => process.exit(0), Number(hold));
`;

// A proxy-mode device: N CONNECTs through the proxy at PROXY to TARGET (host:port)
// with the device's Basic credentials; prints "STATUS {code: count}" once every
// CONNECT is answered, then each admitted tunnel writes MB mebibytes as fast as
// it is let; exits after HOLD ms.
const PROXY_PUSH_SCRIPT = `
import net from "node:net";
const [proxyHost, proxyPort, auth, target, n, mb, hold] = process.argv.slice(2);
const chunk = Buffer.alloc(64 * 1024, 120);
const status = {};
let answered = 0;
for (let i = 0; i < Number(n); i++) {
  const s = net.connect(Number(proxyPort), proxyHost);
  s.on("error", () => {});
  s.once("connect", () => s.write("CONNECT " + target + " HTTP/1.1\\r\\nHost: " + target + "\\r\\nProxy-Authorization: Basic " + auth + "\\r\\n\\r\\n"));
  let head = "";
  const onData = (d) => {
    head += d.toString("latin1");
    if (!head.includes("\\r\\n\\r\\n")) return;
    s.off("data", onData);
    const code = head.split(" ")[1];
    status[code] = (status[code] ?? 0) + 1;
    if (++answered === Number(n)) console.log("STATUS " + JSON.stringify(status));
    if (code !== "200") return;
    let left = Number(mb) * 16;
    const go = () => { while (left > 0) { left--; if (!s.write(chunk)) { s.once("drain", go); return; } } };
    go();
  };
  s.on("data", onData);
}
setTimeout(() => process.exit(0), Number(hold));
`;

interface Event {
  kind: string;
  device: string;
  host: string;
  port: number;
  verdict: string;
  reason: string;
}

for (const mode of ["userspace", "kernel"] as const) {
  describe.skipIf(!canRunRootTests)(`isolation in ${mode} mode`, () => {
    const tag = mode === "kernel" ? "isk" : "isu";
    const N = (mode === "kernel" ? 20 : 120) + (process.pid % 100);
    const A_UNDER = [`10.231.${N}.1`, `10.231.${N}.2`] as const;
    const B_UNDER = [`10.232.${N}.1`, `10.232.${N}.2`] as const;
    const UP = [`10.233.${N}.1`, `10.233.${N}.2`] as const;
    const LAN = [`10.234.${N}.1`, `10.234.${N}.2`] as const;
    // IPv6: the device subnet (subnet6_cidr), the upstream's and the LAN's networks
    const SUBNET6 = `fd${mode === "kernel" ? "a1" : "a2"}:${N}::/64`;
    const UP6 = [`fdb3:${N}::1`, `fdb3:${N}::2`] as const;
    const LAN6 = [`fdb4:${N}::1`, `fdb4:${N}::2`] as const;
    const SUBNET = `10.${mode === "kernel" ? 91 : 92}.${N}.0/24`;
    const GW_TUNNEL = SUBNET.replace(/0\/24$/, "1");
    const topo = new Topology(tag);
    let ns = { a: "", b: "", gw: "", lan: "", up: "" };
    let dir = "";
    let netnsEtc = "";
    let gwWg: WireguardGo | undefined;
    let gateway: Background | undefined;
    let upServers: Background | undefined;
    let bServer: Background | undefined;
    let hostUdp: Background | undefined;
    const devices: Record<"a" | "b", { name: string; address: string; address6: string }> = { a: { name: "", address: "", address6: "" }, b: { name: "", address: "", address6: "" } };
    let upServers6: Background | undefined;

    const events = (): Event[] => {
      const file = path.join(dir, "state", "events.jsonl");
      if (!existsSync(file)) return [];
      return readFileSync(file, "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l) as Event);
    };
    const script = (name: string, text: string) => {
      const file = path.join(dir, name);
      writeFileSync(file, text);
      return file;
    };
    /** A line sent over TCP from `from`'s namespace; resolves with the echo ("" when none came back). */
    const tcpEcho = async (from: string, host: string, port: number, line: string) => {
      const r = await topo.exec(from, ["timeout", "5", "bash", "-c", `exec 3<>/dev/tcp/${host}/${port} || exit 0; echo ${line} >&3; read -t 4 l <&3; echo "$l"`], 15_000);
      return r.out.trim();
    };
    const udpProbe = async (from: string, host: string, port: number) =>
      (await topo.exec(from, ["python3", path.join(dir, "udp-probe.py"), host, String(port)], 15_000)).out.trim();
    const refusedEvent = (device: string, host: string, port: number) =>
      waitFor(() => events().some((e) => e.kind === "connection" && e.device === device && e.host === host && e.port === port && e.verdict === "deny"), 5000);

    beforeAll(async () => {
      for (const tool of ["wireguard-go", "wg", "ip", "nsenter", "python3"]) {
        if (Bun.spawnSync(["sh", "-c", `command -v ${tool}`]).exitCode !== 0) throw new Error(`${tool} is needed`);
      }
      ns = { a: topo.namespace("a"), b: topo.namespace("b"), gw: topo.namespace("gw"), lan: topo.namespace("lan"), up: topo.namespace("up") };
      topo.link(ns.gw, "e-a", `${A_UNDER[0]}/30`, ns.a, "eth0", `${A_UNDER[1]}/30`);
      topo.link(ns.gw, "e-b", `${B_UNDER[0]}/30`, ns.b, "eth0", `${B_UNDER[1]}/30`);
      topo.link(ns.gw, "e-up", `${UP[0]}/30`, ns.up, "eth0", `${UP[1]}/30`);
      topo.link(ns.gw, "e-lan", `${LAN[0]}/30`, ns.lan, "eth0", `${LAN[1]}/30`);
      // The LAN machine sends the device subnet and the upstream's network to the appliance.
      sh(`ip -n ${ns.lan} route add ${SUBNET} via ${LAN[0]} && ip -n ${ns.lan} route add 10.233.${N}.0/30 via ${LAN[0]}`);
      // The same over IPv6: the LAN routes the device subnet6 and the upstream's network via the appliance.
      sh(`ip -n ${ns.gw} -6 addr add ${UP6[0]}/64 dev e-up nodad && ip -n ${ns.up} -6 addr add ${UP6[1]}/64 dev eth0 nodad`);
      sh(`ip -n ${ns.gw} -6 addr add ${LAN6[0]}/64 dev e-lan nodad && ip -n ${ns.lan} -6 addr add ${LAN6[1]}/64 dev eth0 nodad`);
      sh(`ip -n ${ns.lan} -6 route add ${SUBNET6} via ${LAN6[0]} && ip -n ${ns.lan} -6 route add fdb3:${N}::/64 via ${LAN6[0]}`);
      sh(`ip -n ${ns.up} -6 route add default via ${UP6[0]}`);
      // The upstream answers the LAN and the devices' relays alike (it routes back via the gateway).
      sh(`ip -n ${ns.up} route add default via ${UP[0]}`);

      dir = tempDir(tag);
      writeFileSync(path.join(dir, "udp-probe.py"), UDP_PROBE);
      writeFileSync(path.join(dir, "udp-flood.py"), UDP_FLOOD);
      const servers = script("servers.ts", SERVERS_SCRIPT);
      upServers = topo.background(["ip", "netns", "exec", ns.up, BUN, servers, UP[1], "7000", "7000"]);
      // The gateway's sockets to upstreams buffer little in the kernel, so a stalled upstream backs up into its own buffers.
      sh(`ip netns exec ${ns.gw} sysctl -qw net.ipv4.tcp_wmem="4096 16384 65536"`);
      hostUdp = topo.background(["ip", "netns", "exec", ns.gw, BUN, servers, "0.0.0.0", "-", "7200"]);
      await upServers.waitForOutput(/SERVERS READY/, 15_000);
      upServers6 = topo.background(["ip", "netns", "exec", ns.up, BUN, servers, UP6[1], "7000", "-"]);
      await upServers6.waitForOutput(/SERVERS READY/, 15_000);
      await hostUdp.waitForOutput(/SERVERS READY/, 15_000);

      netnsEtc = `/etc/netns/${ns.gw}`;
      mkdirSync(netnsEtc, { recursive: true });
      writeFileSync(`${netnsEtc}/resolv.conf`, `nameserver ${UP[1]}\n`);
      const config = path.join(dir, "gateway.hcl");
      writeFileSync(
        config,
        `schema_version = 1
gateway {
  state_dir = "state"
  dashboard_listen = "0.0.0.0:${DASH_PORT}"
  proxy { listen = "0.0.0.0:${PROXY_PORT}" }
  events { jsonl = "events.jsonl" }
  dns {
    listen    = "127.0.0.1:5353"
    upstream  = "${UP[1]}:53"
    vip_range = "100.81.0.0/16"
  }
  wireguard {
    mode = "${mode}"
    listen = "0.0.0.0:${WG_PORT}"
    subnet_cidr = "${SUBNET}"
    subnet6_cidr = "${SUBNET6}"
    interface = "wg0"
    tun = "cp0"
  }
}
defaults {
  verdict = "allow"
  udp = "relay"
  profile = profile.laptops
  # small, so that a bounded flood crosses them
  quota_tcp_flows = 40
  quota_udp_flows = 20
  quota_dns_connections = 4
  quota_buffered_bytes = "1MiB"
}
profile "laptops" {}
profile "servers" {}
`,
      );
      const env: Record<string, string> = {};
      for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("CLAWPATROL_")) env[k] = v;
      const main = [BUN, path.join(ROOT, "app/main.ts"), "all", "--config", config];
      if (mode === "kernel") {
        gwWg = await topo.wireguardGo(ns.gw);
        gateway = topo.background(["nsenter", "-t", String(gwWg.pid), "-m", "-n", ...main], { cwd: ROOT, env });
      } else {
        gateway = topo.background(["ip", "netns", "exec", ns.gw, ...main], { cwd: ROOT, env });
      }
      await gateway.waitForOutput(/clawpatrol gateway running/, 30_000);
      const controlSocket = path.join(dir, "state", "control.sock");

      // Two devices in different profiles, enrolled through the public API from their own namespaces.
      for (const [which, profile, under] of [["a", "laptops", A_UNDER], ["b", "servers", B_UNDER]] as const) {
        const keys = generateKeyPair();
        const api = `http://${under[0]}:${DASH_PORT}`;
        const post = async (p: string, body: unknown) => {
          const r = await topo.exec(ns[which], ["curl", "-sS", "--max-time", "10", "-X", "POST", "-H", "content-type: application/json", "-d", JSON.stringify(body), `${api}${p}`]);
          return JSON.parse(r.out) as Record<string, unknown>;
        };
        const started = (await post("/api/onboard/start", { name: `${tag}-${which}`, public_key: keys.publicKey })) as { code: string; device_code: string };
        const approve = await controlFetch(controlSocket, `/api/onboard/${started.code}/approve`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ profile, operator: "cli:test" }),
        });
        expect(approve.status).toBe(200);
        const polled = (await post("/api/onboard/poll", { device_code: started.device_code })) as { device: { address: string; address6: string }; gateway: { public_key: string } };
        devices[which] = { name: `${tag}-${which}`, address: polled.device.address, address6: polled.device.address6 };
        writeFileSync(path.join(dir, `${which}.key`), keys.privateKey + "\n", { mode: 0o600 });
        const wg = await topo.wireguardGo(ns[which]);
        wg.wg(`set wg0 private-key ${dir}/${which}.key peer ${polled.gateway.public_key} allowed-ips 0.0.0.0/0,::/0 endpoint ${under[0]}:${WG_PORT} persistent-keepalive 5`);
        sh(`ip -n ${ns[which]} addr add ${polled.device.address}/32 dev wg0 && ip -n ${ns[which]} link set wg0 mtu 1420 up`);
        // Everything but the underlay goes through the tunnel (as `join --whole-machine` does).
        sh(`ip -n ${ns[which]} route add default dev wg0`);
        sh(`ip -n ${ns[which]} -6 addr add ${polled.device.address6}/128 dev wg0 nodad && ip -n ${ns[which]} -6 route add default dev wg0`);
      }
      // (both address families: "::" takes IPv4 too)
      bServer = topo.background(["ip", "netns", "exec", ns.b, BUN, servers, "::", "7100", "-"]);
      await bServer.waitForOutput(/SERVERS READY/, 15_000);
      // B's service is there: from B's own namespace it answers.
      expect(await tcpEcho(ns.b, devices.b.address, 7100, "self")).toBe("self");
    }, 90_000);

    afterAll(async () => {
      try {
        await gateway?.stop("SIGTERM", 10_000);
        if (process.env.CLAWPATROL_TEST_VERBOSE) console.error(gateway?.output());
      } finally {
        topo.destroy();
        if (dir) rmSync(dir, { recursive: true, force: true });
        if (netnsEtc) rmSync(netnsEtc, { recursive: true, force: true });
      }
    });

    test("A reaches the upstream (TCP relay, UDP relay) and the documented DNS at the tunnel address", async () => {
      expect(await tcpEcho(ns.a, UP[1], 7000, "to-upstream")).toBe("to-upstream");
      expect(await udpProbe(ns.a, UP[1], 7000)).toBe("data");
      const dns = await topo.exec(ns.a, [BUN, "run", script("dns-client.ts", DNS_CLIENT_SCRIPT), GW_TUNNEL, "clawpatrol.internal"], 15_000);
      expect(dns.out.trim()).toBe(GW_TUNNEL);
    });

    test("A cannot reach device B: refused and recorded", async () => {
      expect(await tcpEcho(ns.a, devices.b.address, 7100, "to-b")).toBe("");
      expect(await refusedEvent(devices.a.name, devices.b.address, 7100)).toBe(true);
      const e = events().filter((x) => x.device === devices.a.name && x.host === devices.b.address).at(-1)!;
      expect(e.reason).toContain("another device");
      // B's service never saw a connection from anything but B itself
      expect(bServer!.output().match(/^ACCEPTED /gm)?.length).toBe(1);
    });

    test("A cannot reach the gateway host's services (dashboard, proxy) on any of its addresses: refused and recorded", async () => {
      // (A's own underlay peer, the gateway's e-a address, is reached over eth0, not the tunnel.)
      for (const [host, port] of [[LAN[0], DASH_PORT], [UP[0], PROXY_PORT], [B_UNDER[0], PROXY_PORT], [B_UNDER[0], DASH_PORT]] as const) {
        expect(await tcpEcho(ns.a, host, port, "GET")).toBe("");
        expect(await refusedEvent(devices.a.name, host, port)).toBe(true);
      }
      const e = events().filter((x) => x.device === devices.a.name && x.host === LAN[0]).at(-1)!;
      expect(e.reason).toContain("gateway host");
      // The tunnel address answers only its documented services.
      expect(await tcpEcho(ns.a, GW_TUNNEL, DASH_PORT, "GET")).toBe("");
      expect(await refusedEvent(devices.a.name, GW_TUNNEL, DASH_PORT)).toBe(true);
    });

    test("UDP from A to a host service is refused with ICMP and recorded; the service sees nothing", async () => {
      expect(await udpProbe(ns.a, LAN[0], 7200)).toMatch(/^refused /);
      expect(await refusedEvent(devices.a.name, LAN[0], 7200)).toBe(true);
      expect(await udpProbe(ns.a, devices.b.address, 7200)).toMatch(/^refused /);
      // the upstream's UDP still answers, and the host service never got a datagram
      expect(await udpProbe(ns.a, UP[1], 7000)).toBe("data");
      expect(hostUdp!.output()).not.toContain("DATAGRAM");
    });

    test("B is unaffected: it still reaches the upstream", async () => {
      expect(await tcpEcho(ns.b, UP[1], 7000, "from-b")).toBe("from-b");
      expect(await udpProbe(ns.b, UP[1], 7000)).toBe("data");
    });

    const quotaEvent = (device: string, quota: string) =>
      waitFor(() => events().some((e) => e.kind === "connection" && e.device === device && e.verdict === "deny" && e.reason.includes(`quota ${quota}`)), 5000);
    /** B's TCP, UDP and DNS (UDP and TCP) all still work. */
    const bStillWorks = async () => {
      expect(await tcpEcho(ns.b, UP[1], 7000, "b-tcp")).toBe("b-tcp");
      expect(await udpProbe(ns.b, UP[1], 7000)).toBe("data");
      const dns = await topo.exec(ns.b, [BUN, "run", path.join(dir, "dns-client.ts"), GW_TUNNEL, "clawpatrol.internal"], 15_000);
      expect(dns.out.trim()).toBe(GW_TUNNEL);
      const dnsTcp = topo.background(["ip", "netns", "exec", ns.b, BUN, path.join(dir, "flood.ts"), GW_TUNNEL, "53", "1", "5000"]);
      expect(JSON.parse((await dnsTcp.waitForOutput(/SETTLED .*/, 15_000)).slice(8))).toEqual({ answered: 1, reset: 0 });
      await dnsTcp.stop("SIGKILL");
    };

    test("A over its TCP flow quota: the flows past it are reset and recorded; B's TCP, UDP and DNS work meanwhile", async () => {
      script("flood.ts", FLOOD_SCRIPT);
      const flood = topo.background(["ip", "netns", "exec", ns.a, BUN, path.join(dir, "flood.ts"), UP[1], "7000", "60", "30000"]);
      try {
        const c = JSON.parse((await flood.waitForOutput(/SETTLED .*/, 30_000)).slice(8)) as { answered: number; reset: number };
        expect(c.answered + c.reset).toBe(60);
        expect(c.answered).toBeLessThanOrEqual(40);
        expect(c.answered).toBeGreaterThanOrEqual(35); // the quota, less any flow of A's still closing
        expect(await quotaEvent(devices.a.name, "tcp_flows")).toBe(true);
        await bStillWorks();
      } finally {
        await flood.stop("SIGKILL");
      }
    });

    test("A over its DNS-over-TCP quota: the connections past it are reset; B's DNS over TCP works meanwhile", async () => {
      const flood = topo.background(["ip", "netns", "exec", ns.a, BUN, path.join(dir, "flood.ts"), GW_TUNNEL, "53", "10", "30000"]);
      try {
        const c = JSON.parse((await flood.waitForOutput(/SETTLED .*/, 30_000)).slice(8)) as { answered: number; reset: number };
        expect(c).toEqual({ answered: 4, reset: 6 });
        expect(await quotaEvent(devices.a.name, "dns_connections")).toBe(true);
        await bStillWorks();
      } finally {
        await flood.stop("SIGKILL");
      }
    });

    test("A over its UDP flow quota: the flows past it get ICMP and are recorded; B's UDP works meanwhile", async () => {
      const r = await topo.exec(ns.a, ["python3", path.join(dir, "udp-flood.py"), UP[1], "7000", "60"], 30_000);
      const c = JSON.parse(r.out.trim()) as { data: number; refused: number; timeout: number };
      expect(c.data + c.refused).toBe(60);
      expect(c.data).toBeLessThanOrEqual(20);
      expect(c.refused).toBeGreaterThanOrEqual(40);
      expect(await quotaEvent(devices.a.name, "udp_flows")).toBe(true);
      // A's relay flows stay for their idle time: B's new flows are unaffected all the same
      await bStillWorks();
    });

    test("A pushes far more than its buffered-bytes quota into a stalled upstream: its windows close under the quota, recorded; B works meanwhile", async () => {
      const controlSocket = path.join(dir, "state", "control.sock");
      const bufferedOf = async (device: string) => {
        const text = await (await controlFetch(controlSocket, "/metrics")).text();
        const m = text.match(new RegExp(`clawpatrol_device_buffered_bytes\\{device="${device}"\\} (\\d+)`));
        return m ? Number(m[1]) : 0;
      };
      const stall = topo.background(["ip", "netns", "exec", ns.up, "python3", script("stall.py", STALL_SERVER), UP[1], "7300"]);
      let push: Background | undefined;
      try {
        await stall.waitForOutput(/STALL READY/, 15_000);
        // 8 flows × 8 MiB: without the quota the stack alone would hold 8 × 256 KiB of A's bytes
        push = topo.background(["ip", "netns", "exec", ns.a, BUN, script("push.ts", PUSH_SCRIPT), UP[1], "7300", "8", "8", "60000"]);
        await push.waitForOutput(/PUSHING/, 15_000);
        let most = 0;
        const sample = async () => {
          most = Math.max(most, await bufferedOf(devices.a.name));
          return most;
        };
        expect(await quotaEvent(devices.a.name, "buffered_bytes")).toBe(true);
        // A's buffers filled toward the quota and never past it
        expect(await waitFor(async () => (await sample()) > 512 * 1024, 10_000)).toBe(true);
        for (let i = 0; i < 5; i++) await sample();
        expect(most).toBeLessThanOrEqual(1024 * 1024);
        await bStillWorks();
        expect(await sample()).toBeLessThanOrEqual(1024 * 1024);
      } finally {
        await push?.stop("SIGKILL");
        await stall.stop("SIGKILL");
      }
      // A's flows ended (resets from the device, the upstream gone): their storage goes back
      expect(await waitFor(async () => (await bufferedOf(devices.a.name)) < 64 * 1024, 20_000)).toBe(true);
    });

    test("a proxy-mode device (CONNECT) pushes far more than its buffered-bytes quota into a stalled upstream: its relays stop reading under the quota, a new flow is refused with 429, both recorded; B works meanwhile", async () => {
      const controlSocket = path.join(dir, "state", "control.sock");
      const bufferedOf = async (device: string) => {
        const text = await (await controlFetch(controlSocket, "/metrics")).text();
        const m = text.match(new RegExp(`clawpatrol_device_buffered_bytes\\{device="${device}"\\} (\\d+)`));
        return m ? Number(m[1]) : 0;
      };
      // A proxy device, on the appliance's LAN, with its token.
      const c = `${tag}-c`;
      const added = Bun.spawnSync([BUN, path.join(ROOT, "app/main.ts"), "devices", "add", c, "--profile", "laptops", "--config", path.join(dir, "gateway.hcl")], { cwd: ROOT });
      expect(added.exitCode).toBe(0);
      const auth = Buffer.from(`${c}:${added.stdout.toString().trim()}`).toString("base64");
      const stall = topo.background(["ip", "netns", "exec", ns.up, "python3", script("stall.py", STALL_SERVER), UP[1], "7301"]);
      let push: Background | undefined;
      try {
        await stall.waitForOutput(/STALL READY/, 15_000);
        // 32 tunnels × 8 MiB: each relay would hold what the upstream's socket does not take
        push = topo.background(["ip", "netns", "exec", ns.lan, BUN, script("proxy-push.ts", PROXY_PUSH_SCRIPT), LAN[0], String(PROXY_PORT), auth, `${UP[1]}:7301`, "32", "8", "60000"]);
        expect(JSON.parse((await push.waitForOutput(/STATUS .*/, 20_000)).slice(7))).toEqual({ 200: 32 });
        let most = 0;
        const sample = async () => {
          most = Math.max(most, await bufferedOf(c));
          return most;
        };
        expect(await quotaEvent(c, "buffered_bytes")).toBe(true);
        // C's relays filled toward the quota and never past it
        expect(await waitFor(async () => (await sample()) > 512 * 1024, 10_000)).toBe(true);
        for (let i = 0; i < 5; i++) await sample();
        expect(most).toBeLessThanOrEqual(1024 * 1024);
        // at the quota a new flow is refused at the door, in HTTP's form
        expect(await waitFor(async () => (await bufferedOf(c)) === 1024 * 1024, 10_000)).toBe(true);
        const refused = await topo.exec(ns.lan, ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_connect}", "--max-time", "10", "-p", "-x", `http://${LAN[0]}:${PROXY_PORT}`, "--proxy-user", `${c}:${Buffer.from(auth, "base64").toString().slice(c.length + 1)}`, `http://${UP[1]}:7000/`], 15_000);
        expect(refused.out.trim()).toBe("429");
        await bStillWorks();
        expect(await sample()).toBeLessThanOrEqual(1024 * 1024);
      } finally {
        await push?.stop("SIGKILL");
        await stall.stop("SIGKILL");
      }
      // C's tunnels ended: what its relays held goes back
      expect(await waitFor(async () => (await bufferedOf(c)) === 0, 20_000)).toBe(true);
    });

    test("the LAN reaches neither a device nor, through the gateway, the upstream", async () => {
      const before = (upServers!.output().match(/^ACCEPTED /gm) ?? []).length;
      expect(await tcpEcho(ns.lan, devices.b.address, 7100, "from-lan")).toBe("");
      expect(await tcpEcho(ns.lan, UP[1], 7000, "from-lan")).toBe("");
      expect(await udpProbe(ns.lan, UP[1], 7000)).not.toBe("data");
      expect(bServer!.output()).not.toContain(LAN[1]);
      expect((upServers!.output().match(/^ACCEPTED /gm) ?? []).length).toBe(before);
      expect(upServers!.output()).not.toContain(LAN[1]);
      if (mode === "kernel") {
        const inGw = (cmd: string) => sh(`nsenter -t ${gwWg!.pid} -m -n sh -c '${cmd}'`);
        expect(inGw("cat /proc/sys/net/ipv4/ip_forward")).toBe("0");
        expect(inGw("cat /proc/sys/net/ipv4/conf/e-lan/forwarding")).toBe("0");
      }
    });

    test("over IPv6 (subnet6_cidr) too: the LAN reaches neither a device nor, through the gateway, the upstream", async () => {
      // The paths are there: B answers on its IPv6 tunnel address, A reaches the upstream over IPv6 through the tunnel, and the LAN reaches the appliance.
      expect(await tcpEcho(ns.b, devices.b.address6, 7100, "self6")).toBe("self6");
      expect(await tcpEcho(ns.a, UP6[1], 7000, "a-v6")).toBe("a-v6");
      // (a closed port on the appliance answers the LAN with a reset: the link works)
      const probe = `import socket\ntry:\n    socket.create_connection(("${LAN6[0]}", 9), 5)\nexcept ConnectionRefusedError:\n    print("refused")`;
      expect((await topo.exec(ns.lan, ["python3", "-c", probe], 15_000)).out.trim()).toBe("refused");
      const upBefore = (upServers6!.output().match(/^ACCEPTED /gm) ?? []).length;
      expect(await tcpEcho(ns.lan, devices.b.address6, 7100, "from-lan6")).toBe("");
      expect(await tcpEcho(ns.lan, devices.a.address6, 7100, "from-lan6")).toBe("");
      expect(await tcpEcho(ns.lan, UP6[1], 7000, "from-lan6")).toBe("");
      expect(bServer!.output()).not.toContain(LAN6[1]);
      expect((upServers6!.output().match(/^ACCEPTED /gm) ?? []).length).toBe(upBefore);
      expect(upServers6!.output()).not.toContain(LAN6[1]);
    });
  });
}
