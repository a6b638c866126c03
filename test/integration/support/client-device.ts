// The device side of client tests: the `clawpatrol` binary (compiled as
// `make client` builds it, or the sources with CLAWPATROL_TEST_CLIENT=source),
// a device namespace joined to the root one by a veth, the gateway's public
// API reached on the veth address, and helpers to run the client there and
// enroll a device (join + the operator's approval over the control socket).
//
//   [dev ns]   the client; `clawpatrol run` nests its namespaces in this one
//       ==veth (underlay)==
//   [root ns]  the gateway (userspace WireGuard on HOST_IP), a forwarder to
//              its public API on HOST_IP, upstreams on extra host addresses
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { controlFetch } from "../../../app/control/client.ts";
import type { TestGateway } from "./gateway.ts";
import { tempDir } from "./gateway.ts";
import { sh, type Topology } from "./netns.ts";

export const ROOT = path.resolve(import.meta.dir, "../../..");

export interface ClientResult {
  code: number | null;
  out: string;
  err: string;
}

export interface ClientOptions {
  home: string;
  user?: number;
  timeoutMs?: number;
  env?: string[];
  /** Called with the client's pid once it is spawned. */
  onStart?: (pid: number) => void;
  /** Called with all stdout so far and the client's pid, at every chunk. */
  onOut?: (out: string, pid: number) => void;
}

/** Builds the client into a fresh directory; returns the binary's path. */
export function buildClient(): string {
  const binDir = tempDir("client-bin");
  chmodSync(binDir, 0o755);
  const bin = path.join(binDir, "clawpatrol");
  if (process.env.CLAWPATROL_TEST_CLIENT === "source") {
    writeFileSync(bin, `#!/bin/sh\nexec ${path.join(ROOT, "node_modules/.bin/bun")} ${path.join(ROOT, "client/main.ts")} "$@"\n`, { mode: 0o755 });
    return bin;
  }
  const built = Bun.spawnSync(
    [path.join(ROOT, "node_modules/.bin/bun"), "build", "--compile", "--minify", "client/main.ts", "app/net/tun/tun-worker.ts", "--outfile", bin],
    { cwd: ROOT, stderr: "pipe", stdout: "pipe" },
  );
  if (built.exitCode !== 0) throw new Error(`bun build --compile failed: ${built.stderr.toString()}`);
  return bin;
}

export interface ClientDeviceNet {
  /** the device namespace */
  dev: string;
  hostIp: string;
  devIp: string;
}

/** A device namespace on a /30 veth to the root namespace. */
export function deviceNamespace(topo: Topology, hostIp: string, devIp: string): ClientDeviceNet {
  const dev = topo.namespace("dev");
  topo.veth(dev, "h", `${hostIp}/30`, `${devIp}/30`);
  return { dev, hostIp, devIp };
}

/** Adds an address of the root namespace (an upstream) on the veth's host end. */
export function addHostAddress(topo: Topology, ip: string): void {
  sh(`ip addr add ${ip}/32 dev ${topo.hostLink("h")}`);
}

/** The public API (loopback) reachable on `hostIp`; returns its URL and a close. */
export async function forwardPublicApi(t: TestGateway, hostIp: string): Promise<{ url: string; close(): void }> {
  const server = net.createServer((s) => {
    // Looked up per connection: a test that restarts the gateway swaps t.gw.
    const c = net.connect(t.gw.publicServer.address.port, "127.0.0.1");
    s.pipe(c).pipe(s);
    s.on("error", () => c.destroy());
    c.on("error", () => s.destroy());
  });
  await new Promise<void>((r) => server.listen(0, hostIp, () => r()));
  return { url: `http://${hostIp}:${(server.address() as net.AddressInfo).port}`, close: () => server.close() };
}

/** Clients started by runClient and not yet exited (killClients ends them). */
const running = new Set<{ kill(signal?: number | NodeJS.Signals): void }>();

/** Kills every client runClient started that is still running: for afterAll, so a failed test leaves no run behind. */
export function killClients(): void {
  for (const p of running) p.kill("SIGKILL");
  running.clear();
}

/** Runs the client inside the device namespace (optionally as another uid). */
export function runClient(bin: string, dev: string, args: string[], o: ClientOptions): Promise<ClientResult> {
  return new Promise((resolve) => {
    const asUser = o.user === undefined ? [] : ["setpriv", `--reuid=${o.user}`, `--regid=${o.user}`, "--clear-groups", "--"];
    // Each home keeps its own record of active runs (the client's runtime dir is per user otherwise).
    const runtime = `${o.home}/.run`;
    mkdirSync(runtime, { recursive: true, mode: 0o1777 });
    chmodSync(runtime, 0o1777);
    const env = ["env", "-u", "XDG_CONFIG_HOME", `XDG_RUNTIME_DIR=${runtime}`, `HOME=${o.home}`, ...(o.env ?? [])];
    // ip netns exec, setpriv and env all exec: proc.pid is the client's pid.
    const proc = Bun.spawn(["ip", "netns", "exec", dev, ...asUser, ...env, bin, ...args], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
    running.add(proc);
    o.onStart?.(proc.pid);
    let out = "";
    let err = "";
    const timer = setTimeout(() => proc.kill("SIGKILL"), o.timeoutMs ?? 30_000);
    const reading = Promise.all([
      (async () => {
        for await (const c of proc.stdout as unknown as AsyncIterable<Uint8Array>) {
          out += new TextDecoder().decode(c);
          o.onOut?.(out, proc.pid);
        }
      })(),
      (async () => {
        for await (const c of proc.stderr as unknown as AsyncIterable<Uint8Array>) err += new TextDecoder().decode(c);
      })(),
    ]);
    proc.exited.then(async (code) => {
      running.delete(proc);
      clearTimeout(timer);
      await reading;
      resolve({ code, out, err });
    });
  });
}

/** The control socket of an in-process gateway, or a path (a gateway process). */
export type ControlTarget = TestGateway | string;
const socketOf = (c: ControlTarget) => (typeof c === "string" ? c : c.gw.policy().gateway.controlSocket);

/** The operator approves a join code over the control socket. */
export async function approveCode(c: ControlTarget, code: string, profile: string): Promise<void> {
  const res = await controlFetch(socketOf(c), `/api/onboard/${code}/approve`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ profile, operator: "cli:test" }),
  });
  if (res.status !== 200) throw new Error(`approve ${code}: ${res.status} ${await res.text()}`);
}

/** `clawpatrol join`, the operator approving as soon as the code is shown. */
export async function enrollDevice(
  t: ControlTarget,
  bin: string,
  dev: string,
  apiUrl: string,
  name: string,
  o: ClientOptions & { profile: string },
): Promise<ClientResult> {
  let approving: Promise<void> | undefined;
  const r = await runClient(bin, dev, ["join", apiUrl, "--name", name], {
    ...o,
    onOut: (out, pid) => {
      const m = /Code: ([A-Z2-9]{4}-[A-Z2-9]{4})/.exec(out);
      if (m && !approving) approving = approveCode(t, m[1]!, o.profile);
      o.onOut?.(out, pid);
    },
  });
  await approving;
  return r;
}

/** A control-socket GET as JSON. */
export async function controlJson<T>(c: ControlTarget, route: string, init?: RequestInit): Promise<T> {
  const res = await controlFetch(socketOf(c), route, init);
  return (await res.json()) as T;
}
