// README's newcomer block, run as written. Every fenced block after a
// `<!-- newcomer` marker in README.md is run line by line, in one shell
// (variables carry from line to line, as in a terminal), from a fresh copy of
// the checkout with an empty HOME, against the gateway started by the very
// command `make run` runs (read from `make -n run`), all inside a network
// namespace of its own that has nothing but loopback: a fresh machine with
// no network. Each command must exit 0; a `#   prints X` line under it says
// its output (stdout and stderr) holds X, a `#   the gateway prints X` line
// that the gateway's terminal shows X (X's parts around `…` in that order).
// The banner must show the block's curl lines as written, and the first
// operator's one-time password as README says.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { tempDir } from "./support/gateway.ts";

setDefaultTimeout(120_000);

const ROOT = path.resolve(import.meta.dir, "../..");
const isRoot = process.getuid?.() === 0;
const inCi = process.env.CI === "true";
/** What a fresh checkout holds that the gateway and its commands read (node_modules is linked: npm ci is never run here). */
const CHECKOUT = ["app", "client", "config", "tools", "Makefile", "package.json", "package-lock.json", "bunfig.toml", "tsconfig.json"];

export interface NewcomerStep {
  command: string;
  /** Text the command's output holds: parts in order, split at `…`. */
  prints: string[][];
  /** Text the gateway's terminal shows. */
  gatewayPrints: string[][];
}

/** The steps of every fenced block that follows a `<!-- newcomer` marker, in order. */
export function newcomerSteps(readme: string): NewcomerStep[] {
  const steps: NewcomerStep[] = [];
  const lines = readme.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i]!.startsWith("<!-- newcomer")) continue;
    let j = i + 1;
    while (j < lines.length && !lines[j]!.startsWith("```")) j++;
    for (j += 1; j < lines.length && !lines[j]!.startsWith("```"); j++) {
      const line = lines[j]!;
      const prints = /^#   prints (.+)$/.exec(line);
      const gw = /^#   the gateway prints (.+)$/.exec(line);
      const last = steps.at(-1);
      if ((prints || gw) && !last) throw new Error(`README line ${j + 1}: an expectation before any command`);
      if (prints) last!.prints.push(prints[1]!.split("…"));
      else if (gw) last!.gatewayPrints.push(gw[1]!.split("…"));
      else if (line.trim() !== "" && !line.startsWith("#")) steps.push({ command: line, prints: [], gatewayPrints: [] });
    }
    i = j;
  }
  return steps;
}

/** True when `text` holds the parts in this order. */
function holdsInOrder(text: string, parts: string[]): boolean {
  let at = 0;
  for (const p of parts) {
    const found = text.indexOf(p, at);
    if (found < 0) return false;
    at = found + p.length;
  }
  return true;
}

const steps = newcomerSteps(readFileSync(path.join(ROOT, "README.md"), "utf8"));
const ns = `cprm${process.pid}`;
let dir: string;
let checkout: string;
let gateway: ReturnType<typeof Bun.spawn> | undefined;
let gatewayOut = "";
let results: { code: number; out: string }[] = [];

async function sh(cmd: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<{ code: number; out: string }> {
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", ...(opts.cwd ? { cwd: opts.cwd } : {}) });
  const timer = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 30_000);
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, out: out + err };
}

async function waitForGateway(needle: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!gatewayOut.includes(needle)) {
    if (Date.now() > deadline) throw new Error(`the gateway did not print ${JSON.stringify(needle)}; it printed:\n${gatewayOut}`);
    if (gateway?.exitCode !== null) throw new Error(`the gateway exited (${gateway?.exitCode}):\n${gatewayOut}`);
    await Bun.sleep(50);
  }
}

const skip = !isRoot && !inCi;

