// The appliance's split: the gateway, dashboard and dnsvip roles as three
// real processes on one state directory, as systemd runs them. The
// dashboard reaches the gateway only through the control socket (and the
// shared state database):
//   - an operator logs in through the dashboard process and approves a held
//     request there; the curl held by the gateway process completes
//   - the events stream is proxied through the dashboard
//   - a device onboards through the dashboard; an admin approves it there;
//     the gateway adds its WireGuard peer: the device's own userspace
//     WireGuard then asks for a VIP name through the tunnel, and the gateway
//     forwards the query to the dnsvip process, which answers it
//   - an admin applies a config edit through the dashboard process; the
//     gateway process reloads it before the apply answers
import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import dnsPacket from "dns-packet";
import { makeTestPki } from "./support/pki.ts";
import { startUpstream, type TestUpstream } from "./support/upstream.ts";
import { curlVia, tempDir, type TestGateway } from "./support/gateway.ts";
import { freePort, startRole, type RoleProcess } from "./support/role-process.ts";
import { query, startTestUpstream, type TestUpstream as DnsUpstream } from "./support/dns.ts";
import { readSse } from "../../app/control/client.ts";
import { generateKeyPair, startUserspaceWireGuard, type UserspaceWireGuard } from "../../app/net/wireguard/shell.ts";
import * as ipv4 from "../../app/net/stack/wire/ipv4.ts";
import * as udp from "../../app/net/stack/wire/udp.ts";
import { parseIp } from "../../app/net/ipaddr.ts";

let dir: string;
let configPath: string;
let upstream: TestUpstream;
let dnsUpstream: DnsUpstream;
let gateway: RoleProcess;
let dashboard: RoleProcess;
let dnsvip: RoleProcess;
let device: UserspaceWireGuard | undefined;
let base: string;
let via: TestGateway;
let ports: { dash: number; proxy: number; wg: number; dns: number };

beforeAll(async () => {
  dir = tempDir("roles");
  const pki = makeTestPki(tempDir("roles-pki"), ["api.test"]);
  upstream = startUpstream(pki);
  dnsUpstream = await startTestUpstream();
  ports = { dash: await freePort(), proxy: await freePort(), wg: await freePort(), dns: await freePort() };
  configPath = path.join(dir, "gateway.hcl");
  writeFileSync(
    configPath,
    `schema_version = 1
gateway {
  state_dir        = "state"
  control_socket   = "control.sock"
  dashboard_listen = "127.0.0.1:${ports.dash}"
  proxy { listen = "127.0.0.1:${ports.proxy}" }
  wireguard {
    listen      = "127.0.0.1:${ports.wg}"
    subnet_cidr = "10.67.0.0/24"
  }
  dns {
    listen    = "127.0.0.1:${ports.dns}"
    upstream  = "127.0.0.1:${dnsUpstream.port}"
    vip_hosts = ["db.internal.test"]
  }
}
defaults {
  verdict = "allow"
  profile = profile.p
}
endpoint "https" "api" {
  hosts   = ["api.test"]
  ports   = [${upstream.port}]
  ca_cert = "${pki.caCertPath}"
}
profile "p" {}
rule "posts-need-a-human" {
  endpoint  = https.api
  condition = "http.method == 'POST'"
  approve   = [dashboard]
}
`,
  );
  gateway = startRole("gateway", configPath);
  await gateway.waitFor("clawpatrol gateway running");
  // Started after the gateway, as systemd orders them; both would also wait for it.
  [dashboard, dnsvip] = [startRole("dashboard", configPath), startRole("dnsvip", configPath)];
  await dashboard.waitFor("clawpatrol dashboard on");
  await dnsvip.waitFor("dnsvip answering on");
  base = `http://127.0.0.1:${ports.dash}`;
  via = { caPath: path.join(dir, "state", "ca.crt"), proxyUrl: `http://127.0.0.1:${ports.proxy}`, dir } as TestGateway;
}, 120_000);

afterAll(async () => {
  device?.close();
  await Promise.all([dashboard?.stop(), dnsvip?.stop()]);
  await gateway?.stop();
  upstream?.stop();
  await dnsUpstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** An operator made with the CLI (as an admin would), logged in through the dashboard process. */
async function login(): Promise<{ cookie: string; csrf: string }> {
  const proc = Bun.spawn(["./node_modules/.bin/bun", "app/main.ts", "operator", "add", "alice", "--role", "admin", "--config", configPath], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, CLAWPATROL_STATE_DIR: "" },
  });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  expect(code, err).toBe(0);
  const password = out.trim().split("\n").at(-1)!.trim();
  const res = await fetch(`${base}/api/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "alice", password }),
  });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { csrf: string; role: string };
  expect(body.role).toBe("admin");
  const cookie = (res.headers.get("set-cookie") ?? "").split(";")[0]!;
  expect(cookie).toContain("=");
  // A one-time password's session may only replace it.
  const changed = await fetch(`${base}/api/auth/password`, {
    method: "POST",
    headers: { cookie, "x-csrf-token": body.csrf, "content-type": "application/json" },
    body: JSON.stringify({ current: password, new: `${password}-own` }),
  });
  expect(changed.status).toBe(200);
  return { cookie, csrf: body.csrf };
}

let session: { cookie: string; csrf: string };
const api = (route: string, init: RequestInit = {}) =>
  fetch(`${base}${route}`, {
    ...init,
    headers: { cookie: session.cookie, "x-csrf-token": session.csrf, "content-type": "application/json", ...(init.headers ?? {}) },
  });

test("the dashboard process serves the public API and the SPA; the gateway role does not listen on dashboard_listen", async () => {
  expect(gateway.stderr()).toContain(`the dashboard and public API (127.0.0.1:${ports.dash}) are the dashboard role's`);
  expect((await (await fetch(`${base}/health`)).json()).ok).toBe(true);
  const spa = await fetch(`${base}/`);
  expect(spa.status).toBe(200);
  expect(await spa.text()).toContain("<html");
});

