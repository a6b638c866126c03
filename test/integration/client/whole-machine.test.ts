// `clawpatrol up` / `down` end to end, on a namespace standing in for the
// whole machine:
//
//   [dev ns + private mount ns] the client from source (bun client/main.ts;
//             CLAWPATROL_TEST_CLIENT=compiled uses `bun build --compile`),
//             a default route via the veth, /etc a tmpfs copy of the real
//             one (so up/down rewrite a private /etc/resolv.conf, never the
//             machine's); every client command joins this mount ns
//        ==veth (underlay)==
//   [root ns] the gateway in userspace mode (in this test process), the
//             public API through a forwarder on the veth address, a TLS
//             upstream on a second host address (reachable from dev directly
//             by its default route, so only the tunnel explains a credential)
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { canRunRootTests, Topology, sh, waitFor, type Background } from "../support/netns.ts";
import { makeTestPki, type TestPki } from "../support/pki.ts";
import { startUpstream, type TestUpstream } from "../support/upstream.ts";
import { startTestGateway, tempDir, type TestGateway } from "../support/gateway.ts";
import { controlFetch } from "../../../app/control/client.ts";

const SECRET = "ghp_real-whole-machine-secret-0123";
const PLACEHOLDER = "ghp_clawpatrol_placeholder_gh";
const N = 100 + ((process.pid + 53) % 100);
const HOST_IP = `10.216.${N}.1`;
const DEV_UNDERLAY = `10.216.${N}.2`;
const UPSTREAM_IP = `10.217.${N}.1`;
const WG_PORT = 20000 + (process.pid % 10000);
const ROOT = path.resolve(import.meta.dir, "../../..");
const BUN = path.join(ROOT, "node_modules/.bin/bun");
const NOBODY = 65534;

interface Result {
  code: number | null;
  out: string;
  err: string;
}

