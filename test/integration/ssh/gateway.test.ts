// SSH through the gateway, with real parts on both sides:
//
//   OpenSSH ssh / git / scp / sftp (no key of their own: they log in with "none")
//     -> a local port forwarded through the gateway's SOCKS5 listener as a device
//     -> the gateway: dispatch (the endpoint names the server's address), the
//        ssh endpoint (ssh2 server toward the agent, ssh2 client upstream),
//        the ssh family's rules
//     -> a real OpenSSH sshd 9.2 with a key-only and a password account, and
//        a bare git repository
//
// Allowed exec keeps its exit status; a denied exec fails cleanly and the
// connection goes on; git clone works and a push denied by a rule on
// ssh.command fails cleanly; the real private key reaches no byte the client
// received, no event and no log line; the gateway's host key is the same
// after a restart; a changed upstream host key is refused.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { TCPSocketListener } from "bun";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { canRunRootTests, waitFor } from "../support/netns.ts";
import { startTestGateway, tempDir, type TestGateway } from "../support/gateway.ts";
import { socksForward, type SocksForward } from "../support/socks-forward.ts";
import { startSshd, type TestSshd } from "./sshd.ts";
import { startGateway, type RunningGateway } from "../../../app/gateway.ts";
import { setLogWriter } from "../../../app/log.ts";
import type { GatewayEvent } from "../../../app/events/types.ts";

const TAG = String(process.pid % 100_000);
// Real sshd, git and scp on a loaded 2-core machine: give each step room.
setDefaultTimeout(60_000);

