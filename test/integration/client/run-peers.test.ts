// Per-run peers and --publish, end to end with the compiled client:
//
//   [dev ns]   `clawpatrol run` x2 of one device, each with its own key and
//              tunnel address; a service published to the dev ns's loopback
//       ==veth (underlay)==
//   [root ns]  the gateway in userspace mode (this process), its public API
//              through a forwarder on the veth address, a TLS upstream
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, cpSync, existsSync, mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { canRunRootTests, sh, Topology, waitFor } from "../support/netns.ts";
import { AddressPool } from "../../../app/store/addresses.ts";
import { RunPeerStore } from "../../../app/store/run-peers.ts";
import { DeviceRuns, RUN_IDLE_MS } from "../../../app/control/device-runs/index.ts";
import { makeTestPki } from "../support/pki.ts";
import { startUpstream, type TestUpstream } from "../support/upstream.ts";
import { startTestGateway, tempDir, type TestGateway } from "../support/gateway.ts";
import {
  addHostAddress,
  buildClient,
  controlJson,
  deviceNamespace,
  enrollDevice,
  forwardPublicApi,
  killClients,
  runClient,
  type ClientOptions,
  type ClientResult,
} from "../support/client-device.ts";

const SECRET = "ghp_real-run-peer-secret-0123456789";
const PLACEHOLDER = "ghp_clawpatrol_placeholder_gh";
const N = 100 + ((process.pid + 61) % 100);
const HOST_IP = `10.216.${N}.1`;
const DEV_UNDERLAY = `10.216.${N}.2`;
const UPSTREAM_IP = `10.217.${N}.1`;
const WG_PORT = 20000 + (process.pid % 10000);
const REQUESTS = 25;
const NOBODY = 65534;

interface RunJson {
  id: string;
  device: string;
  address: string;
  public_key: string;
  last_handshake: number | null;
}