describe.skipIf(!canRunRootTests)("clawpatrol up/down: the whole (namespaced) machine through a userspace gateway", () => {
  const topo = new Topology("cpw");
  let dev = "";
  let holder: Background;
  let t: TestGateway;
  let pki: TestPki;
  let upstream: TestUpstream;
  let forwarder: net.Server;
  let bin = "";
  let home = "";
  let apiUrl = "";
  const stateDir = () => path.join(home, ".config/clawpatrol");

  /** Runs argv in the dev namespaces (network + the private mount namespace). */
  const inDev = (argv: string[], o: { timeoutMs?: number; onOut?: (s: string) => void } = {}): Promise<Result> =>
    new Promise((resolve) => {
      const proc = Bun.spawn(["nsenter", "-t", String(holder.child.pid), "-m", "-n", "--", ...argv], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
      let out = "";
      let err = "";
      const timer = setTimeout(() => proc.kill("SIGKILL"), o.timeoutMs ?? 40_000);
      const outDone = (async () => {
        for await (const c of proc.stdout as unknown as AsyncIterable<Uint8Array>) {
          out += new TextDecoder().decode(c);
          o.onOut?.(out);
        }
      })();
      const errDone = (async () => {
        for await (const c of proc.stderr as unknown as AsyncIterable<Uint8Array>) err += new TextDecoder().decode(c);
      })();
      proc.exited.then(async (code) => {
        clearTimeout(timer);
        // `up` leaves a background process, which must not hold our pipes.
        await Promise.all([outDone, errDone]);
        resolve({ code, out, err });
      });
    });
  const client = (args: string[], o: { user?: number; home?: string; env?: string[]; onOut?: (s: string) => void } = {}) =>
    inDev([
      ...(o.user === undefined ? [] : ["setpriv", `--reuid=${o.user}`, `--regid=${o.user}`, "--clear-groups", "--"]),
      "env", "-u", "XDG_CONFIG_HOME", "-u", "XDG_RUNTIME_DIR", "-u", "HTTPS_PROXY", "-u", "https_proxy", "-u", "ALL_PROXY", `HOME=${o.home ?? home}`,
      ...(o.env ?? []), bin, ...args,
    ], o);
  const approve = (code: string) =>
    controlFetch(t.gw.policy().gateway.controlSocket, `/api/onboard/${code}/approve`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ profile: "laptops", operator: "cli:test" }),
    });
  /** join (with `extra` arguments), the operator approving as soon as the code is shown. */
  const joinDevice = async (name: string, o: { home?: string; extra?: string[] } = {}) => {
    let approving: Promise<Response> | undefined;
    const r = await client(["join", apiUrl, "--name", name, ...(o.extra ?? [])], {
      home: o.home,
      onOut: (out) => {
        const m = /Code: ([A-Z2-9]{4}-[A-Z2-9]{4})/.exec(out);
        if (m && !approving) approving = approve(m[1]!);
      },
    });
    expect((await approving)?.status).toBe(200);
    return r;
  };
  const shIn = async (cmd: string) => (await inDev(["sh", "-c", cmd])).out;

  /** What down must put back byte for byte. */
  const hostSnapshot = async () => ({
    route: await shIn("ip route"),
    route6: await shIn("ip -6 route"),
    rule: await shIn("ip rule"),
    rule6: await shIn("ip -6 rule"),
    resolv: await shIn("ls -l /etc/resolv.conf | cut -c1; readlink /etc/resolv.conf; cat /etc/resolv.conf"),
    links: await shIn("ip -o link | cut -d: -f2"),
  });

  const daemonPid = () => Number(readFileSync(path.join(stateDir(), "whole-machine.pid"), "utf8").trim());
  const alive = (pid: number) => {
    try {
      const st = readFileSync(`/proc/${pid}/stat`, "utf8");
      return st.slice(st.lastIndexOf(")") + 2)[0] !== "Z";
    } catch {
      return false;
    }
  };

  const curlEcho = (cacert: string) =>
    inDev([
      "curl", "-sS", "--max-time", "15", "--cacert", cacert, "--noproxy", "*", "--resolve", `api.test:443:${UPSTREAM_IP}`,
      "-H", `Authorization: Bearer ${PLACEHOLDER}`, "https://api.test/echo",
    ]);

  beforeAll(async () => {
    bin = path.join(tempDir("wm-bin"), "clawpatrol");
    chmodSync(path.dirname(bin), 0o755);
    if (process.env.CLAWPATROL_TEST_CLIENT === "compiled") {
      const built = Bun.spawnSync([BUN, "build", "--compile", "--minify", "client/main.ts", "app/net/tun/tun-worker.ts", "--outfile", bin], { cwd: ROOT, stderr: "pipe" });
      if (built.exitCode !== 0) throw new Error(`bun build --compile failed: ${built.stderr.toString()}`);
    } else {
      writeFileSync(bin, `#!/bin/sh\nexec ${BUN} ${path.join(ROOT, "client/main.ts")} "$@"\n`, { mode: 0o755 });
    }

    dev = topo.namespace("dev");
    topo.veth(dev, "h", `${HOST_IP}/30`, `${DEV_UNDERLAY}/30`);
    sh(`ip -n ${dev} route add default via ${HOST_IP}`);
    sh(`ip addr add ${UPSTREAM_IP}/32 dev ${topo.hostLink("h")}`);
    // The dev "machine" gets a private /etc (a tmpfs copy), held by a sleeping process.
    // Also its own /run/wireguard, for wireguard-go's control socket in the wg-quick case.
    const etc = tempDir("wm-etc");
    mkdirSync("/run/wireguard", { recursive: true });
    holder = topo.background(["ip", "netns", "exec", dev, "unshare", "-m", "--propagation", "private", "sh", "-c",
      `mount -t tmpfs clawpatrol-test-etc ${etc} && cp -a /etc/. ${etc}/ && mount --bind ${etc} /etc && ` +
      `mount -t tmpfs clawpatrol-test-wg /run/wireguard && echo READY && exec sleep 3600`]);
    await holder.waitForOutput(/READY/, 15_000);

    pki = makeTestPki(tempDir("wm-pki"), ["api.test"]);
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
    const pub = t.gw.publicServer.address;
    forwarder = net.createServer((s) => {
      const c = net.connect(pub.port, "127.0.0.1");
      s.pipe(c).pipe(s);
      s.on("error", () => c.destroy());
      c.on("error", () => s.destroy());
    });
    await new Promise<void>((r) => forwarder.listen(0, HOST_IP, () => r()));
    apiUrl = `http://${HOST_IP}:${(forwarder.address() as net.AddressInfo).port}`;
    home = tempDir("wm-home");
    chmodSync(home, 0o755);

    const j = await joinDevice("whole-1");
    if (j.code !== 0) throw new Error(`join failed: ${j.err}`);
  }, 90_000);

  afterAll(async () => {
    if (holder && home && existsSync(path.join(stateDir(), "whole-machine.json"))) await client(["down"]);
    try {
      const pid = daemonPid();
      if (alive(pid)) process.kill(pid, "SIGKILL");
    } catch {
      /* no pid file */
    }
    forwarder?.close();
    await t?.stop();
    upstream?.stop();
    topo.destroy();
  });

  test("up returns to the shell; curl with no proxy gets the credential injected; down restores routes, rules, resolv.conf byte for byte and the TUN is gone", async () => {
    const before = await hostSnapshot();
    // Control: before up, the upstream is reached directly and sees only the placeholder.
    const direct = await curlEcho(pki.caCertPath);
    expect(direct.code).toBe(0);
    expect(upstream.seen.at(-1)!.headers["authorization"]).toBe(`Bearer ${PLACEHOLDER}`);

    const u = await client(["up"]);
    expect(u.err).toBe("");
    expect(u.code).toBe(0);
    expect(u.out).toContain("whole-machine tunnel up (userspace WireGuard on clawpatrol0");
    const pid = daemonPid();
    expect(alive(pid)).toBe(true);
    expect(statSync(path.join(stateDir(), "whole-machine.json")).mode & 0o777).toBe(0o600);

    const during = await hostSnapshot();
    expect(during.route).toContain("0.0.0.0/1 dev clawpatrol0");
    expect(during.route).toContain("128.0.0.0/1 dev clawpatrol0");
    expect(during.route).toContain(`${HOST_IP} dev eth0`);
    expect(during.route6).toContain("8000::/1 dev clawpatrol0");
    expect(during.resolv).toMatch(/nameserver 10\.88\.0\.\d+/);
    expect(during.rule).toBe(before.rule);

    const r = await curlEcho(path.join(stateDir(), "ca.crt"));
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out).path).toBe("/echo");
    expect(upstream.seen.at(-1)!.headers["authorization"]).toBe(`Bearer ${SECRET}`);
    expect(r.out).not.toContain(SECRET);
    expect(t.events.filter((x) => x.kind === "http").at(-1)!.device).toBe("whole-1");

    const s = await client(["status"]);
    expect(s.out).toContain(`whole machine: up (userspace, pid ${pid}`);
    expect(s.out).not.toContain("last handshake never");

    const again = await client(["up"]);
    expect(again.code).toBe(1);
    expect(again.err).toContain("already up");
    expect(alive(pid)).toBe(true);

    const d = await client(["down"]);
    expect(d.err).toBe("");
    expect(d.code).toBe(0);
    expect(d.out).toContain("restored");
    expect(alive(pid)).toBe(false);
    expect(await hostSnapshot()).toEqual(before);
    expect((await inDev(["ip", "link", "show", "clawpatrol0"])).code).not.toBe(0);
    expect(existsSync(path.join(stateDir(), "whole-machine.json"))).toBe(false);
    expect((await client(["status"])).out).toContain("whole machine: down");

    const twice = await client(["down"]);
    expect(twice.code).toBe(0);
    expect(twice.out).toContain("not up");
    // The background process's log never holds the key.
    const key = readFileSync(path.join(stateDir(), "private.key"), "utf8").trim();
    const logText = readFileSync(path.join(stateDir(), "whole-machine.log"), "utf8");
    expect(logText).toContain("up: clawpatrol0");
    expect(logText).not.toContain(key);
  }, 90_000);

  test("down restores the host after the background process was killed -9", async () => {
    const before = await hostSnapshot();
    expect((await client(["up"])).code).toBe(0);
    const pid = daemonPid();
    process.kill(pid, "SIGKILL");
    expect(await waitFor(() => !alive(pid), 5000)).toBe(true);
    expect((await client(["status"])).out).toContain("run clawpatrol down");
    // up refuses nothing here: the process is gone; but down is what restores.
    const d = await client(["down"]);
    expect(d.err).toBe("");
    expect(d.code).toBe(0);
    expect(await hostSnapshot()).toEqual(before);
  }, 90_000);

  test("a symlinked /etc/resolv.conf is replaced while up and comes back as the same symlink", async () => {
    await shIn("mv /etc/resolv.conf /etc/resolv.conf.real && ln -s resolv.conf.real /etc/resolv.conf");
    try {
      const before = await hostSnapshot();
      expect(before.resolv.startsWith("l\nresolv.conf.real\n")).toBe(true);
      expect((await client(["up"])).code).toBe(0);
      expect(await shIn("test -L /etc/resolv.conf && echo LINK || echo FILE")).toBe("FILE\n");
      expect(await shIn("cat /etc/resolv.conf.real")).toBe(before.resolv.split("\n").slice(2).join("\n"));
      expect((await client(["down"])).code).toBe(0);
      expect(await hostSnapshot()).toEqual(before);
    } finally {
      await shIn("rm -f /etc/resolv.conf && mv /etc/resolv.conf.real /etc/resolv.conf");
    }
  }, 90_000);

  test("join --whole-machine enrolls and brings the tunnel up in one go; uninstall runs down first", async () => {
    const before = await hostSnapshot();
    const h2 = tempDir("wm-home2");
    chmodSync(h2, 0o755);
    const j = await joinDevice("whole-2", { home: h2, extra: ["--whole-machine"] });
    expect(j.code).toBe(0);
    expect(j.out).toContain(`Approved: "whole-2"`);
    expect(j.out).toContain("whole-machine tunnel up");
    expect((await curlEcho(path.join(h2, ".config/clawpatrol/ca.crt"))).code).toBe(0);
    expect(upstream.seen.at(-1)!.headers["authorization"]).toBe(`Bearer ${SECRET}`);
    expect(t.events.filter((x) => x.kind === "http").at(-1)!.device).toBe("whole-2");
    // Re-joining while up would lose the record down needs: refused.
    const rejoin = await client(["join", apiUrl], { home: h2 });
    expect(rejoin.code).toBe(1);
    expect(rejoin.err).toContain("clawpatrol down");

    const u = await client(["uninstall", "--yes"], { home: h2 });
    expect(u.code).toBe(0);
    expect(u.out).toContain("routes and DNS restored");
    expect(existsSync(path.join(h2, ".config/clawpatrol"))).toBe(false);
    expect(await hostSnapshot()).toEqual(before);
  }, 90_000);

  test("the kernel path (wg-quick; wireguard-go stands in for the missing module): the same routes, the same exact restore", async () => {
    const before = await hostSnapshot();
    const u = await client(["up"], { env: ["CLAWPATROL_WHOLE_MACHINE_WG=kernel"] });
    expect(u.err).toBe("");
    expect(u.code).toBe(0);
    expect(u.out).toContain("whole-machine tunnel up (kernel WireGuard, clawpatrol0)");
    expect(statSync(path.join(stateDir(), "wg/clawpatrol0.conf")).mode & 0o777).toBe(0o600);
    expect(existsSync(path.join(stateDir(), "whole-machine.pid"))).toBe(false);
    const during = await hostSnapshot();
    expect(during.route).toContain("0.0.0.0/1 dev clawpatrol0");
    expect(during.route).toContain(`${HOST_IP} dev eth0`);
    expect(during.rule).toBe(before.rule);
    expect(during.resolv).toMatch(/nameserver 10\.88\.0\.\d+/);

    const r = await curlEcho(path.join(stateDir(), "ca.crt"));
    expect(r.code).toBe(0);
    expect(upstream.seen.at(-1)!.headers["authorization"]).toBe(`Bearer ${SECRET}`);
    const s = await client(["status"]);
    expect(s.out).toContain("whole machine: up (kernel");
    expect(s.out).not.toContain("last handshake never");
    expect((await client(["up"], { env: ["CLAWPATROL_WHOLE_MACHINE_WG=kernel"] })).err).toContain("already up");

    const d = await client(["down"]);
    expect(d.err).toBe("");
    expect(d.code).toBe(0);
    expect(await hostSnapshot()).toEqual(before);
    expect(existsSync(path.join(stateDir(), "wg"))).toBe(false);
  }, 90_000);

  test("not root: up says it needs root and changes nothing", async () => {
    const before = await hostSnapshot();
    const r = await client(["up"], { user: NOBODY });
    expect(r.code).toBe(1);
    expect(r.err).toContain("needs root");
    expect(await hostSnapshot()).toEqual(before);
  }, 30_000);

  test("after revocation, up fails with the reason and leaves the host as it was", async () => {
    const before = await hostSnapshot();
    const res = await controlFetch(t.gw.policy().gateway.controlSocket, "/api/devices/whole-1/revoke", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ operator: "cli:test" }),
    });
    expect(res.status).toBe(200);
    const r = await client(["up"], { env: ["CLAWPATROL_HANDSHAKE_TIMEOUT_MS=1500"] });
    expect(r.code).toBe(1);
    expect(r.err).toContain("did not come up");
    expect(r.err).toContain("does not answer");
    expect(await hostSnapshot()).toEqual(before);
    expect(existsSync(path.join(stateDir(), "whole-machine.json"))).toBe(false);
    expect((await client(["status"])).out).toContain("whole machine: down");
  }, 60_000);
});
