// A real OpenSSH sshd (Debian's 9.2) for the SSH endpoint's tests, as root:
// its own config, host key and authorized_keys in a temp dir, on a free
// port; two local accounts made for the run (useradd) and removed at stop:
//   - a key-only account (its authorized key is the credential the gateway holds),
//     home with a bare git repository (one commit on main);
//   - a password-only account.
// X11 forwarding is on (sshd runs xauth for the session's DISPLAY).
// `rotateHostKey()` restarts sshd with a new host key (the "changed upstream
// key" case).
import { chmodSync, chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Subprocess } from "bun";
import { waitFor } from "../support/netns.ts";

export interface TestSshd {
  host: string;
  port: number;
  dir: string;
  keyUser: string;
  /** The key-only account's private key (OpenSSH format), and where it is on disk. */
  privateKey: string;
  privateKeyPath: string;
  passwordUser: string;
  password: string;
  /** Absolute path of the bare repository in the key account's home. */
  repo: string;
  /** `ssh-ed25519 AAAA...` of the current host key. */
  hostKeyLine(): string;
  /** Restart with a freshly made host key. */
  rotateHostKey(): Promise<void>;
  stop(): Promise<void>;
}

function run(cmd: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): string {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe", ...(opts.cwd ? { cwd: opts.cwd } : {}), env: { ...process.env, ...opts.env } });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed (${r.exitCode}): ${r.stderr.toString()}`);
  return r.stdout.toString();
}

async function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, host, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export async function startSshd(opts: { listen?: string; tag: string }): Promise<TestSshd> {
  const host = opts.listen ?? "127.0.0.1";
  const dir = mkdtempSync(path.join(tmpdir(), "clawpatrol-sshd-"));
  chmodSync(dir, 0o755);
  const port = await freePort(host);
  const keyUser = `cpk${opts.tag}`;
  const passwordUser = `cpp${opts.tag}`;
  const password = `real-Ssh-pw-${Math.random().toString(36).slice(2, 10)}`;
  for (const u of [keyUser, passwordUser]) {
    Bun.spawnSync(["userdel", "-r", u], { stderr: "ignore", stdout: "ignore" });
    run(["useradd", "-m", "-s", "/bin/bash", u]);
  }
  const pw = Bun.spawnSync(["chpasswd"], { stdin: new TextEncoder().encode(`${passwordUser}:${password}\n`), stderr: "pipe" });
  if (pw.exitCode !== 0) throw new Error(`chpasswd failed: ${pw.stderr.toString()}`);
  // The key account has no usable password: only its key gets in.
  run(["usermod", "-p", "*", keyUser]);

  const privateKeyPath = path.join(dir, "upstream_id_ed25519");
  run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "clawpatrol-test-real-key", "-f", privateKeyPath]);
  writeFileSync(path.join(dir, `authorized_keys_${keyUser}`), readFileSync(`${privateKeyPath}.pub`));

  // A bare repository with one commit, owned by the key account.
  const home = `/home/${keyUser}`;
  const repo = path.join(home, "repo.git");
  const work = path.join(dir, "seed");
  const gitEnv = { GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@t", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@t", HOME: dir };
  run(["git", "init", "-q", "--bare", "-b", "main", repo]);
  mkdirSync(work);
  run(["git", "init", "-q", "-b", "main"], { cwd: work, env: gitEnv });
  writeFileSync(path.join(work, "README"), "hello from the upstream repository\n");
  run(["git", "add", "README"], { cwd: work, env: gitEnv });
  run(["git", "commit", "-q", "-m", "first"], { cwd: work, env: gitEnv });
  run(["git", "push", "-q", repo, "main"], { cwd: work, env: gitEnv });
  run(["chown", "-R", `${keyUser}:${keyUser}`, repo]);

  mkdirSync("/run/sshd", { recursive: true });
  const hostKey = path.join(dir, "ssh_host_ed25519_key");
  const newHostKey = () => {
    rmSync(hostKey, { force: true });
    rmSync(`${hostKey}.pub`, { force: true });
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey]);
  };
  newHostKey();
  const config = path.join(dir, "sshd_config");
  writeFileSync(
    config,
    `ListenAddress ${host}:${port}
HostKey ${hostKey}
PidFile ${dir}/sshd.pid
AuthorizedKeysFile ${dir}/authorized_keys_%u
StrictModes no
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin no
AllowUsers ${keyUser} ${passwordUser}
AllowTcpForwarding yes
X11Forwarding yes
AcceptEnv LANG LC_* CLAWPATROL_TEST_*
Subsystem sftp internal-sftp
LogLevel VERBOSE
`,
  );
  chownSync(dir, 0, 0);

  let proc: Subprocess | undefined;
  const start = async () => {
    proc = Bun.spawn(["/usr/sbin/sshd", "-D", "-e", "-f", config], { stdout: "ignore", stderr: Bun.file(path.join(dir, "sshd.log")) });
    const up = await waitFor(async () => {
      const r = Bun.spawnSync(["ssh-keyscan", "-T", "2", "-p", String(port), host], { stdout: "pipe", stderr: "ignore" });
      return r.stdout.toString().includes("ssh-ed25519");
    }, 15_000, 100);
    if (!up) throw new Error(`sshd did not come up: ${readFileSync(path.join(dir, "sshd.log"), "utf8")}`);
  };
  const stopProc = async () => {
    if (!proc) return;
    proc.kill("SIGTERM");
    await proc.exited;
    proc = undefined;
  };
  await start();

  return {
    host,
    port,
    dir,
    keyUser,
    privateKey: readFileSync(privateKeyPath, "utf8"),
    privateKeyPath,
    passwordUser,
    password,
    repo,
    hostKeyLine: () => readFileSync(`${hostKey}.pub`, "utf8").trim().split(/\s+/).slice(0, 2).join(" "),
    async rotateHostKey() {
      await stopProc();
      newHostKey();
      await start();
    },
    async stop() {
      await stopProc();
      for (const u of [keyUser, passwordUser]) Bun.spawnSync(["userdel", "-r", u], { stderr: "ignore", stdout: "ignore" });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
