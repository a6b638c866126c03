// The command gate end to end: the compiled client's
// `clawpatrol run --gate ... -- sh -c SCRIPT` as an unprivileged user in a
// device namespace, real tools behind the shims, the gateway judging each
// command over the tunnel (clawpatrol.internal), approvals from the CLI.
//
//   [dev ns]   clawpatrol run (nobody) -> namespaces -> warden (inner stage)
//              agent: sh -c SCRIPT with rm, ls, npm, ... as shims
//       ==veth (underlay)==
//   [root ns]  the gateway (userspace WireGuard), in this test process
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { canRunRootTests, sh, Topology, waitFor } from "../support/netns.ts";
import { startTestGateway, tempDir, type TestGateway } from "../support/gateway.ts";
import { startGateway } from "../../../app/gateway.ts";
import { buildClient, deviceNamespace, enrollDevice, forwardPublicApi, killClients, runClient, type ClientResult } from "../support/client-device.ts";

const N = 100 + ((process.pid + 61) % 100);
const HOST_IP = `10.232.${N}.1`;
const DEV_UNDERLAY = `10.232.${N}.2`;
const WG_PORT = 21000 + (process.pid % 10000);
const NOBODY = 65534;
const GATE = "ls,npm,sleep,touch,bash,cat,bc,stty";