test("log in through the dashboard; approve a held request there; the curl held by the gateway completes", async () => {
  session = await login();
  // The live stream, proxied from the gateway's control socket.
  const streamAbort = new AbortController();
  const stream = await api("/api/events/stream", { signal: streamAbort.signal });
  expect(stream.status).toBe(200);
  const seen: { name: string; data: unknown }[] = [];
  const reading = readSse(stream, (name, data) => seen.push({ name, data })).catch(() => undefined);

  const before = upstream.seen.length;
  const held = curlVia(via, "api.test", upstream.port, "/echo?from-roles", ["-X", "POST", "--data", "hello"]);
  let id: string | undefined;
  for (let i = 0; i < 400 && !id; i++) {
    const { approvals } = (await (await api("/api/approvals")).json()) as { approvals: { id: string; request: string }[] };
    id = approvals.find((a) => a.request.includes("/echo?from-roles"))?.id;
    if (!id) await Bun.sleep(50);
  }
  expect(id).toBeDefined();
  expect(upstream.seen.length).toBe(before);
  const decided = await api(`/api/approvals/${id}/approve`, { method: "POST", body: JSON.stringify({ reason: "fine by me" }) });
  expect(decided.status).toBe(200);
  expect(((await decided.json()) as { operator: string }).operator).toBe("alice");
  const r = await held;
  expect(r.status).toBe(200);
  expect(upstream.seen.length).toBe(before + 1);

  // The approval change and the request's event reached the dashboard's stream.
  for (let i = 0; i < 200 && !seen.some((s) => s.name === "event" && JSON.stringify(s.data).includes("from-roles")); i++) await Bun.sleep(25);
  expect(seen.some((s) => s.name === "approval" && JSON.stringify(s.data).includes(id!))).toBe(true);
  expect(seen.some((s) => s.name === "event" && JSON.stringify(s.data).includes("from-roles"))).toBe(true);
  streamAbort.abort();
  await reading;

  // A second decision on the same hold is refused by the gateway, and says so.
  const again = await api(`/api/approvals/${id}/deny`, { method: "POST", body: "{}" });
  expect(again.status).toBe(409);
  // The audit trail (written by the dashboard process) has the approval.
  const audit = (await (await api("/api/audit?action=approval.approve")).json()) as { entries?: { target: string }[]; audit?: { target: string }[] };
  expect(JSON.stringify(audit)).toContain(id!);
  // The CLI's argon2 and a held curl take over 5 s on a loaded 2-core machine.
}, 30_000);