describe.skipIf(skip)("README's newcomer block, offline", () => {
  beforeAll(async () => {
    expect(steps.length).toBeGreaterThan(3);
    dir = tempDir("readme");
    checkout = path.join(dir, "checkout");
    mkdirSync(checkout);
    for (const f of CHECKOUT) if (existsSync(path.join(ROOT, f))) cpSync(path.join(ROOT, f), path.join(checkout, f), { recursive: true });
    symlinkSync(path.join(ROOT, "node_modules"), path.join(checkout, "node_modules"));
    mkdirSync(path.join(dir, "home"));

    // The command `make run` runs, as make prints it (no prerequisite is made: -n, and -o for each).
    const made = await sh(["make", "-n", "-o", "deps", "-o", "host-client", "-o", "node_modules/.package-lock.json", "run"], { cwd: checkout });
    expect(made.code, made.out).toBe(0);
    const recipe = made.out.slice(made.out.indexOf("CLAWPATROL_SECRET_DEMO="));
    expect(recipe).toContain("app/main.ts all");

    // A machine with no network but loopback.
    expect((await sh(["ip", "netns", "add", ns])).code).toBe(0);
    expect((await sh(["ip", "-n", ns, "link", "set", "lo", "up"])).code).toBe(0);
    gateway = Bun.spawn(["ip", "netns", "exec", ns, "sh", "-c", recipe], {
      cwd: checkout,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: path.join(dir, "home") },
      stdout: "pipe",
      stderr: "pipe",
    });
    for (const stream of [gateway.stdout, gateway.stderr] as ReadableStream<Uint8Array>[]) {
      void (async () => {
        const reader = stream.getReader();
        const decoder = new TextDecoder();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          gatewayOut += decoder.decode(value, { stream: true });
        }
      })();
    }
    // The banner's last line.
    await waitForGateway("devices approve CODE --profile P", 90_000);

    // One shell for the whole block; each command's output and status kept apart.
    const out = path.join(dir, "out");
    mkdirSync(out);
    const script = ["set -o pipefail", ...steps.map((s, i) => `{\n${s.command}\n} > ${out}/${i} 2>&1 < /dev/null; echo $? > ${out}/${i}.rc`)].join("\n");
    writeFileSync(path.join(dir, "block.sh"), script + "\n");
    const block = Bun.spawn(["ip", "netns", "exec", ns, "bash", path.join(dir, "block.sh")], {
      cwd: checkout,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: path.join(dir, "home") },
      stdout: "ignore",
      stderr: "ignore",
    });
    const timer = setTimeout(() => block.kill("SIGKILL"), 100_000);
    expect(await block.exited).toBe(0);
    clearTimeout(timer);
    results = steps.map((_, i) => ({
      code: existsSync(`${out}/${i}.rc`) ? Number(readFileSync(`${out}/${i}.rc`, "utf8").trim()) : -1,
      out: existsSync(`${out}/${i}`) ? readFileSync(`${out}/${i}`, "utf8") : "",
    }));
  });

  afterAll(async () => {
    gateway?.kill("SIGTERM");
    const exited = await Promise.race([gateway?.exited, Bun.sleep(10_000).then(() => "timeout")]);
    if (exited === "timeout") gateway?.kill("SIGKILL");
    // Whatever a command of the block left running in the namespace.
    const pids = await sh(["ip", "netns", "pids", ns]);
    for (const pid of pids.out.split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {
        // gone already
      }
    }
    await sh(["ip", "netns", "del", ns]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("the banner shows the block's curl lines as written", () => {
    const curls = steps.filter((s) => s.command.startsWith("curl --cacert .state/ca.crt -x") && !s.command.includes("--proxy-user"));
    expect(curls.length).toBeGreaterThan(0);
    for (const c of curls) expect(gatewayOut).toContain(`    ${c.command}\n`);
    // README: on a fresh .state/ the banner gives the first operator's one-time password.
    expect(gatewayOut).toMatch(/sign in as admin, one-time password \S+/);
  });

  for (const [i, step] of steps.entries()) {
    test(`line ${i + 1}: ${step.command}`, async () => {
      const r = results[i]!;
      expect(r.code, `exit ${r.code}; it printed:\n${r.out}`).toBe(0);
      for (const parts of step.prints) expect(holdsInOrder(r.out, parts), `it printed:\n${r.out}\nREADME says it prints ${parts.join("…")}`).toBe(true);
      for (const parts of step.gatewayPrints) {
        // An event's line is written as it is published: give it a moment on a loaded machine.
        for (let k = 0; k < 200 && !holdsInOrder(gatewayOut, parts); k++) await Bun.sleep(25);
        expect(holdsInOrder(gatewayOut, parts), `the gateway printed:\n${gatewayOut}\nREADME says it prints ${parts.join("…")}`).toBe(true);
      }
    });
  }
});

describe("README as a whole", () => {
  test("never adds the same device or operator name twice (a newcomer following it in order would be refused)", () => {
    const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");
    const devices = [...readme.matchAll(/devices add ([\w.-]+)|join \S+ (?:[^\n]*?)--name ([\w.-]+)/g)].map((m) => m[1] ?? m[2]);
    const operators = [...readme.matchAll(/operator add ([\w.-]+)/g)].map((m) => m[1]);
    expect(devices.length).toBeGreaterThan(1);
    expect(new Set(devices).size).toBe(devices.length);
    expect(new Set(operators).size).toBe(operators.length);
  });
});

describe("newcomerSteps", () => {
  test("commands, their expectations, prose comments skipped, only marked blocks", () => {
    const md = [
      "```sh",
      "not-marked",
      "```",
      "<!-- newcomer: x -->",
      "```sh",
      "# prose",
      "echo a",
      "#   prints a…b",
      "#   the gateway prints c",
      "",
      "echo b",
      "```",
    ].join("\n");
    expect(newcomerSteps(md)).toEqual([
      { command: "echo a", prints: [["a", "b"]], gatewayPrints: [["c"]] },
      { command: "echo b", prints: [], gatewayPrints: [] },
    ]);
  });

  test("holds in order", () => {
    expect(holdsInOrder("allow x 200 cred=y", ["allow", "cred=y"])).toBe(true);
    expect(holdsInOrder("cred=y allow", ["allow", "cred=y"])).toBe(false);
  });
});