interface Run {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** A client program, run without blocking this process (the gateway under test runs in it). */
async function run(cmd: string[], env: Record<string, string> = {}, stdin?: string, cwd?: string): Promise<Run> {
  const p = Bun.spawn(cmd, { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe", stdin: stdin === undefined ? "ignore" : new TextEncoder().encode(stdin), ...(cwd ? { cwd } : {}) });
  const timer = setTimeout(() => p.kill("SIGKILL"), 60_000);
  const [stdout, stderr, exitCode] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(timer);
  return { exitCode, stdout, stderr };
}

const POLICY = (sshd: TestSshd, keyFile: string, extra = "") => `
defaults {
  verdict = "allow"
}
endpoint "ssh" "git" {
  hosts      = ["${sshd.host}:${sshd.port}"]
  credential = ssh_key.deploy
}
credential "ssh_key" "deploy" {
  user        = "${sshd.keyUser}"
  secret_file = "${keyFile}"
}
profile "agents" {
  credentials = [ssh_key.deploy]
}
rule "no-push" {
  endpoint  = ssh.git
  condition = "ssh.verb == 'exec' && ssh.command.startsWith('git-receive-pack')"
  verdict   = "deny"
  reason    = "pushes need a review"
}
rule "no-rm" {
  endpoint  = ssh.git
  condition = "ssh.verb == 'exec' && ssh.command.contains('rm -rf')"
  verdict   = "deny"
  reason    = "no recursive removal"
}
${extra}
`;

describe.skipIf(!canRunRootTests)("ssh through the gateway (SOCKS5 capture) to a real sshd", () => {
  let sshd: TestSshd;
  let t: TestGateway;
  let fwd: SocksForward;
  let token = "";
  let home = "";
  let knownHosts = "";
  /** The gateway running now (the restart test replaces the first one). */
  let current: RunningGateway | undefined;
  const logLines: string[] = [];
  /** Everything the clients received from the gateway, for the secret scan. */
  const received: string[] = [];

  beforeAll(async () => {
    setLogWriter((line) => logLines.push(line));
    sshd = await startSshd({ tag: TAG });
    home = tempDir("ssh-agent-home");
    knownHosts = path.join(home, "known_hosts");
    t = await startTestGateway(POLICY(sshd, sshd.privateKeyPath), {}, { stderrWrite: (l) => logLines.push(l) });
    current = t.gw;
    token = t.gw.devices.add("ssh-box", "agents").token;
    fwd = await socksForward(t.gw.proxies[0]!.address, { host: sshd.host, port: sshd.port }, { user: "ssh-box", password: token });
  }, 60_000);

  afterAll(async () => {
    // The accounts sshd.stop() removes must go even when the gateway's close fails.
    try {
      fwd?.close();
      await current?.close();
    } finally {
      if (t) rmSync(t.dir, { recursive: true, force: true });
      await sshd?.stop();
      setLogWriter(undefined);
      if (home) rmSync(home, { recursive: true, force: true });
    }
  });

  /** OpenSSH's ssh as an agent would run it: no key, no agent, the gateway's host key learned on first use under a fixed alias. */
  const sshOptions = (port: number, strict = "accept-new") => [
    "-F", "/dev/null",
    "-p", String(port),
    "-o", "BatchMode=yes",
    "-o", "IdentitiesOnly=yes",
    "-o", "IdentityFile=/dev/null",
    "-o", "PubkeyAuthentication=no",
    "-o", "PasswordAuthentication=no",
    "-o", "KbdInteractiveAuthentication=no",
    "-o", `UserKnownHostsFile=${knownHosts}`,
    "-o", "HostKeyAlias=git.test",
    "-o", `StrictHostKeyChecking=${strict}`,
    "-o", "ConnectTimeout=20",
  ];
  const ssh = async (args: string[], stdin?: string, port = fwd.port, strict?: string): Promise<Run> => {
    const r = await run(["ssh", ...sshOptions(port, strict), "agent@127.0.0.1", ...args], {}, stdin);
    received.push(r.stdout, r.stderr);
    return r;
  };
  const gitEnv = () => ({
    GIT_SSH_COMMAND: ["ssh", ...sshOptions(fwd.port)].join(" "),
    HOME: home,
    GIT_AUTHOR_NAME: "agent",
    GIT_AUTHOR_EMAIL: "agent@test",
    GIT_COMMITTER_NAME: "agent",
    GIT_COMMITTER_EMAIL: "agent@test",
  });

  test("an allowed exec runs upstream as the credential's user, with its exit status intact", async () => {
    const r = await ssh(["id -un; echo out; echo err >&2; exit 7"]);
    expect(r.stdout).toBe(`${sshd.keyUser}\nout\n`);
    expect(r.stderr).toContain("err");
    expect(r.exitCode).toBe(7);
  });

  test("stdin reaches the command and EOF ends it", async () => {
    const r = await ssh(["wc -c"], "x".repeat(100_000));
    expect(r.stdout.trim()).toBe("100000");
    expect(r.exitCode).toBe(0);
  });

  test("a denied exec fails cleanly, naming the rule; nothing ran upstream", async () => {
    const marker = path.join(`/home/${sshd.keyUser}`, "should-stay");
    Bun.spawnSync(["su", sshd.keyUser, "-c", `touch ${marker}`]);
    const r = await ssh([`rm -rf ${marker}`]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toContain('denied by rule "no-rm": no recursive removal');
    expect(existsSync(marker)).toBe(true);
  });

  test("a denied exec on one channel leaves the connection and its other channels going (one multiplexed connection)", async () => {
    const control = path.join(home, `cm-${TAG}`);
    const master = Bun.spawn(["ssh", ...sshOptions(fwd.port), "-o", "ControlMaster=yes", "-o", `ControlPath=${control}`, "-N", "agent@127.0.0.1"], {
      stdout: "ignore",
      stderr: "pipe",
    });
    try {
      expect(await waitFor(() => existsSync(control), 30_000, 50)).toBe(true);
      const mux = (cmd: string) => run(["ssh", ...sshOptions(fwd.port), "-o", `ControlPath=${control}`, "agent@127.0.0.1", cmd]);
      const before = await mux("echo one");
      const denied = await mux("rm -rf /tmp/nothing-here");
      const after = await mux("echo two");
      received.push(before.stdout, denied.stderr, after.stdout);
      expect(before.stdout).toBe("one\n");
      expect(denied.exitCode).not.toBe(0);
      expect(denied.stderr).toContain('rule "no-rm"');
      expect(after.stdout).toBe("two\n");
      expect(master.exitCode).toBeNull();
    } finally {
      master.kill();
      await master.exited;
    }
  });

  test("git clone works; a push is denied by the rule on ssh.command and fails cleanly", async () => {
    const work = path.join(home, "clone");
    const url = `ssh://agent@127.0.0.1:${fwd.port}${sshd.repo}`;
    const clone = await run(["git", "clone", "-q", url, work], gitEnv());
    received.push(clone.stdout, clone.stderr);
    expect(clone.stderr).toBe("");
    expect(clone.exitCode).toBe(0);
    expect(readFileSync(path.join(work, "README"), "utf8")).toBe("hello from the upstream repository\n");

    writeFileSync(path.join(work, "change"), "from the agent\n");
    await run(["git", "add", "change"], gitEnv(), undefined, work);
    await run(["git", "commit", "-q", "-m", "agent change"], gitEnv(), undefined, work);
    const push = await run(["git", "push", "-q", "origin", "main"], gitEnv(), undefined, work);
    received.push(push.stdout, push.stderr);
    expect(push.exitCode).not.toBe(0);
    expect(push.stderr).toContain('denied by rule "no-push": pushes need a review');
    // The upstream repository still has one commit.
    const log = Bun.spawnSync(["git", "--git-dir", sshd.repo, "log", "--oneline", "main"], { stdout: "pipe" }).stdout.toString();
    expect(log.trim().split("\n")).toHaveLength(1);
  });

  test("scp and sftp (the sftp subsystem) copy both ways", async () => {
    const local = path.join(home, "payload.bin");
    const payload = Buffer.alloc(300_000, 0x61);
    writeFileSync(local, payload);
    const up = await run(["scp", "-q", ...sshOptions(fwd.port).map((a) => (a === "-p" ? "-P" : a)), local, `agent@127.0.0.1:/tmp/cp-scp-${TAG}.bin`]);
    received.push(up.stdout, up.stderr);
    expect(up.exitCode).toBe(0);
    expect(readFileSync(`/tmp/cp-scp-${TAG}.bin`).equals(payload)).toBe(true);
    const back = path.join(home, "back.bin");
    const sftp = await run(["sftp", "-q", "-b", "-", ...sshOptions(fwd.port).map((a) => (a === "-p" ? "-P" : a)), "agent@127.0.0.1"], {}, `get /tmp/cp-scp-${TAG}.bin ${back}\n`);
    received.push(sftp.stdout, sftp.stderr);
    rmSync(`/tmp/cp-scp-${TAG}.bin`, { force: true });
    expect(sftp.exitCode).toBe(0);
    expect(readFileSync(back).equals(payload)).toBe(true);
  });

  test("events: one per judged request, one per channel at close with bytes and exit status", async () => {
    await ssh(["exit 3"]);
    expect(await waitFor(() => t.events.some((e) => e.kind === "ssh" && e.method === "exec-closed" && e.path === "exit 3"), 10_000)).toBe(true);
    const judged = t.events.find((e) => e.kind === "ssh" && e.method === "exec" && e.path === "exit 3")!;
    expect(judged).toMatchObject({ device: "ssh-box", endpoint: "ssh.git", verdict: "allow", credential: "ssh_key.deploy", family: "ssh" });
    const closed = t.events.find((e) => e.kind === "ssh" && e.method === "exec-closed" && e.path === "exit 3")!;
    expect(closed.action?.exit_status).toBe(3);
    const wc = t.events.find((e) => e.kind === "ssh" && e.method === "exec-closed" && e.path === "wc -c")!;
    expect(wc.bytesUp).toBe(100_000);
    expect(wc.bytesDown).toBe(7);
    const denied = t.events.find((e) => e.kind === "ssh" && e.verdict === "deny" && e.rule === "no-push");
    expect(denied?.action?.command).toStartWith("git-receive-pack");
    expect(t.events.some((e) => e.kind === "ssh" && e.method === "session" && e.verdict === "allow")).toBe(true);
  });

  test("the real private key reaches no byte the client received, no event and no log line", async () => {
    const keyBody = sshd.privateKey.split("\n").filter((l) => l && !l.startsWith("-----"));
    const sinks = [received.join("\n"), JSON.stringify(t.events), logLines.join("\n"), readFileSync(t.gw.policy().gateway.eventsJsonl!, "utf8")];
    for (const text of sinks) {
      for (const line of keyBody) expect(text).not.toContain(line);
    }
    expect(logLines.length).toBeGreaterThan(0);
  });

  test("agent forwarding is refused without a rule that allows it; the session goes on", async () => {
    // An agent socket for ssh -A to offer (ssh-agent with no keys).
    const agent = Bun.spawnSync(["ssh-agent", "-s"], { stdout: "pipe" }).stdout.toString();
    const sock = /SSH_AUTH_SOCK=([^;]+)/.exec(agent)?.[1] ?? "";
    const pid = /SSH_AGENT_PID=(\d+)/.exec(agent)?.[1] ?? "";
    try {
      const r = await run(["ssh", ...sshOptions(fwd.port), "-A", "agent@127.0.0.1", "echo still-here; test -n \"$SSH_AUTH_SOCK\" && echo has-agent"], { SSH_AUTH_SOCK: sock });
      received.push(r.stdout, r.stderr);
      expect(r.stdout).toBe("still-here\n");
      expect(await waitFor(() => t.events.some((e) => e.kind === "ssh" && e.method === "agent" && e.verdict === "deny"), 10_000)).toBe(true);
    } finally {
      if (pid) process.kill(Number(pid));
    }
  });

  test("agent forwarding a rule allows is carried: the upstream command lists the device's agent's key; the real key is not in it", async () => {
    const original = readFileSync(t.configPath, "utf8");
    writeFileSync(t.configPath, `${original}
rule "agent-ok" {
  endpoint  = ssh.git
  condition = "ssh.verb == 'agent'"
  verdict   = "allow"
}
`);
    expect(await current!.reload()).toEqual([]);
    const agent = Bun.spawnSync(["ssh-agent", "-s"], { stdout: "pipe" }).stdout.toString();
    const sock = /SSH_AUTH_SOCK=([^;]+)/.exec(agent)?.[1] ?? "";
    const pid = /SSH_AGENT_PID=(\d+)/.exec(agent)?.[1] ?? "";
    try {
      // A key of the device's own, in its agent.
      const deviceKey = path.join(home, `device_key_${TAG}`);
      Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "device-agent-key", "-f", deviceKey]);
      expect(Bun.spawnSync(["ssh-add", deviceKey], { env: { ...process.env, SSH_AUTH_SOCK: sock }, stderr: "pipe" }).exitCode).toBe(0);
      const r = await run(["ssh", ...sshOptions(fwd.port), "-A", "agent@127.0.0.1", "ssh-add -L"], { SSH_AUTH_SOCK: sock });
      received.push(r.stdout, r.stderr);
      expect(r.exitCode).toBe(0);
      expect(r.stdout).toContain("device-agent-key");
      expect(r.stdout).not.toContain("clawpatrol-test-real-key");
      expect(await waitFor(() => t.events.some((e) => e.kind === "ssh" && e.method === "agent" && e.verdict === "allow" && e.rule === "agent-ok"), 10_000)).toBe(true);
      // Without -A nothing is forwarded, rule or not.
      const none = await run(["ssh", ...sshOptions(fwd.port), "agent@127.0.0.1", "ssh-add -L; echo status=$?"], { SSH_AUTH_SOCK: sock });
      expect(none.stdout).toContain("status=2");
    } finally {
      if (pid) process.kill(Number(pid));
      writeFileSync(t.configPath, original);
      await current!.reload();
    }
  });

  /**
   * A stand-in X server on the device: a TCP listener on display `n`, with
   * the real cookie in its own XAUTHORITY; it answers "x11-ack" once the
   * remote's payload arrived and keeps every byte it got.
   */
  const fakeXServer = async () => {
    let server: TCPSocketListener | undefined;
    let display = 0;
    const got: Buffer[] = [];
    for (let n = 100 + (Number(TAG) % 700); !server && n < 1000; n++) {
      try {
        server = Bun.listen({
          hostname: "127.0.0.1",
          port: 6000 + n,
          socket: {
            data(sock, d) {
              got.push(Buffer.from(d));
              if (Buffer.concat(got).includes("x11-payload")) sock.write("x11-ack\n");
            },
          },
        });
        display = n;
      } catch {
        // taken: the next display
      }
    }
    if (!server) throw new Error("no free X display port");
    const xauthority = path.join(home, `Xauthority-${TAG}`);
    const realCookie = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("hex");
    const add = Bun.spawnSync(["xauth", "-f", xauthority, "add", `127.0.0.1:${display}`, "MIT-MAGIC-COOKIE-1", realCookie], { stderr: "pipe" });
    if (add.exitCode !== 0) throw new Error(`xauth add failed: ${add.stderr.toString()}`);
    return { env: { DISPLAY: `127.0.0.1:${display}`, XAUTHORITY: xauthority }, realCookie, received: () => Buffer.concat(got), stop: () => server!.stop(true) };
  };

  /**
   * Run on the upstream: print $DISPLAY and the cookie sshd's xauth stored,
   * then open the forwarded display, send an X11 connection setup with that
   * cookie and a payload, and print what comes back.
   */
  const X11_PROBE = [
    'echo "display=$DISPLAY"',
    '[ -n "$DISPLAY" ] || exit 0',
    "hex=$(xauth list | awk '{print $3}' | head -1)",
    'echo "cookie=$hex"',
    'n=${DISPLAY#*:}; n=${n%.*}',
    "exec 3<>/dev/tcp/127.0.0.1/$((6000+n))",
    "{ printf '\\x6c\\x00\\x0b\\x00\\x00\\x00\\x12\\x00\\x10\\x00\\x00\\x00MIT-MAGIC-COOKIE-1\\x00\\x00'; printf \"$(printf %s \"$hex\" | sed 's/../\\\\x&/g')\"; printf x11-payload; } >&3",
    "timeout 20 head -c 8 <&3",
  ].join("\n");

  test("X11 forwarding is refused without a rule that allows it: no DISPLAY, the session goes on", async () => {
    const x = await fakeXServer();
    try {
      const r = await run(["ssh", ...sshOptions(fwd.port), "-X", "-o", "ForwardX11Trusted=yes", "agent@127.0.0.1", X11_PROBE], x.env);
      received.push(r.stdout, r.stderr);
      expect(r.exitCode).toBe(0);
      expect(r.stdout).toBe("display=\n");
      expect(await waitFor(() => t.events.some((e) => e.kind === "ssh" && e.method === "x11" && e.verdict === "deny"), 10_000)).toBe(true);
    } finally {
      x.stop();
    }
  });

  test("X11 forwarding a rule allows is carried: the remote's X connection reaches the device's display and is answered", async () => {
    const original = readFileSync(t.configPath, "utf8");
    writeFileSync(t.configPath, `${original}
rule "x11-ok" {
  endpoint  = ssh.git
  condition = "ssh.verb == 'x11'"
  verdict   = "allow"
}
`);
    expect(await current!.reload()).toEqual([]);
    const x = await fakeXServer();
    try {
      const r = await run(["ssh", ...sshOptions(fwd.port), "-X", "-o", "ForwardX11Trusted=yes", "agent@127.0.0.1", X11_PROBE], x.env);
      received.push(r.stdout, r.stderr);
      expect(r.exitCode).toBe(0);
      expect(r.stdout).toMatch(/^display=localhost:\d+\.0\n/);
      // The round trip: setup and payload reached the stand-in X server through sshd, the gateway and ssh; its answer came back.
      expect(r.stdout).toContain("x11-ack");
      const atX = x.received();
      expect(atX[0]).toBe(0x6c);
      expect(atX.includes("MIT-MAGIC-COOKIE-1")).toBe(true);
      expect(atX.includes("x11-payload")).toBe(true);
      // ssh swapped its fake cookie for the display's real one: the upstream never saw the real one.
      expect(atX.includes(Buffer.from(x.realCookie, "hex"))).toBe(true);
      expect(r.stdout).toMatch(/cookie=[0-9a-f]{32}\n/);
      expect(r.stdout).not.toContain(x.realCookie);
      expect(await waitFor(() => t.events.some((e) => e.kind === "ssh" && e.method === "x11" && e.verdict === "allow" && e.rule === "x11-ok"), 10_000)).toBe(true);
      expect(await waitFor(() => t.events.some((e) => e.kind === "ssh" && e.method === "x11-closed"), 10_000)).toBe(true);
    } finally {
      x.stop();
      writeFileSync(t.configPath, original);
      await current!.reload();
    }
  });

  test("ssh -L: a direct-tcpip forward is judged and relayed by the upstream", async () => {
    // Forward to the sshd itself (as seen from the upstream): its banner comes back through two SSH hops.
    const r = await ssh(["-W", `${sshd.host}:${sshd.port}`], "");
    expect(r.stdout).toStartWith("SSH-2.0-OpenSSH");
    expect(await waitFor(() => t.events.some((e) => e.kind === "ssh" && e.method === "forward" && e.path === `${sshd.host}:${sshd.port}`), 10_000)).toBe(true);
  });

  test("the gateway's host key is the same after a restart (known_hosts stays valid)", async () => {
    const first = await ssh(["true"]);
    expect(first.exitCode).toBe(0);
    const lines = readFileSync(knownHosts, "utf8");
    await current!.close();
    current = undefined;
    const gw = await startGateway({ configPath: t.configPath, env: {}, stderrEvents: true, stderrWrite: (l) => logLines.push(l) });
    current = gw;
    gw.bus.subscribe((e) => t.events.push(e));
    fwd.close();
    // The device and its token are in the state database: the same token still works.
    fwd = await socksForward(gw.proxies[0]!.address, { host: sshd.host, port: sshd.port }, { user: "ssh-box", password: token });
    const again = await ssh(["echo same-key"], undefined, fwd.port, "yes");
    expect(again.stderr).not.toContain("REMOTE HOST IDENTIFICATION HAS CHANGED");
    expect(again.stdout).toBe("same-key\n");
    expect(readFileSync(knownHosts, "utf8")).toBe(lines);
  });

  test("a changed upstream host key is refused (trust on first use), and the agent is told why", async () => {
    await sshd.rotateHostKey();
    const r = await ssh(["echo should-not-run"]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("host key changed");
    expect(await waitFor(() => t.events.some((e) => e.kind === "ssh" && e.method === "connect" && e.verdict === "deny" && e.reason.includes("changed")), 10_000)).toBe(true);
    expect(logLines.some((l) => l.includes("ssh upstream host key refused"))).toBe(true);
  });
});

describe.skipIf(!canRunRootTests)("ssh_password and a pinned host_key", () => {
  let sshd: TestSshd;
  let t: TestGateway;
  let fwd: SocksForward;

  beforeAll(async () => {
    sshd = await startSshd({ tag: `${TAG}b` });
    const dir = tempDir("ssh-pw");
    mkdirSync(dir, { recursive: true });
    const pwFile = path.join(dir, "pw");
    writeFileSync(pwFile, `${sshd.password}\n`);
    t = await startTestGateway(`
defaults {
  verdict = "allow"
}
endpoint "ssh" "pw" {
  hosts      = ["${sshd.host}:${sshd.port}"]
  host_key   = "${sshd.hostKeyLine()}"
  credential = ssh_password.pw
}
credential "ssh_password" "pw" {
  user        = "${sshd.passwordUser}"
  secret_file = "${pwFile}"
}
profile "agents" {
  credentials = [ssh_password.pw]
}
`);
    const token = t.gw.devices.add("pw-box", "agents").token;
    fwd = await socksForward(t.gw.proxies[0]!.address, { host: sshd.host, port: sshd.port }, { user: "pw-box", password: token });
  }, 60_000);

  afterAll(async () => {
    try {
      fwd?.close();
      await t?.stop();
    } finally {
      await sshd?.stop();
    }
  });

  const ssh = (cmd: string) =>
    run(["ssh", "-F", "/dev/null", "-p", String(fwd.port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "PubkeyAuthentication=no", "agent@127.0.0.1", cmd]);

  test("the gateway logs in with the password; the agent never needs it", async () => {
    const r = await ssh("id -un");
    expect(r.stdout).toBe(`${sshd.passwordUser}\n`);
    const all = JSON.stringify(t.events) + r.stdout + r.stderr;
    expect(all).not.toContain(sshd.password);
  });

  test("a host key that does not match host_key is refused", async () => {
    await sshd.rotateHostKey();
    const r = await ssh("echo nope");
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("does not match host_key");
    const events: GatewayEvent[] = t.events.filter((e) => e.kind === "ssh" && e.method === "connect");
    expect(events.some((e) => e.verdict === "deny")).toBe(true);
  });
});