test("a device onboards through the dashboard; the gateway adds its peer; its DNS reaches dnsvip through the tunnel", async () => {
  const keys = generateKeyPair();
  const start = await fetch(`${base}/api/onboard/start`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "laptop", public_key: keys.publicKey }),
  });
  expect(start.status).toBe(200);
  const { code, device_code } = (await start.json()) as { code: string; device_code: string };

  const { pending } = (await (await api("/api/onboarding")).json()) as { pending: { code: string; name: string; source_ip: string }[] };
  // The client's address made it through the forwarding.
  expect(pending.find((p) => p.code === code)).toMatchObject({ name: "laptop", source_ip: "127.0.0.1" });
  const approved = await api(`/api/onboarding/${code}/approve`, { method: "POST", body: JSON.stringify({ profile: "p" }) });
  expect(approved.status).toBe(200);
  expect(((await approved.json()) as { device: { name: string } }).device.name).toBe("laptop");

  const poll = await fetch(`${base}/api/onboard/poll`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ device_code }),
  });
  const cfg = (await poll.json()) as { status: string; device: { address: string }; gateway: { public_key: string; address: string } };
  expect(cfg.status).toBe("approved");

  // The device: its own userspace WireGuard, peered with the gateway.
  device = await startUserspaceWireGuard({
    listen: { host: "127.0.0.1", port: 0 },
    privateKey: keys.privateKey,
    peers: [{ publicKey: cfg.gateway.public_key, allowedIPs: ["0.0.0.0/0"], endpoint: { address: "127.0.0.1", port: ports.wg } }],
  });
  const answers: Uint8Array[] = [];
  device.link.onPackets((pkts) => {
    for (const p of pkts) {
      const ip = ipv4.parse(p);
      if (!ip.ok || ip.repr.protocol !== 17) continue;
      const u = udp.parse(ip.payload, ip.repr.src, ip.repr.dst);
      if (u.ok && u.repr.srcPort === 53) answers.push(u.payload.slice());
    }
  });
  const src = parseIp(cfg.device.address)!;
  const dst = parseIp(cfg.gateway.address)!;
  const ask = (name: string, id: number) => {
    const dgram = udp.emit({ srcPort: 40000 + id, dstPort: 53 }, query(name, "A", id), src, dst);
    device!.link.write(ipv4.emit({ src, dst, protocol: 17, ttl: 64, tos: 0, ident: id, dontFragment: false, moreFragments: false, fragmentOffset: 0 }, dgram));
  };
  // The first packet also starts the handshake: ask until the answer comes.
  let vip: dnsPacket.DecodedPacket | undefined;
  for (let i = 1; i < 100 && !vip; i++) {
    ask("db.internal.test", i);
    await Bun.sleep(100);
    const hit = answers.map((a) => dnsPacket.decode(Buffer.from(a))).find((a) => a.questions?.[0]?.name === "db.internal.test");
    vip = hit;
  }
  expect(vip).toBeDefined();
  expect((vip!.answers ?? []).map((a) => (a as { data: string }).data)).toEqual(["100.80.0.1"]);
  expect(device.peers()[0]!.lastHandshake).toBeDefined();
});

test("an admin edits the config through the dashboard process; the gateway process reloads it and the next request follows it", async () => {
  const view = (await (await api("/api/config")).json()) as { version: string; files: { path: string; text: string }[]; canApply: boolean };
  expect(view.canApply).toBe(true);
  expect(view.files.map((f) => f.path)).toEqual([configPath]);
  const rule = (verdict: string) => `rule "no-deletes-from-roles" {\n  endpoint  = https.api\n  condition = "http.method == 'DELETE'"\n  verdict   = "${verdict}"\n}\n`;
  const bad = await api("/api/config/apply", { method: "POST", body: JSON.stringify({ version: view.version, files: [{ path: configPath, text: view.files[0]!.text + rule("nope") }] }) });
  expect(bad.status).toBe(422);
  expect(((await bad.json()) as { stage: string }).stage).toBe("validate");
  expect((await curlVia(via, "api.test", upstream.port, "/echo?roles-delete", ["-X", "DELETE"])).status).not.toBe(403);

  const ok = await api("/api/config/apply", { method: "POST", body: JSON.stringify({ version: view.version, files: [{ path: configPath, text: view.files[0]!.text + rule("deny") }] }) });
  expect(ok.status).toBe(200);
  // The apply waited for the gateway's reload over the control socket: the next request already meets the rule.
  const denied = await curlVia(via, "api.test", upstream.port, "/echo?roles-delete", ["-X", "DELETE"]);
  expect(denied.status).toBe(403);
  expect(JSON.parse(denied.body).rule).toBe("no-deletes-from-roles");
}, 30_000);

test("the gateway crashes: dashboard and dnsvip stay up; when it is back the dashboard follows it again", async () => {
  gateway.proc.kill("SIGKILL");
  await gateway.proc.exited;
  expect((await (await fetch(`${base}/health`)).json()).ok).toBe(true);
  // The VIP table is in the database: dnsvip answers without the gateway.
  const { udpExchange } = await import("./support/dns.ts");
  const a = dnsPacket.decode((await udpExchange(ports.dns, query("db.internal.test")))!);
  expect((a.answers ?? []).map((x) => (x as { data: string }).data)).toEqual(["100.80.0.1"]);
  // What needs the gateway says so.
  const down = await api("/api/reload", { method: "POST", body: "{}" });
  expect(down.status).toBe(503);
  expect(((await down.json()) as { error: { code: string } }).error.code).toBe("gateway_unavailable");

  gateway = startRole("gateway", configPath);
  await gateway.waitFor("clawpatrol gateway running");
  const held = curlVia(via, "api.test", upstream.port, "/echo?after-restart", ["-X", "POST", "--data", "x"]);
  let id: string | undefined;
  for (let i = 0; i < 400 && !id; i++) {
    const { approvals } = (await (await api("/api/approvals")).json()) as { approvals: { id: string; request: string }[] };
    id = approvals.find((x) => x.request.includes("/echo?after-restart"))?.id;
    if (!id) await Bun.sleep(50);
  }
  expect(id).toBeDefined();
  expect((await api(`/api/approvals/${id}/deny`, { method: "POST", body: JSON.stringify({ reason: "not now" }) })).status).toBe(200);
  expect((await held).status).toBe(403);
  expect(dashboard.proc.exitCode).toBeNull();
  expect(dnsvip.proc.exitCode).toBeNull();
});
