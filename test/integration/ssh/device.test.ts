// A device runs OpenSSH through WireGuard and reaches the ssh endpoint by
// its hostname: `clawpatrol run -- ssh agent@git-N.corp.test CMD` (the
// compiled client) in a device namespace; the name is answered by the
// gateway's DNS-VIP responder through the tunnel, the flow to the VIP
// reaches the ssh endpoint, which dials the name from the gateway host.
//
//   [dev ns]   clawpatrol run -- ssh (no key; DNS -> the gateway)
//       ==veth (underlay)==
//   [root ns]  the gateway as a process (`all`: userspace WireGuard, DNS-VIP
//              in process) in a mount namespace of its own whose /etc/hosts
//              names git-N.corp.test = UPSTREAM_IP (the appliance's view of
//              its LAN); a real OpenSSH sshd 9.2 on UPSTREAM_IP, with a
//              bare git repository; two TCP listeners on 127.0.0.1 that
//              sshd forwards to for `ssh -L` (one a rule allows, one it denies)
//
// Through `clawpatrol run` on the device: exec, scp both ways, sftp, git
// clone and a denied push, ssh -L allowed and denied; nothing the device
// received holds the real key.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { TCPSocketListener } from "bun";
import { createHash } from "node:crypto";
import { chmodSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { canRunRootTests, Topology, waitFor, type Background } from "../support/netns.ts";
import { tempDir } from "../support/gateway.ts";
import { freePort } from "../support/role-process.ts";
import { addHostAddress, buildClient, deviceNamespace, enrollDevice, killClients, ROOT, runClient, type ClientResult } from "../support/client-device.ts";
import { startSshd, type TestSshd } from "./sshd.ts";
import type { GatewayEvent } from "../../../app/events/types.ts";

setDefaultTimeout(90_000);

const N = 100 + ((process.pid + 17) % 100);
const HOST_IP = `10.230.${N}.1`;
const DEV_UNDERLAY = `10.230.${N}.2`;
const UPSTREAM_IP = `10.231.${N}.1`;
const WG_PORT = 27000 + (process.pid % 10000);
const NAME = `git-${N}.corp.test`;
const TAG = `d${process.pid % 10000}`;

describe.skipIf(!canRunRootTests)("ssh on a device through WireGuard, by the endpoint's hostname (DNS-VIP)", () => {
  const topo = new Topology("cssh");
  let dev = "";
  let sshd: TestSshd;
  let gateway: Background;
  let dir = "";
  let bin = "";
  let home = "";
  let apiUrl = "";
  /** What sshd reaches for `ssh -L`: the forward a rule allows (answers "pong:" + what it got), and one it denies (counts connections). */
  let allowedListener: TCPSocketListener | undefined;
  let deniedListener: TCPSocketListener | undefined;
  let deniedConnections = 0;
  /** Everything the device's programs printed, for the secret scan. */
  const received: string[] = [];

  beforeAll(async () => {
    allowedListener = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        data(sock, d) {
          sock.write(`pong:${Buffer.from(d).toString()}`);
          sock.end();
        },
      },
    });
    deniedListener = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open() {
          deniedConnections++;
        },
        data() {},
      },
    });
    bin = buildClient();
    ({ dev } = deviceNamespace(topo, HOST_IP, DEV_UNDERLAY));
    addHostAddress(topo, UPSTREAM_IP);
    sshd = await startSshd({ listen: UPSTREAM_IP, tag: TAG });
    dir = tempDir("ssh-device");
    chmodSync(dir, 0o755);
    const apiPort = await freePort();
    const dnsPort = await freePort();
    apiUrl = `http://${HOST_IP}:${apiPort}`;
    const hosts = path.join(dir, "hosts");
    writeFileSync(hosts, `127.0.0.1 localhost\n${UPSTREAM_IP} ${NAME}\n`);
    const config = path.join(dir, "gateway.hcl");
    writeFileSync(
      config,
      `schema_version = 1
gateway {
  state_dir = "state"
  dashboard_listen = "${HOST_IP}:${apiPort}"
  events { jsonl = "events.jsonl" }
  dns {
    listen    = "127.0.0.1:${dnsPort}"
    vip_range = "100.82.${N}.0/24"
  }
  wireguard {
    mode = "userspace"
    listen = "${HOST_IP}:${WG_PORT}"
    subnet_cidr = "10.94.${N}.0/24"
    endpoint = "${HOST_IP}:${WG_PORT}"
  }
}
defaults {
  verdict = "allow"
}
endpoint "ssh" "git" {
  hosts      = ["${NAME}:${sshd.port}"]
  credential = ssh_key.deploy
}
credential "ssh_key" "deploy" {
  user        = "${sshd.keyUser}"
  secret_file = "${sshd.privateKeyPath}"
}
profile "laptops" {
  credentials = [ssh_key.deploy]
}
rule "no-rm" {
  endpoint  = ssh.git
  condition = "ssh.verb == 'exec' && ssh.command.contains('rm -rf')"
  verdict   = "deny"
  reason    = "no recursive removal"
}
rule "no-push" {
  endpoint  = ssh.git
  condition = "ssh.verb == 'exec' && ssh.command.startsWith('git-receive-pack')"
  verdict   = "deny"
  reason    = "pushes need a review"
}
rule "forward-to-listener" {
  endpoint  = ssh.git
  condition = "ssh.verb == 'forward' && ssh.forward_host == '127.0.0.1' && ssh.forward_port == ${allowedListener.port}"
  verdict   = "allow"
}
rule "no-other-forward" {
  endpoint  = ssh.git
  condition = "ssh.verb == 'forward'"
  verdict   = "deny"
  reason    = "only the listener may be forwarded to"
}
`,
    );
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("CLAWPATROL_")) env[k] = v;
    const main = `exec ${path.join(ROOT, "node_modules/.bin/bun")} ${path.join(ROOT, "app/main.ts")} all --config ${config}`;
    gateway = topo.background(["unshare", "-m", "--propagation", "private", "sh", "-c", `mount --bind ${hosts} /etc/hosts && ${main}`], { cwd: ROOT, env });
    await gateway.waitForOutput(/clawpatrol gateway running/, 60_000);
    home = tempDir("home-ssh");
    chmodSync(home, 0o755);
    const r = await enrollDevice(path.join(dir, "state", "control.sock"), bin, dev, apiUrl, "ssh-laptop", { home, profile: "laptops", timeoutMs: 60_000 });
    expect(r.code).toBe(0);
  }, 180_000);

  afterAll(async () => {
    try {
      killClients();
      await gateway?.stop("SIGTERM", 10_000);
      if (process.env.CLAWPATROL_TEST_VERBOSE) console.error(gateway?.output());
    } finally {
      topo.destroy();
      allowedListener?.stop(true);
      deniedListener?.stop(true);
      await sshd?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
      if (home) rmSync(home, { recursive: true, force: true });
      if (bin) rmSync(path.dirname(bin), { recursive: true, force: true });
    }
  });

  const events = (): GatewayEvent[] => {
    try {
      return readFileSync(path.join(dir, "state", "events.jsonl"), "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as GatewayEvent);
    } catch {
      return [];
    }
  };

  /** OpenSSH's options as an agent without a key of its own runs it (ssh, scp, sftp and git's ssh alike). */
  const sshOptions = (strict = "accept-new", knownHosts = path.join(home, "known_hosts")) => [
    "-F", "/dev/null",
    "-o", "BatchMode=yes",
    "-o", "PubkeyAuthentication=no",
    "-o", "PasswordAuthentication=no",
    "-o", "KbdInteractiveAuthentication=no",
    "-o", `UserKnownHostsFile=${knownHosts}`,
    "-o", `StrictHostKeyChecking=${strict}`,
    "-o", "ConnectTimeout=30",
  ];

  const ssh = (cmd: string, strict = "accept-new", knownHosts = path.join(home, "known_hosts")): Promise<ClientResult> =>
    run(["ssh", ...sshOptions(strict, knownHosts), `agent@${NAME}`, cmd]);

  /** `clawpatrol run -- ARGV` on the device; what it printed is kept for the secret scan. */
  const run = async (argv: string[], env: string[] = []): Promise<ClientResult> => {
    const r = await runClient(bin, dev, ["run", "--", ...argv], { home, timeoutMs: 60_000, env });
    received.push(r.out, r.err);
    return r;
  };

  const sha256 = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");

  test("the name resolves to a VIP inside the run; an allowed exec runs upstream with its exit status", async () => {
    const r = await ssh(`getent hosts ${NAME} >/dev/null || echo no-name-upstream; id -un; exit 5`);
    expect(r.err).not.toContain("Could not resolve");
    expect(r.out).toBe(`no-name-upstream\n${sshd.keyUser}\n`);
    expect(r.code).toBe(5);
    // known_hosts recorded the name the agent used (the gateway's key for this endpoint).
    expect(readFileSync(path.join(home, "known_hosts"), "utf8")).toContain(NAME);
    const vip = await runClient(bin, dev, ["run", "--", "getent", "hosts", NAME], { home, timeoutMs: 60_000 });
    expect(vip.out).toMatch(new RegExp(`^100\\.82\\.${N}\\.\\d+\\s+${NAME.replace(/\./g, "\\.")}`));
  });

  test("a denied exec fails cleanly, naming the rule; the command never ran", async () => {
    const marker = `/home/${sshd.keyUser}/stays`;
    Bun.spawnSync(["su", sshd.keyUser, "-c", `touch ${marker}`]);
    const r = await ssh(`rm -rf ${marker}`);
    expect(r.code).not.toBe(0);
    expect(r.err).toContain('denied by rule "no-rm": no recursive removal');
    expect(Bun.spawnSync(["test", "-e", marker]).exitCode).toBe(0);
  });

  test("run trusts the gateway's SSH CA for the endpoint's hosts: StrictHostKeyChecking=yes connects with no prompt, also across re-keys", async () => {
    const userKnown = path.join(home, ".ssh", "known_hosts");
    // Every run writes the line from the manifest it reads at start.
    expect((await runClient(bin, dev, ["run", "--", "true"], { home, timeoutMs: 60_000 })).code).toBe(0);
    const line = readFileSync(userKnown, "utf8").split("\n").find((l) => l.startsWith("@cert-authority "));
    expect(line).toMatch(new RegExp(`^@cert-authority ${NAME.replace(/\./g, "\\.")},\\[${NAME.replace(/\./g, "\\.")}\\]:\\* ssh-ed25519 [A-Za-z0-9+/=]+ clawpatrol-ssh-ca$`));
    // Nothing else known about the host: only the CA line lets it in. A re-key every 64 KiB: each key exchange presents the certificate.
    const sshArgs = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "PubkeyAuthentication=no", "-o", `UserKnownHostsFile=${userKnown}`, "-o", "StrictHostKeyChecking=yes",
      "-o", "RekeyLimit=64K", "-o", "ConnectTimeout=30", "-v", `agent@${NAME}`, "'head -c 1000000 /dev/zero'"];
    const big = await runClient(bin, dev, ["run", "--", "sh", "-c", `${sshArgs.join(" ")} | wc -c`], { home, timeoutMs: 60_000 });
    expect(big.out.trim()).toBe("1000000");
    expect(big.code).toBe(0);
    expect(big.err).toContain("Server host certificate: ssh-ed25519-cert-v01@openssh.com");
    expect(big.err).toMatch(/Host '\S+' is known and matches the ED25519-CERT host certificate/);
    // At least one re-key after the first exchange, and the data went on across it.
    expect((big.err.match(/SSH2_MSG_KEXINIT received/g) ?? []).length).toBeGreaterThanOrEqual(2);
    // The certificate as ssh-keyscan fetches it: a host certificate for the endpoint's name, signed by the CA in the line.
    const scan = await runClient(bin, dev, ["run", "--", "ssh-keyscan", "-c", NAME], { home, timeoutMs: 60_000 });
    // `ssh-keyscan -c` prints the certificate as a -cert.pub file holds it (no host name).
    const certLine = scan.out.split("\n").find((l) => l.startsWith("ssh-ed25519-cert-v01@openssh.com "));
    expect(certLine).toBeDefined();
    const certFile = path.join(dir, "host-cert.pub");
    writeFileSync(certFile, certLine! + "\n");
    const shown = Bun.spawnSync(["ssh-keygen", "-L", "-f", certFile], { stdout: "pipe" }).stdout.toString();
    expect(shown).toContain("host certificate");
    expect(shown).toMatch(new RegExp(`Principals:\\s+${NAME.replace(/\./g, "\\.")}\\s`));
    const caFile = path.join(dir, "ca.pub");
    writeFileSync(caFile, line!.split(" ").slice(2, 4).join(" ") + "\n");
    const caFp = Bun.spawnSync(["ssh-keygen", "-l", "-f", caFile], { stdout: "pipe" }).stdout.toString().split(" ")[1]!;
    expect(shown).toContain(`Signing CA: ED25519 ${caFp}`);
  });

  test("scp copies up and down (the scp protocol, `scp -O`), byte for byte", async () => {
    const local = path.join(home, "payload.bin");
    writeFileSync(local, crypto.getRandomValues(new Uint8Array(1_000_000)));
    const remote = `/tmp/cp-wg-scp-${TAG}.bin`;
    const back = path.join(home, "scp-back.bin");
    try {
      const up = await run(["scp", "-O", "-q", ...sshOptions(), local, `agent@${NAME}:${remote}`]);
      expect(up.err).toBe("");
      expect(up.code).toBe(0);
      expect(sha256(remote)).toBe(sha256(local));
      const down = await run(["scp", "-O", "-q", ...sshOptions(), `agent@${NAME}:${remote}`, back]);
      expect(down.code).toBe(0);
      expect(sha256(back)).toBe(sha256(local));
    } finally {
      rmSync(remote, { force: true });
    }
    // `scp -O` runs `scp -t` up and `scp -f` down as execs, each judged.
    const scpExec = (flag: string) => events().some((e) => e.kind === "ssh" && e.method === "exec" && e.verdict === "allow" && e.path?.startsWith(`scp ${flag}`) && e.path.endsWith(remote));
    expect(await waitFor(() => scpExec("-t") && scpExec("-f"), 10_000)).toBe(true);
  });

  test("sftp in batch mode: put, ls and get through the sftp subsystem, byte for byte", async () => {
    const local = path.join(home, "sftp-payload.bin");
    writeFileSync(local, crypto.getRandomValues(new Uint8Array(700_000)));
    const remote = `/tmp/cp-wg-sftp-${TAG}.bin`;
    const back = path.join(home, "sftp-back.bin");
    const batch = path.join(home, "sftp-batch");
    writeFileSync(batch, `put ${local} ${remote}\nls -l ${remote}\nget ${remote} ${back}\n`);
    try {
      const r = await run(["sftp", "-q", "-b", batch, ...sshOptions(), `agent@${NAME}`]);
      expect(r.code).toBe(0);
      expect(sha256(remote)).toBe(sha256(local));
      expect(sha256(back)).toBe(sha256(local));
      // ls -l lists the uploaded file with its size.
      expect(r.out).toMatch(new RegExp(`\\s700000\\s.*${remote}`));
    } finally {
      rmSync(remote, { force: true });
    }
    expect(await waitFor(() => events().some((e) => e.kind === "ssh" && e.method === "subsystem" && e.path === "sftp" && e.verdict === "allow"), 10_000)).toBe(true);
  });

  test("git clone works; a push is denied by the rule on ssh.command and fails cleanly; the repository is unchanged", async () => {
    const work = path.join(home, "clone");
    const url = `ssh://agent@${NAME}${sshd.repo}`;
    const gitSsh = `GIT_SSH_COMMAND=ssh ${sshOptions().join(" ")}`;
    const clone = await run(["git", "clone", "-q", url, work], [gitSsh]);
    expect(clone.err).toBe("");
    expect(clone.code).toBe(0);
    expect(readFileSync(path.join(work, "README"), "utf8")).toBe("hello from the upstream repository\n");

    writeFileSync(path.join(work, "change"), "from the agent\n");
    const ident = { GIT_AUTHOR_NAME: "agent", GIT_AUTHOR_EMAIL: "agent@test", GIT_COMMITTER_NAME: "agent", GIT_COMMITTER_EMAIL: "agent@test", HOME: home };
    for (const argv of [["git", "add", "change"], ["git", "commit", "-q", "-m", "agent change"]]) {
      expect(Bun.spawnSync(argv, { cwd: work, env: { ...process.env, ...ident } }).exitCode).toBe(0);
    }
    const push = await run(["git", "-C", work, "push", "-q", "origin", "main"], [gitSsh]);
    expect(push.code).not.toBe(0);
    expect(push.err).toContain('denied by rule "no-push": pushes need a review');
    const log = Bun.spawnSync(["git", "--git-dir", sshd.repo, "log", "--oneline", "main"], { stdout: "pipe" }).stdout.toString();
    expect(log.trim().split("\n")).toHaveLength(1);
    expect(await waitFor(() => events().some((e) => e.kind === "ssh" && e.device === "ssh-laptop" && e.method === "exec" && e.verdict === "deny" && e.rule === "no-push" && e.path?.startsWith("git-receive-pack")), 10_000)).toBe(true);
    expect(events().some((e) => e.kind === "ssh" && e.device === "ssh-laptop" && e.method === "exec" && e.verdict === "allow" && e.path?.startsWith("git-upload-pack"))).toBe(true);
  });

  test("ssh -L: a forward a rule allows reaches the listener on the upstream side; one it denies is refused cleanly and the forwarding goes on", async () => {
    const ctl = path.join(home, `fwd-${TAG}.ctl`);
    const errFile = path.join(home, "fwd.err");
    const opts = sshOptions().join(" ");
    // Local ports inside the run's own network namespace.
    const script = [
      `trap 'ssh -o ControlPath=${ctl} -O exit agent@${NAME} 2>/dev/null' EXIT`,
      `ssh ${opts} -o ExitOnForwardFailure=yes -o ControlMaster=yes -o ControlPath=${ctl} -f -N` +
        ` -L 127.0.0.1:40001:127.0.0.1:${allowedListener!.port} -L 127.0.0.1:40002:127.0.0.1:${deniedListener!.port}` +
        ` -E ${errFile} agent@${NAME} </dev/null >/dev/null || { echo ssh-failed; exit 1; }`,
      "probe() { exec 3<>/dev/tcp/127.0.0.1/$1 || return; printf $2 >&3; timeout 20 cat <&3; }",
      'echo "allowed=$(probe 40001 one)"',
      'echo "denied=$(probe 40002 two)"',
      'echo "again=$(probe 40001 three)"',
    ].join("\n");
    const r = await run(["bash", "-c", script]);
    expect(r.out).toBe("allowed=pong:one\ndenied=\nagain=pong:three\n");
    expect(r.code).toBe(0);
    // OpenSSH was told the channel open failed (its log: -f sends stderr to /dev/null once it forks).
    // ssh2's reject() gives no reason of ours: the failure reads "connect failed", without the rule's name.
    expect(readFileSync(errFile, "utf8")).toMatch(/channel \d+: open failed/);
    const fwd = () => events().filter((e) => e.kind === "ssh" && e.method === "forward");
    const allowed = () => fwd().filter((e) => e.verdict === "allow" && e.rule === "forward-to-listener" && e.path === `127.0.0.1:${allowedListener!.port}`);
    expect(await waitFor(() => allowed().length === 2, 10_000)).toBe(true);
    expect(fwd().some((e) => e.verdict === "deny" && e.rule === "no-other-forward" && e.path === `127.0.0.1:${deniedListener!.port}`)).toBe(true);
    // Denied before the upstream was asked: sshd never connected to the denied listener.
    expect(deniedConnections).toBe(0);
  });

  test("each request is recorded for the device under the endpoint's name; the real key reaches no sink", async () => {
    expect(await waitFor(() => events().some((e) => e.kind === "ssh" && e.verdict === "deny" && e.rule === "no-rm"), 10_000)).toBe(true);
    const mine = events().filter((e) => e.kind === "ssh" && e.device === "ssh-laptop");
    expect(mine.some((e) => e.method === "exec" && e.verdict === "allow" && e.host === NAME && e.endpoint === "ssh.git")).toBe(true);
    const keyBody = sshd.privateKey.split("\n").filter((l) => l && !l.startsWith("-----"));
    const sinks = [readFileSync(path.join(dir, "state", "events.jsonl"), "utf8"), gateway.output(), received.join("\n")];
    for (const text of sinks) for (const line of keyBody) expect(text).not.toContain(line);
    const files = Bun.spawnSync(["grep", "-r", "-l", keyBody[1]!, home]);
    expect(files.stdout.toString()).toBe("");
  });
});
