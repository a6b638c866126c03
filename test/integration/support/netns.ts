// Network-namespace topologies for the packet-plane tests: namespaces, veth
// pairs into them, and wireguard-go standing in for the kernel module this
// kernel lacks (each instance in its own mount namespace, so the control
// sockets under /run/wireguard do not collide). Everything is named with a
// per-run prefix and removed by destroy(), also after a failed test.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync } from "node:fs";

export const isRoot = process.getuid?.() === 0;
/** Root tests run as root, and must run in CI (which is root). */
export const canRunRootTests = isRoot || process.env.CI === "true";

export function sh(cmd: string): string {
  const r = spawnSync("sh", ["-c", cmd], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd}: ${(r.stderr || r.stdout).trim()}`);
  return r.stdout.trim();
}

export async function waitFor(cond: () => boolean | Promise<boolean>, ms: number, stepMs = 20): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await Bun.sleep(stepMs);
  }
  return cond();
}

export interface WireguardGo {
  pid: number;
  /** Runs `wg ARGS` against this instance's interface. */
  wg(args: string): string;
}

/** A long-running process inside the topology (a gateway, a server). */
export interface Background {
  child: ChildProcess;
  /** stdout and stderr so far, interleaved. */
  output(): string;
  /** Resolves with the exit code (or signal name) once the process has ended. */
  exited: Promise<number | string>;
  /** Resolves once `re` matches the output; rejects when the process exits first or after `ms`. */
  waitForOutput(re: RegExp, ms: number): Promise<string>;
  /** Sends `signal`; after `ms` without an exit, SIGKILL. Resolves with how it ended. */
  stop(signal?: NodeJS.Signals, ms?: number): Promise<number | string>;
}

export class Topology {
  readonly prefix: string;
  private namespaces: string[] = [];
  private hostLinks: string[] = [];
  private children: ChildProcess[] = [];

  constructor(tag: string) {
    this.prefix = `${tag}${process.pid % 100000}`.slice(0, 9);
  }

  namespace(name: string): string {
    const ns = `${this.prefix}${name}`;
    sh(`ip netns add ${ns}`);
    this.namespaces.push(ns);
    sh(`ip -n ${ns} link set lo up`);
    return ns;
  }

  /** A veth pair: `hostIf` in the root namespace, `eth0` in `ns`, each with its address (CIDR). */
  veth(ns: string, hostIf: string, hostCidr: string, nsCidr: string): void {
    const name = `${this.prefix}${hostIf}`.slice(0, 15);
    sh(`ip link add ${name} type veth peer name eth0 netns ${ns}`);
    this.hostLinks.push(name);
    sh(`ip addr add ${hostCidr} dev ${name} && ip link set ${name} up`);
    sh(`ip -n ${ns} addr add ${nsCidr} dev eth0 && ip -n ${ns} link set eth0 up`);
  }

  /** A veth pair between two namespaces: `ifA` (with `cidrA`) in `nsA`, `ifB` (with `cidrB`) in `nsB`. */
  link(nsA: string, ifA: string, cidrA: string, nsB: string, ifB: string, cidrB: string): void {
    // created straight into the namespaces: no name ever exists in the root namespace
    sh(`ip link add ${ifA} netns ${nsA} type veth peer name ${ifB} netns ${nsB}`);
    sh(`ip -n ${nsA} addr add ${cidrA} dev ${ifA} && ip -n ${nsA} link set ${ifA} up`);
    sh(`ip -n ${nsB} addr add ${cidrB} dev ${ifB} && ip -n ${nsB} link set ${ifB} up`);
  }

  /**
   * Starts a long-running process (killed by destroy() if still running).
   * Use `["ip", "netns", "exec", ns, ...]` for a namespace, or
   * `["nsenter", "-t", String(wg.pid), "-m", "-n", ...]` to share a
   * wireguard-go instance's mount namespace (its /run/wireguard) and network.
   */
  background(argv: string[], opts: { env?: Record<string, string | undefined>; cwd?: string } = {}): Background {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"], env: opts.env ?? process.env, ...(opts.cwd ? { cwd: opts.cwd } : {}) });
    this.children.push(child);
    let out = "";
    const listeners = new Set<() => void>();
    const onData = (d: Buffer) => {
      out += d.toString();
      for (const l of listeners) l();
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    const exited = new Promise<number | string>((resolve) => {
      child.on("exit", (code, signal) => {
        resolve(code ?? signal ?? "unknown");
        for (const l of listeners) l();
      });
    });
    let ended = false;
    void exited.then(() => (ended = true));
    const waitForOutput = (re: RegExp, ms: number) =>
      new Promise<string>((resolve, reject) => {
        const check = () => {
          const m = re.exec(out);
          if (m) return done(() => resolve(m[0]));
          if (ended || child.exitCode !== null || child.signalCode !== null) return done(() => reject(new Error(`${argv.join(" ")} exited before ${re}:\n${out}`)));
        };
        const t = setTimeout(() => done(() => reject(new Error(`no ${re} from ${argv.join(" ")} within ${ms} ms:\n${out}`))), ms);
        const done = (f: () => void) => {
          clearTimeout(t);
          listeners.delete(check);
          f();
        };
        listeners.add(check);
        check();
      });
    const stop = async (signal: NodeJS.Signals = "SIGTERM", ms = 5000) => {
      if (!ended && child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
        const t = setTimeout(() => child.kill("SIGKILL"), ms);
        const r = await exited;
        clearTimeout(t);
        return r;
      }
      return exited;
    };
    return { child, output: () => out, exited, waitForOutput, stop };
  }

  hostLink(hostIf: string): string {
    return `${this.prefix}${hostIf}`.slice(0, 15);
  }

  /** wireguard-go as `wg0` inside `ns`. */
  async wireguardGo(ns: string): Promise<WireguardGo> {
    mkdirSync("/run/wireguard", { recursive: true });
    const child = spawn(
      "ip",
      ["netns", "exec", ns, "unshare", "-m", "--propagation", "private", "sh", "-c", "mount -t tmpfs x /run/wireguard && exec wireguard-go -f wg0"],
      { stdio: "ignore", env: { ...process.env, WG_PROCESS_FOREGROUND: "1" } },
    );
    this.children.push(child);
    const pid = child.pid!;
    if (!(await waitFor(() => spawnSync("ip", ["-n", ns, "link", "show", "wg0"]).status === 0, 5000))) {
      throw new Error("wireguard-go did not create wg0");
    }
    await waitFor(() => spawnSync("nsenter", ["-t", String(pid), "-m", "-n", "wg", "show", "wg0"]).status === 0, 5000);
    return { pid, wg: (args: string) => sh(`nsenter -t ${pid} -m -n wg ${args}`) };
  }

  /** Runs a command inside `ns`; resolves with its output (never rejects). */
  exec(ns: string, argv: string[], timeoutMs = 30_000): Promise<{ code: number | null; out: string; err: string }> {
    return new Promise((resolve) => {
      const child = spawn("ip", ["netns", "exec", ns, ...argv]);
      let out = "";
      let err = "";
      child.stdout.on("data", (d) => (out += d));
      child.stderr.on("data", (d) => (err += d));
      const t = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      child.on("exit", (code) => {
        clearTimeout(t);
        resolve({ code, out, err });
      });
    });
  }

  destroy(): void {
    for (const ns of this.namespaces) spawnSync("ip", ["-n", ns, "link", "del", "wg0"]);
    for (const c of this.children) {
      try {
        c.kill("SIGTERM");
      } catch {
        /* already gone */
      }
    }
    for (const l of this.hostLinks) spawnSync("ip", ["link", "del", l]);
    for (const ns of this.namespaces) spawnSync("ip", ["netns", "del", ns]);
  }
}
