// Per-run peers on the appliance's path: the gateway in kernel mode (its
// wg0 is wireguard-go standing in for the kernel module), the client's runs
// registering their own keys over the public API, which the gateway sets on
// wg0 with `wg set` before it answers.
//
//   [dev]   `clawpatrol run` x2 of one device (compiled client)
//     eth0 DEV_UNDERLAY ==veth (underlay)== e-dev GW_UNDERLAY
//   [gw]    wireguard-go wg0 + `clawpatrol-gateway all` (mode = "kernel")
//     eth0 GW_UP ==veth== HOST_UP [root ns]: the TLS upstream (this process)
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { canRunRootTests, Topology, waitFor, type Background, type WireguardGo } from "../support/netns.ts";
import { makeTestPki } from "../support/pki.ts";
import { startUpstream, type TestUpstream } from "../support/upstream.ts";
import { tempDir } from "../support/gateway.ts";
import { buildClient, controlJson, enrollDevice, killClients, ROOT, runClient } from "../support/client-device.ts";

const BUN = path.join(ROOT, "node_modules/.bin/bun");
const SECRET = "ghp_kernel-run-peer-secret-0123456789";
const N = 10 + ((process.pid + 97) % 200);
const GW_UNDERLAY = `10.212.${N}.1`;
const DEV_UNDERLAY = `10.212.${N}.2`;
const HOST_UP = `10.213.${N}.1`;
const GW_UP = `10.213.${N}.2`;
const WG_PORT = 51820;
const DASH_PORT = 8080;
const REQUESTS = 15;

interface RunJson {
  id: string;
  address: string;
  public_key: string;
  last_handshake: number | null;
}

describe.skipIf(!canRunRootTests)("clawpatrol run: a peer per run through kernel-mode WireGuard", () => {
  const topo = new Topology("cpq");
  let dev = "";
  let dir = "";
  let bin = "";
  let home = "";
  let controlSocket = "";
  let gwWg: WireguardGo;
  let gateway: Background | undefined;
  let upstream: TestUpstream;

  beforeAll(async () => {
    for (const tool of ["wireguard-go", "wg", "nsenter", "curl"]) {
      if (Bun.spawnSync(["sh", "-c", `command -v ${tool}`]).exitCode !== 0) throw new Error(`${tool} is needed`);
    }
    bin = buildClient();
    dev = topo.namespace("dev");
    const gw = topo.namespace("gw");
    topo.link(dev, "eth0", `${DEV_UNDERLAY}/30`, gw, "e-dev", `${GW_UNDERLAY}/30`);
    topo.veth(gw, "u", `${HOST_UP}/30`, `${GW_UP}/30`);

    dir = tempDir("kgw-runs");
    const pki = makeTestPki(path.join(dir, "pki"), ["api.test"]);
    upstream = startUpstream(pki, { hostname: HOST_UP, port: 443 });
    gwWg = await topo.wireguardGo(gw);
    const config = path.join(dir, "gateway.hcl");
    writeFileSync(
      config,
      `schema_version = 1
gateway {
  state_dir = "state"
  dashboard_listen = "${GW_UNDERLAY}:${DASH_PORT}"
  wireguard {
    mode = "kernel"
    listen = "0.0.0.0:${WG_PORT}"
    subnet_cidr = "10.86.0.0/24"
    endpoint = "${GW_UNDERLAY}:${WG_PORT}"
    interface = "wg0"
    tun = "cp0"
  }
}
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
    );
    controlSocket = path.join(dir, "state", "control.sock");
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("CLAWPATROL_")) env[k] = v;
    gateway = topo.background(["nsenter", "-t", String(gwWg.pid), "-m", "-n", BUN, path.join(ROOT, "app/main.ts"), "all", "--config", config], {
      cwd: ROOT,
      env: { ...env, CLAWPATROL_SECRET_GH: SECRET },
    });
    await gateway.waitForOutput(/clawpatrol gateway running/, 30_000);

    home = tempDir("home-kernel");
    chmodSync(home, 0o755);
    const r = await enrollDevice(controlSocket, bin, dev, `http://${GW_UNDERLAY}:${DASH_PORT}`, "k-laptop", { home, profile: "laptops" });
    expect(r.code).toBe(0);
  }, 90_000);

  afterAll(async () => {
    killClients();
    try {
      await gateway?.stop("SIGTERM", 5000);
      if (process.env.CLAWPATROL_TEST_VERBOSE) console.error(gateway?.output());
      upstream?.stop();
    } finally {
      topo.destroy();
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  });

  test("two concurrent runs are two peers on wg0 while they run, every request credentialed; none after", async () => {
    const gate = path.join(tempDir("kgate"), "go");
    const curl = `curl -sS --max-time 10 --resolve api.test:443:${HOST_UP} -H 'Authorization: Bearer ghp_clawpatrol_placeholder_gh'`;
    const loop =
      `while [ ! -e ${gate} ]; do sleep 0.05; done; ok=0; for i in $(seq 1 ${REQUESTS}); do ` +
      `[ "$(${curl} -o /dev/null -w '%{http_code}' https://api.test/echo)" = 200 ] && ok=$((ok+1)); done; echo "ok=$ok"`;
    const before = upstream.seen.length;
    const runs = [0, 1].map(() => runClient(bin, dev, ["run", "--", "sh", "-c", loop], { home, timeoutMs: 90_000 }));
    // Both registered, and the kernel interface has each run's key, allowed only its own address.
    let live: RunJson[] = [];
    expect(
      await waitFor(async () => {
        live = (await controlJson<{ runs: RunJson[] }>(controlSocket, "/api/devices/k-laptop/runs")).runs;
        const allowed = gwWg.wg("show wg0 allowed-ips");
        return live.length === 2 && live.every((r) => allowed.includes(`${r.public_key}\t${r.address}/32`));
      }, 30_000, 100),
    ).toBe(true);
    expect(new Set(live.map((r) => r.address)).size).toBe(2);

    writeFileSync(gate, "");
    const results = await Promise.all(runs);
    for (const r of results) {
      expect(r.err).toBe("");
      expect(r.code).toBe(0);
      expect(r.out).toContain(`ok=${REQUESTS}`);
    }
    const seen = upstream.seen.slice(before);
    expect(seen).toHaveLength(2 * REQUESTS);
    expect(seen.every((s) => s.headers["authorization"] === `Bearer ${SECRET}`)).toBe(true);

    // Deregistered: wg0 keeps only the device's own peer.
    expect((await controlJson<{ runs: RunJson[] }>(controlSocket, "/api/devices/k-laptop/runs")).runs).toEqual([]);
    const peers = gwWg.wg("show wg0 peers").split("\n").filter(Boolean);
    for (const r of live) expect(peers).not.toContain(r.public_key);
    expect(peers).toHaveLength(1);
  }, 120_000);
});