describe.skipIf(!canRunRootTests)("clawpatrol run: a peer per run, and --publish", () => {
  const topo = new Topology("cpr");
  let dev = "";
  let t: TestGateway;
  let upstream: TestUpstream;
  let api: { url: string; close(): void };
  let bin = "";
  const homes = new Map<string, string>();

  const client = (args: string[], device: string, o: Partial<ClientOptions> = {}): Promise<ClientResult> =>
    runClient(bin, dev, args, { home: homes.get(device)!, ...o });
  const runsOf = async (device: string) => (await controlJson<{ runs: RunJson[] }>(t, `/api/devices/${device}/runs`)).runs;
  const enroll = async (name: string) => {
    const home = tempDir(`home-${name}`);
    chmodSync(home, 0o755);
    homes.set(name, home);
    const r = await enrollDevice(t, bin, dev, api.url, name, { home, profile: "laptops" });
    expect(r.code).toBe(0);
  };
  const curl = `curl -sS --max-time 10 --resolve api.test:443:${UPSTREAM_IP} -H 'Authorization: Bearer ${PLACEHOLDER}'`;

  beforeAll(async () => {
    bin = buildClient();
    ({ dev } = deviceNamespace(topo, HOST_IP, DEV_UNDERLAY));
    addHostAddress(topo, UPSTREAM_IP);
    const pki = makeTestPki(tempDir("pki"), ["api.test"]);
    upstream = startUpstream(pki, { hostname: UPSTREAM_IP, port: 443 });
    t = await startTestGateway(
      `
defaults {
  verdict = "allow"
}
endpoint "https" "api" {
  hosts = ["api.test"]
  ca_cert = "${pki.caCertPath}"
  credential = github_token.gh
}
credential "github_token" "gh" {}
profile "laptops" {
  credentials = [github_token.gh]
}
`,
      { CLAWPATROL_SECRET_GH: SECRET },
      {
        gateway: `
  wireguard {
    mode = "userspace"
    listen = "${HOST_IP}:${WG_PORT}"
    subnet_cidr = "10.88.0.0/24"
    endpoint = "${HOST_IP}:${WG_PORT}"
  }`,
      },
    );
    api = await forwardPublicApi(t, HOST_IP);
    await enroll("laptop");
  }, 90_000);

  afterAll(async () => {
    killClients();
    api?.close();
    await t?.stop();
    upstream?.stop();
    topo.destroy();
  });

  test("two concurrent runs of one device: two distinct run peers while they run, every request credentialed, none left after", async () => {
    const gate = path.join(tempDir("gate"), "go");
    const loop =
      `echo started; while [ ! -e ${gate} ]; do sleep 0.05; done; ` +
      `ok=0; for i in $(seq 1 ${REQUESTS}); do ` +
      `[ "$(${curl} -o /dev/null -w '%{http_code}' https://api.test/echo)" = 200 ] && ok=$((ok+1)); done; echo "ok=$ok"`;
    const before = upstream.seen.length;
    const a = client(["run", "--", "sh", "-c", loop], "laptop", { timeoutMs: 90_000 });
    const b = client(["run", "--", "sh", "-c", loop], "laptop", { timeoutMs: 90_000 });
    // Both runs are up (registered and handshaken) before either sends a request.
    let runs: RunJson[] = [];
    expect(
      await waitFor(async () => {
        runs = await runsOf("laptop");
        return runs.length === 2 && runs.every((r) => r.last_handshake !== null);
      }, 30_000, 100),
    ).toBe(true);
    const device = (await controlJson<{ devices: { name: string; address: string; public_key: string }[] }>(t, "/api/devices")).devices.find(
      (d) => d.name === "laptop",
    )!;
    expect(runs.map((r) => r.device)).toEqual(["laptop", "laptop"]);
    expect(new Set(runs.map((r) => r.address)).size).toBe(2);
    expect(new Set(runs.map((r) => r.public_key)).size).toBe(2);
    expect(runs.map((r) => r.address)).not.toContain(device.address);
    expect(runs.map((r) => r.public_key)).not.toContain(device.public_key);
    // The gateway's WireGuard has them as peers of their own.
    const planeKeys = t.gw.tunnel!.plane.peers().map((p) => p.publicKey);
    for (const r of runs) expect(planeKeys).toContain(r.public_key);

    writeFileSync(gate, "");
    const [ra, rb] = await Promise.all([a, b]);
    for (const r of [ra, rb]) {
      expect(r.code).toBe(0);
      expect(r.out).toContain(`ok=${REQUESTS}`);
      expect(r.err).toBe("");
    }
    const seen = upstream.seen.slice(before);
    expect(seen.length).toBe(2 * REQUESTS);
    expect(seen.every((s) => s.headers["authorization"] === `Bearer ${SECRET}`)).toBe(true);
    const events = t.events.filter((e) => e.kind === "http").slice(-2 * REQUESTS);
    expect(events.every((e) => e.device === "laptop")).toBe(true);

    // Deregistered on exit: no run peer stays, in the registry or in WireGuard.
    expect(await runsOf("laptop")).toEqual([]);
    const after = t.gw.tunnel!.plane.peers().map((p) => p.publicKey);
    for (const r of runs) expect(after).not.toContain(r.public_key);
  }, 120_000);

  test("the next run of the device takes a run address it already holds (addresses stay the device's)", async () => {
    let seen: RunJson[] = [];
    const r = await client(["run", "--", "sh", "-c", "echo ready; sleep 1"], "laptop", {
      onOut: (out) => {
        if (out.includes("ready") && seen.length === 0) void runsOf("laptop").then((x) => (seen = x));
      },
    });
    expect(r.code).toBe(0);
    await waitFor(() => seen.length > 0, 5000);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.address).toMatch(/^10\.88\.0\.[34]$/);
  }, 40_000);

  test("revoking the device cuts both of its runs and removes their peers", async () => {
    await enroll("desk");
    const loop = `echo started; n=0; while ${curl} -o /dev/null https://api.test/echo; do n=$((n+1)); sleep 0.05; done; echo "stopped after $n"; exit 3`;
    const a = client(["run", "--", "sh", "-c", loop], "desk", { timeoutMs: 60_000 });
    const b = client(["run", "--", "sh", "-c", loop], "desk", { timeoutMs: 60_000 });
    let runs: RunJson[] = [];
    expect(
      await waitFor(async () => {
        runs = await runsOf("desk");
        return runs.length === 2 && runs.every((r) => r.last_handshake !== null);
      }, 30_000, 100),
    ).toBe(true);
    // Both are moving traffic.
    const deskSeen = () => t.events.filter((e) => e.kind === "http" && e.device === "desk").length;
    expect(await waitFor(() => deskSeen() >= 6, 20_000, 50)).toBe(true);

    const res = await controlJson<{ device: { revoked: boolean } }>(t, "/api/devices/desk/revoke", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ operator: "cli:test" }),
    });
    expect(res.device.revoked).toBe(true);
    const planeKeys = t.gw.tunnel!.plane.peers().map((p) => p.publicKey);
    for (const r of runs) expect(planeKeys).not.toContain(r.public_key);
    expect(await runsOf("desk")).toEqual([]);

    const [ra, rb] = await Promise.all([a, b]);
    for (const r of [ra, rb]) {
      expect(r.code).toBe(3);
      expect(r.out).toMatch(/stopped after \d+/);
    }
    // And a new run of the revoked device is refused before anything runs.
    const again = await client(["run", "--", "sh", "-c", "echo RAN"], "desk");
    expect(again.code).toBe(1);
    expect(again.out).not.toContain("RAN");
    expect(again.err).toContain("revoked");
  }, 120_000);

  test("--publish 18080:8080: a server the command starts on 127.0.0.1:8080 answers on the host's 127.0.0.1:18080", async () => {
    const www = tempDir("www");
    chmodSync(www, 0o755);
    writeFileSync(path.join(www, "hello.txt"), "hello from inside\n", { mode: 0o644 });
    // The client's runtime dir: $XDG_RUNTIME_DIR/clawpatrol, per home in these tests (see runClient).
    const runtime = path.join(homes.get("laptop")!, ".run", "clawpatrol");
    const pubDirs = () => Bun.spawnSync(["sh", "-c", `ls -d ${runtime}/pub-* 2>/dev/null`]).stdout.toString().trim().split("\n").filter(Boolean);
    const pubBefore = pubDirs();
    let pid = 0;
    const run = client(["run", "--publish", "18080:8080", "--", "/usr/bin/python3", "-m", "http.server", "8080", "--bind", "127.0.0.1", "--directory", www], "laptop", {
      timeoutMs: 60_000,
      onStart: (p) => (pid = p),
    });
    const hostCurl = (url: string) =>
      Bun.spawnSync(["ip", "netns", "exec", dev, "curl", "-sS", "--max-time", "5", url], { stdout: "pipe", stderr: "pipe" });
    let body = "";
    expect(
      await waitFor(() => {
        const r = hostCurl("http://127.0.0.1:18080/hello.txt");
        body = r.stdout.toString();
        return r.exitCode === 0 && body.length > 0;
      }, 30_000, 200),
    ).toBe(true);
    expect(body).toBe("hello from inside\n");
    // Only the published port: the service's own port is not on the host.
    expect(hostCurl("http://127.0.0.1:8080/hello.txt").exitCode).not.toBe(0);
    // The sockets' directory: the invoking user's alone, gone when the run ends.
    const dirs = pubDirs().filter((d) => !pubBefore.includes(d));
    expect(dirs).toHaveLength(1);
    expect(statSync(dirs[0]!).mode & 0o777).toBe(0o700);

    process.kill(pid, "SIGTERM");
    const r = await run;
    expect(r.code).toBe(128 + 15);
    expect(hostCurl("http://127.0.0.1:18080/hello.txt").exitCode).not.toBe(0);
    for (const d of dirs) expect(existsSync(d)).toBe(false);
    rmSync(www, { recursive: true, force: true });

    // Inside, the sockets' directory is an empty tmpfs: the command cannot reach the relay.
    const inside = await client(["run", "--publish", "18082:8082", "--", "sh", "-c", 'for d in "$XDG_RUNTIME_DIR"/clawpatrol/pub-*/; do echo "DIR $d"; ls -A "$d"; done; echo END'], "laptop");
    expect(inside.code).toBe(0);
    expect(inside.out).toContain(`DIR ${runtime}/pub-`);
    expect(inside.out).toContain("END");
    expect(inside.out).not.toContain(".sock");
  }, 90_000);

  test("a killed run leaves its peer only until the sweep: past the idle bound it leaves the registry and WireGuard", async () => {
    let pid = 0;
    const run = client(["run", "--", "sh", "-c", "echo ready; sleep 60"], "laptop", { onStart: (p) => (pid = p), timeoutMs: 60_000 });
    let runs: RunJson[] = [];
    expect(await waitFor(async () => (runs = await runsOf("laptop")).length === 1 && runs[0]!.last_handshake !== null, 20_000, 100)).toBe(true);
    process.kill(pid, "SIGKILL");
    expect((await run).code).toBe(137);
    // No DELETE came: the peer is still there.
    expect((await runsOf("laptop")).map((r) => r.id)).toEqual([runs[0]!.id]);
    // The gateway's sweep, on the real registry and WireGuard, with the clock moved on.
    let clock = Date.now();
    const sweeper = new DeviceRuns({ store: new RunPeerStore(t.gw.db), pool: new AddressPool(t.gw.db, "10.88.0.0/24"), plane: t.gw.tunnel!.plane, now: () => clock });
    expect(sweeper.sweep()).toEqual([]);
    clock += RUN_IDLE_MS - 1000;
    expect(sweeper.sweep()).toEqual([]);
    clock += 2000;
    expect(sweeper.sweep().map((p) => p.id)).toEqual([runs[0]!.id]);
    expect(await runsOf("laptop")).toEqual([]);
    expect(t.gw.tunnel!.plane.peers().map((p) => p.publicKey)).not.toContain(runs[0]!.public_key);
  }, 60_000);

  test("--publish as an unprivileged user (user namespaces), where the kernel allows them", async () => {
    const probe = Bun.spawnSync(["setpriv", `--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", "unshare", "-Urn", "true"]);
    if (probe.exitCode !== 0) return; // reported by run.test.ts
    const h = tempDir("home-nobody-pub");
    chmodSync(h, 0o755);
    mkdirSync(path.join(h, ".config"), { recursive: true });
    cpSync(path.join(homes.get("laptop")!, ".config/clawpatrol"), path.join(h, ".config/clawpatrol"), { recursive: true });
    sh(`chown -R ${NOBODY}:${NOBODY} ${h}`);
    let pid = 0;
    const run = runClient(bin, dev, ["run", "--publish", "127.0.0.1:18081:8081", "--", "/usr/bin/python3", "-m", "http.server", "8081", "--bind", "127.0.0.1", "--directory", "/"], {
      home: h,
      user: NOBODY,
      timeoutMs: 60_000,
      onStart: (p) => (pid = p),
    });
    let code = -1;
    expect(
      await waitFor(() => {
        const r = Bun.spawnSync(["ip", "netns", "exec", dev, "curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:18081/"], { stdout: "pipe" });
        code = Number(r.stdout.toString());
        return r.exitCode === 0;
      }, 30_000, 200),
    ).toBe(true);
    expect(code).toBe(200);
    process.kill(pid, "SIGTERM");
    expect((await run).code).toBe(128 + 15);
  }, 90_000);
});