describe.skipIf(!canRunRootTests)("clawpatrol run --gate: commands through the gateway's rules", () => {
  const topo = new Topology("cgt");
  let dev = "";
  let t: TestGateway;
  let api: { url: string; close(): void };
  let bin = "";
  let home = "";
  let work = "";

  beforeAll(async () => {
    bin = buildClient();
    ({ dev } = deviceNamespace(topo, HOST_IP, DEV_UNDERLAY));
    t = await startTestGateway(
      `
defaults {
  verdict = "allow"
}
endpoint "exec" "tools" {}
profile "agents" {
  gate = ["rm"]
}
rule "rm-rf" {
  endpoint  = exec.tools
  condition = "prefix(exec.argv, ['rm', '-rf'])"
  verdict   = "deny"
  reason    = "rm -rf needs a person"
}
rule "sleepy" {
  endpoint  = exec.tools
  condition = "exec.command == 'sleep'"
  verdict   = "allow"
  timeout   = "2s"
}
rule "detacher" {
  endpoint  = exec.tools
  condition = "exec.command == 'bash' && exec.args.contains('detach-test')"
  verdict   = "allow"
  timeout   = "4s"
}
rule "ghosted" {
  endpoint  = exec.tools
  condition = "exec.command == 'bash' && exec.args.contains('ghost-test')"
  verdict   = "allow"
  sandbox   = "ghost"
}
rule "touch-needs-approval" {
  endpoint  = exec.tools
  condition = "exec.command == 'touch'"
  approve   = [dashboard]
  reason    = "creating files needs a person"
}
`,
      {},
      {
        gateway: `
  wireguard {
    mode = "userspace"
    listen = "${HOST_IP}:${WG_PORT}"
    subnet_cidr = "10.93.0.0/24"
    endpoint = "${HOST_IP}:${WG_PORT}"
  }`,
      },
    );
    api = await forwardPublicApi(t, HOST_IP);
    home = tempDir("home-gate");
    sh(`chown -R ${NOBODY}:${NOBODY} ${home}`);
    chmodSync(home, 0o755);
    work = tempDir("gate-work");
    chmodSync(work, 0o1777);
    const r = await enrollDevice(t, bin, dev, api.url, "gate-laptop", { home, profile: "agents", user: NOBODY });
    expect(r.code).toBe(0);
  }, 180_000);

  afterAll(async () => {
    try {
      killClients();
      api?.close();
      await t?.stop();
    } finally {
      topo.destroy();
    }
  }, 60_000);

  const agent = (script: string, o: { onOut?: (out: string) => void; timeoutMs?: number; env?: string[] } = {}): Promise<ClientResult> =>
    runClient(bin, dev, ["run", "--gate", GATE, "--", "sh", "-c", script], {
      home,
      user: NOBODY,
      timeoutMs: o.timeoutMs ?? 90_000,
      ...(o.env ? { env: o.env } : {}),
      ...(o.onOut ? { onOut: (out) => o.onOut!(out) } : {}),
    });

  const victim = (name: string): string => {
    const dir = path.join(work, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, "precious"), "keep me\n");
    sh(`chown -R ${NOBODY}:${NOBODY} ${dir}`);
    return dir;
  };

  const execEvents = () => t.events.filter((e) => e.kind === "exec" && e.device === "gate-laptop");

  test("allowed ls and npm --version run, with their output and status, and are recorded", async () => {
    writeFileSync(path.join(work, "hello.txt"), "hi\n");
    const r = await agent(`ls ${work}; echo ls=$?; npm --version; echo npm=$?`);
    expect(r.err).not.toContain("denied");
    expect(r.out).toContain("hello.txt");
    expect(r.out).toContain("ls=0");
    expect(r.out).toMatch(/^\d+\.\d+\.\d+$/m);
    expect(r.out).toContain("npm=0");
    expect(r.code).toBe(0);
    expect(await waitFor(() => execEvents().some((e) => e.summary === "npm --version"), 10_000)).toBe(true);
    const ls = execEvents().find((e) => e.summary === `ls ${work}`)!;
    expect(ls).toMatchObject({ verdict: "allow", endpoint: "exec.tools" });
    expect(ls.action).toMatchObject({ exit: 0, timed_out: false, uid: NOBODY, paths: [work] });
  }, 120_000);

  test("rm -rf (gated by the profile) is denied: one line naming the rule, status 126, nothing removed", async () => {
    const dir = victim("denied");
    const r = await agent(`rm -rf ${dir}; echo rm=$?`);
    expect(r.out).toContain("rm=126");
    expect(r.err).toContain(`rm -rf ${dir}: denied by rule "rm-rf": rm -rf needs a person`);
    expect(existsSync(path.join(dir, "precious"))).toBe(true);
    expect(await waitFor(() => execEvents().some((e) => e.verdict === "deny" && e.rule === "rm-rf"), 10_000)).toBe(true);
  }, 120_000);

  test("exit statuses pass through: 0, 1, 42, and death by signal as 128+N", async () => {
    const r = await agent(`bash -c 'exit 0'; echo a=$?; bash -c 'exit 1'; echo b=$?; bash -c 'exit 42'; echo c=$?; bash -c 'kill -KILL $$'; echo d=$?; bash -c 'kill -TERM $$'; echo e=$?`);
    expect(r.out.split("\n").filter((l) => /^[a-e]=/.test(l))).toEqual(["a=0", "b=1", "c=42", "d=137", "e=143"]);
  }, 120_000);

  test("a timeout kills the command's process tree and is recorded", async () => {
    const r = await agent(`sleep 600; echo s=$?`);
    expect(r.out).toContain("s=137");
    expect(r.err).toContain("killed after its timeout");
    expect(await waitFor(() => execEvents().some((e) => e.summary === "sleep 600"), 10_000)).toBe(true);
    expect(execEvents().find((e) => e.summary === "sleep 600")!.action).toMatchObject({ timed_out: true, exit: 137 });
  }, 120_000);

  test("a held command waits, says for whom, and runs once approved from the CLI", async () => {
    const file = path.join(work, "approved");
    let said = false;
    const running = agent(`touch ${file}; echo t=$?`);
    // The hold shows up on the operator's CLI.
    const cli = async (...args: string[]) => {
      const p = Bun.spawn(["./node_modules/.bin/bun", "app/main.ts", ...args, "--config", t.configPath], { stdout: "pipe", stderr: "pipe" });
      const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
      return { out, err, code };
    };
    let id = "";
    expect(
      await waitFor(() => {
        const p = t.gw.approvals.hub.pending().find((x) => x.request.summary === `touch ${file}`);
        if (p?.decidable) id = p.id;
        return id !== "";
      }, 60_000),
    ).toBe(true);
    const list = await cli("approvals", "list");
    expect(list.out).toContain(id);
    expect(existsSync(file)).toBe(false);
    const ok = await cli("approvals", "approve", id, "--reason", "fine");
    expect(ok.code).toBe(0);
    const r = await running;
    said = r.err.includes(`waiting for approval by dashboard`);
    expect(said).toBe(true);
    expect(r.out).toContain("t=0");
    expect(existsSync(file)).toBe(true);
    expect(await waitFor(() => execEvents().some((e) => e.summary === `touch ${file}` && e.verdict === "allow"), 10_000)).toBe(true);
    expect(execEvents().find((e) => e.summary === `touch ${file}`)!.operator).toMatch(/^cli:/);
  }, 120_000);

  test("bypass attempts all hit the gate: absolute path, /proc/self/root, /proc/1/root, env -i, command -p, exec -a, a copy, a symlink", async () => {
    const dir = victim("bypass");
    const attempts = [
      `/usr/bin/rm -rf ${dir}`,
      `/bin/rm -rf ${dir}`,
      `/proc/self/root/usr/bin/rm -rf ${dir}`,
      `/proc/1/root/usr/bin/rm -rf ${dir}`,
      `env -i rm -rf ${dir}`,
      `env -i /usr/bin/rm -rf ${dir}`,
      `command -p rm -rf ${dir}`,
      `bash -c 'exec -a notrm rm -rf ${dir}'`,
      `cp /usr/bin/rm ${work}/myrm && ${work}/myrm -rf ${dir}`,
      `ln -sf /usr/bin/rm ${work}/lnrm && ${work}/lnrm -rf ${dir}`,
      `umount /usr/bin/rm`,
    ];
    const r = await agent(attempts.map((a, i) => `${a}; echo attempt${i}=$?`).join("\n"));
    for (let i = 0; i < attempts.length; i++) expect(r.out).toMatch(new RegExp(`attempt${i}=[1-9]`));
    expect(existsSync(path.join(dir, "precious"))).toBe(true);
    // Every attempt but /proc/1/root (EACCES: pid 1 is the warden) and umount reached the gate and was refused there.
    expect(r.err.split("\n").filter((l) => l.includes(`denied by rule "rm-rf"`))).toHaveLength(attempts.length - 2);
    expect(r.err).toContain("/proc/1/root/usr/bin/rm: Permission denied");
  }, 120_000);

  test("LD_PRELOAD never reaches the real binary (env_scrub's built-in list)", async () => {
    const so = path.join(work, "evil.so");
    const src = path.join(work, "evil.c");
    const marker = path.join(work, "preloaded-into-cat");
    writeFileSync(
      src,
      `#include <unistd.h>
#include <string.h>
#include <fcntl.h>
__attribute__((constructor)) static void evil(void) {
  char exe[256] = {0};
  readlink("/proc/self/exe", exe, sizeof exe - 1);
  size_t n = strlen(exe);
  if (n >= 4 && strcmp(exe + n - 4, "/cat") == 0) close(open("${marker}", O_CREAT | O_WRONLY, 0644));
}
`,
    );
    sh(`gcc -shared -fPIC -o ${so} ${src} && chmod 755 ${so}`);
    const r = await agent(`LD_PRELOAD=${so} cat ${src} > /dev/null; echo cat=$?`);
    expect(r.out).toContain("cat=0");
    expect(existsSync(marker)).toBe(false);
  }, 120_000);

  /** The `python3 -c 'import time; time.sleep(600)' MARKER` processes on this machine. */
  const running = (marker: string): number[] => {
    const r = Bun.spawnSync(["pgrep", "-f", `(^|/)python3 -c import time; time\\.sleep\\(600\\) ${marker}$`], { stdout: "pipe" });
    return r.stdout.toString().trim().split("\n").filter(Boolean).map(Number);
  };

  test("a timeout kills the whole command: a double-forked, setsid grandchild dies with it", async () => {
    const marker = `detached-${process.pid}-${Date.now()}`;
    const script = path.join(work, "detach.sh");
    writeFileSync(script, `( setsid python3 -c 'import time; time.sleep(600)' ${marker} & )\nexec python3 -c 'import time; time.sleep(600)'\n`, { mode: 0o755 });
    let seen = false;
    const watching = setInterval(() => {
      if (running(marker).length > 0) seen = true;
    }, 100);
    try {
      const r = await agent(`bash ${script} detach-test; echo d=$?`);
      expect(r.out).toContain("d=137");
      expect(r.err).toContain("killed after its timeout");
      expect(seen).toBe(true);
      expect(await waitFor(() => running(marker).length === 0, 10_000)).toBe(true);
    } finally {
      clearInterval(watching);
      for (const pid of running(marker)) process.kill(pid, "SIGKILL");
    }
  }, 120_000);

  test("the agent asking the verdict API itself is refused (403) and recorded; it cannot read the warden's proof", async () => {
    const body = JSON.stringify({ command: "rm", path: "/usr/bin/rm", argv: ["rm", "-rf", "/"], cwd: "/", env: {}, paths: ["/"], tty: false, uid: NOBODY });
    const r = await agent(
      `curl -s -o /dev/null -w 'status=%{http_code}\n' -H 'content-type: application/json' -d '${body}' https://clawpatrol.internal/gate/commands; ` +
        `curl -s -o /dev/null -w 'kill=%{http_code}\n' https://clawpatrol.internal/gate/kill; head -c 64 /proc/1/environ; echo environ=$?`,
    );
    expect(r.out).toContain("status=403");
    expect(r.out).toContain("kill=403");
    expect(r.out).toContain("environ=1");
    expect(r.out + r.err).not.toContain("cpd_");
    expect(await waitFor(() => execEvents().some((e) => e.summary === "rm -rf /" && e.reason.includes("without the warden's proof")), 10_000)).toBe(true);
  }, 120_000);

  test("sandbox = ghost: only the workspace is writable, $HOME is an empty throwaway, files keep the agent's ownership", async () => {
    const ws = victim("ghost-ws");
    const outside = path.join(work, `ghost-outside-${process.pid}`);
    const inner = `echo in > inside; echo inside=$?; echo out > ${outside}; echo outside=$?; echo h > "$HOME/ghost-home-file"; echo home=$?`;
    const r = await agent(`cd ${ws} && bash -c '${inner}' ghost-test; echo g=$?`);
    expect(r.out).toContain("inside=0");
    expect(r.out).toMatch(/outside=[1-9]/);
    expect(r.out).toContain("home=0");
    expect(r.out).toContain("g=0");
    expect(r.err).toContain("Read-only file system");
    expect(Bun.spawnSync(["stat", "-c", "%u", path.join(ws, "inside")]).stdout.toString().trim()).toBe(String(NOBODY));
    expect(existsSync(outside)).toBe(false);
    expect(existsSync(path.join(home, "ghost-home-file"))).toBe(false);
    expect(existsSync(path.join(ws, "precious"))).toBe(true);
  }, 120_000);

  /** The agent on a terminal: `script` gives it a pty; the test types into it. */
  const onTerminal = (command: string) => {
    const runtime = `${home}/.run`;
    const proc = Bun.spawn(
      ["ip", "netns", "exec", dev, "setpriv", `--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", "--", "env", "-u", "XDG_CONFIG_HOME", `XDG_RUNTIME_DIR=${runtime}`, `HOME=${home}`, "SHELL=/bin/sh", bin, "run", "--gate", GATE, "--", "script", "-q", "-e", "-c", command, "/dev/null"],
      { stdin: "pipe", stdout: "pipe", stderr: "pipe" },
    );
    let out = "";
    let err = "";
    const reading = Promise.all([
      (async () => {
        for await (const c of proc.stdout as unknown as AsyncIterable<Uint8Array>) out += new TextDecoder().decode(c);
      })(),
      (async () => {
        for await (const c of proc.stderr as unknown as AsyncIterable<Uint8Array>) err += new TextDecoder().decode(c);
      })(),
    ]);
    const timer = setTimeout(() => proc.kill("SIGKILL"), 90_000);
    return {
      type: (text: string) => {
        proc.stdin.write(text);
        proc.stdin.flush();
      },
      output: () => out,
      errors: () => err,
      kill: () => proc.kill("SIGKILL"),
      done: async () => {
        const code = await proc.exited;
        clearTimeout(timer);
        await reading;
        return { code, out };
      },
    };
  };

  test("a terminal: bc reads typed input on a pty of its own; the window size follows", async () => {
    const term = onTerminal(`python3 -c "import fcntl, struct, termios; fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack('HHHH', 41, 101, 0, 0))"; stty size; bc -q`);
    expect(await waitFor(() => term.output().includes("41 101"), 60_000)).toBe(true);
    // Input typed before bc's pty is up may be flushed when the terminal goes raw: type until bc answers.
    let typed = 0;
    expect(
      await waitFor(() => {
        if (term.output().includes("42")) return true;
        if (Date.now() - typed > 2_000) {
          typed = Date.now();
          term.type("6*7\n");
        }
        return false;
      }, 60_000),
    ).toBe(true);
    term.type("quit\n");
    const r = await term.done();
    expect(r.code).toBe(0);
    expect(await waitFor(() => execEvents().some((e) => e.summary === "bc -q" && e.action?.tty === true), 10_000)).toBe(true);
  }, 120_000);

  test("a terminal: Ctrl-C ends the gated command with SIGINT (status 130) and the agent goes on", async () => {
    const term = onTerminal(`cat; echo cat=$?`);
    term.type("hello-pty\n");
    expect(await waitFor(() => term.output().split("hello-pty").length >= 3, 60_000)).toBe(true);
    term.type("\x03");
    expect(await waitFor(() => term.output().includes("cat=130"), 30_000)).toBe(true);
    await term.done();
  }, 120_000);

  test("a terminal: Ctrl-C through two nested ptys (a gated shell running a gated cat) ends only the innermost command", async () => {
    // bash gets a pty of its own from the warden, and cat (gated too) another
    // one inside it: ^C must reach cat alone, and bash go on.
    const stdinFile = path.join(work, `ctrlc-${process.pid}-${Date.now()}`);
    writeFileSync(stdinFile, "");
    chmodSync(stdinFile, 0o644);
    const runningAs = (pattern: string) => () => Bun.spawnSync(["pgrep", "-f", pattern], { stdout: "pipe" }).stdout.toString().trim() !== "";
    const interrupt = async (command: string, started: () => boolean): Promise<string> => {
      const term = onTerminal(command);
      try {
        // Typed only once the inner command runs: every pty on the way is set up (and raw where it relays).
        expect(await waitFor(started, 60_000)).toBe(true);
        term.type("hello-pty\n");
        expect(await waitFor(() => term.output().split("hello-pty").length >= 2, 60_000)).toBe(true);
        term.type("\x03");
        expect(await waitFor(() => term.output().includes("outer="), 30_000)).toBe(true);
        await term.done();
        return term.output();
      } finally {
        term.kill();
      }
    };
    // The real cat (the warden runs it by its absolute path), on the second pty.
    const gated = await interrupt(`bash -c 'cat - ${stdinFile}; echo inner=$?'; echo outer=$?`, runningAs(`^/\\S*/cat - ${stdinFile}$`));
    expect(gated).toContain("inner=130");
    expect(gated).toContain("outer=0");
    // An ungated child shares bash's pty and process group (bash -c has no job
    // control): ^C reaches both and bash dies of it, exactly as on a plain
    // terminal. inner= would have been printed before outer=.
    const ungated = await interrupt(`bash -c 'head -n 100 - ${stdinFile}; echo inner=$?'; echo outer=$?`, runningAs(`(^|/)head -n 100 - ${stdinFile}$`));
    expect(ungated).toContain("outer=130");
    expect(ungated).not.toContain("inner=");
  }, 120_000);

  test("a terminal: a SIGINT sent to a gated command's shim reaches its pty's foreground group, not script (which would end the session)", async () => {
    const stdinFile = path.join(work, `sigint-${process.pid}-${Date.now()}`);
    const go = `${stdinFile}.go`;
    writeFileSync(stdinFile, "");
    chmodSync(stdinFile, 0o644);
    // bash traps SIGINT (so it goes on), head (not gated, bash's pty and group) dies of it.
    const term = onTerminal(
      `bash -c 'trap "echo caught-int" INT; head -n 100 - ${stdinFile}; echo inner=$?' </dev/tty & P=$!; ` +
        `while [ ! -e ${go} ]; do sleep 0.1; done; kill -INT $P; wait $P; echo outer=$?`,
    );
    try {
      expect(await waitFor(() => Bun.spawnSync(["pgrep", "-f", `(^|/)head -n 100 - ${stdinFile}$`], { stdout: "pipe" }).stdout.toString().trim() !== "", 60_000)).toBe(true);
      writeFileSync(go, "");
      expect(await waitFor(() => term.output().includes("outer="), 30_000)).toBe(true);
      await term.done();
      expect(term.output()).toContain("caught-int");
      expect(term.output()).toContain("inner=130");
      expect(term.output()).toContain("outer=0");
    } finally {
      term.kill();
    }
  }, 120_000);

  test("the kill switch (devices kill): the run ends, its gated command killed and recorded; commands denied until released", async () => {
    const cli = async (...args: string[]) => {
      const p = Bun.spawn(["./node_modules/.bin/bun", "app/main.ts", ...args, "--config", t.configPath], { stdout: "pipe", stderr: "pipe" });
      const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
      return { out, err, code };
    };
    // The operator API refuses it without credentials.
    expect((await fetch(`${api.url}/api/kill`, { method: "POST", body: "{}" })).status).toBe(401);
    const marker = `killswitch-${process.pid}-${Date.now()}`;
    let started = false;
    const running_ = agent(`bash -c "python3 -c 'import time; time.sleep(600)' ${marker}"; echo after=$?`);
    try {
      expect(await waitFor(() => (started = running(marker).length > 0), 60_000)).toBe(true);
      const t0 = performance.now();
      const k = await cli("devices", "kill", "gate-laptop", "--reason", "runaway");
      expect(k.code).toBe(0);
      const t1 = performance.now();
      const r = await running_;
      const t2 = performance.now();
      console.log(`kill switch: the run ended ${Math.round(t2 - t1)} ms after \`devices kill\` returned (${Math.round(t2 - t0)} ms after it started)`);
      expect(r.code).toBe(137);
      expect(r.out).not.toContain("after=");
      expect(r.err).toContain("the kill switch is on for device gate-laptop (by cli:");
      expect(r.err).toContain(": runaway); ending this run");
      expect(await waitFor(() => running(marker).length === 0, 10_000)).toBe(true);
      expect(await waitFor(() => execEvents().some((e) => e.method === "KILL" && e.summary === "kill switch on for gate-laptop"), 10_000)).toBe(true);
      expect(await waitFor(() => execEvents().some((e) => e.summary?.includes(marker) && e.action?.killed === true), 10_000)).toBe(true);
      // Still on: a new run's gated command never runs.
      const again = await agent(`ls ${work}; echo ls=$?`);
      expect(again.out).not.toContain("ls=0");
      expect((await cli("devices", "killed")).out).toContain("gate-laptop");
    } finally {
      await cli("devices", "release", "gate-laptop");
      for (const pid of running(marker)) process.kill(pid, "SIGKILL");
    }
    const after = await agent(`ls ${work}; echo ls=$?`);
    expect(after.out).toContain("ls=0");
    expect(started).toBe(true);
  }, 180_000);

  test("the kill switch survives a gateway restart: the device is still stopped until released", async () => {
    const cli = async (...args: string[]) => {
      const p = Bun.spawn(["./node_modules/.bin/bun", "app/main.ts", ...args, "--config", t.configPath], { stdout: "pipe", stderr: "pipe" });
      const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
      return { out, err, code };
    };
    expect((await cli("devices", "kill", "gate-laptop", "--reason", "kept across restarts")).code).toBe(0);
    try {
      // Restart on the same state directory (the API forwarder follows t.gw).
      await t.gw.close();
      t.gw = await startGateway({ configPath: t.configPath, env: {}, stderrEvents: false });
      t.gw.bus.subscribe((e) => t.events.push(e));
      expect((await cli("devices", "killed")).out).toContain("gate-laptop");
      const r = await agent(`ls ${work}; echo ls=$?`);
      expect(r.out).not.toContain("ls=0");
      expect(r.err).toContain("the kill switch is on for device gate-laptop (by cli:");
      expect(r.err).toContain(": kept across restarts)");
    } finally {
      await cli("devices", "release", "gate-laptop");
    }
    const after = await agent(`ls ${work}; echo ls=$?`);
    expect(after.out).toContain("ls=0");
  }, 180_000);
});
