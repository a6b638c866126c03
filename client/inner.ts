// `clawpatrol __inner -- CMD...`: the stage inside the new namespaces (see
// run.ts for the whole shape). Runs as root of its user namespace (or real
// root), as pid 1 of a new PID namespace:
//
//   1. lo up; TUN cp0 (created here, in this network namespace); address,
//      MTU, default routes v4 and v6 via cp0;
//   2. a tmpfs over the state dir holding only ca.crt, the combined bundle
//      (system CAs + gateway CA) and resolv.conf; resolv.conf bound over
//      /etc/resolv.conf, the bundle over the system bundle;
//   3. --publish: a Unix listener per published port, each connection to
//      127.0.0.1:PORT here (publish.ts), the sockets' directory then hidden
//      from the command under a tmpfs; the TUN fd to the outer stage over
//      fd 3 (SCM_RIGHTS);
//   4. the command, as the invoking uid in a nested user namespace (no
//      capability over these namespaces), with the CA variables set;
//      signals forwarded; our exit status is the command's;
//   5. if the outer stage goes away (fd 3 closes), the command is killed:
//      without the relay it has no network anyway;
//   6. the kill switch (client/gate/kill-watch.ts): when the operator stops
//      this device, gated commands are killed (and reported), the command
//      too, and this stage exits: as pid 1, every process of the run dies
//      with it.
import { spawnSync } from "node:child_process";
import { existsSync, lstatSync, readFileSync, realpathSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { isatty } from "node:tty";
import { cString, IFF_NO_PI, IFF_TUN, IFREQ_SIZE, IFREQ_UNION_OFFSET, libc, O_CLOEXEC, O_NONBLOCK, O_RDWR, sysError, TUNSETIFF } from "../app/net/tun/libc.ts";
import { INNER_ENV, type InnerConfig } from "./run.ts";
import type { Manifest } from "../app/endpoints/internal.ts";
import { serveInside } from "./publish.ts";
import { pollReadable, recvFd, sendFd } from "./sys.ts";
import { agentArgv, gateTools, GateSetupError, writeShims } from "./gate/setup.ts";
import { gateOf, readManifest } from "./gate/profile.ts";
import { sshTrustOf, trustSshCa, userKnownHosts } from "./ssh-trust.ts";
import { Warden } from "./gate/warden.ts";
import { watchKillSwitch } from "./gate/kill-watch.ts";

const CTL_FD = 3;
const RESOLVED_DIR = "/run/systemd/resolve";

/** Where distributions keep the system CA bundle (first match wins). */
export const SYSTEM_BUNDLES = [
  "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Arch, Alpine
  "/etc/pki/tls/certs/ca-bundle.crt", // Fedora, RHEL
  "/etc/ssl/ca-bundle.pem", // openSUSE
  "/etc/ssl/cert.pem", // Alpine, BSDs
];

/** Variables that point TLS clients at the combined bundle. */
export function caEnv(bundle: string, gatewayCa: string): Record<string, string> {
  return {
    SSL_CERT_FILE: bundle,
    REQUESTS_CA_BUNDLE: bundle,
    CURL_CA_BUNDLE: bundle,
    GIT_SSL_CAINFO: bundle,
    AWS_CA_BUNDLE: bundle,
    PIP_CERT: bundle,
    // Node adds these to its own roots (a bundle here would work too).
    NODE_EXTRA_CA_CERTS: gatewayCa,
  };
}

class SetupError extends Error {}

function sh(argv: string[], what: string, optional = false): boolean {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8" });
  if (r.status === 0) return true;
  const msg = `${what}: ${argv.join(" ")}: ${(r.stderr || r.stdout || String(r.error ?? "")).trim()}`;
  if (optional) return false;
  throw new SetupError(msg);
}

function openTunDevice(name: string): number {
  const L = libc();
  const fd = L.open(cString("/dev/net/tun"), O_RDWR | O_NONBLOCK | O_CLOEXEC, 0);
  if (fd < 0) throw new SetupError(`${sysError("open(/dev/net/tun)").message}: TUN is not available in this namespace`);
  const ifr = new Uint8Array(IFREQ_SIZE);
  ifr.set(new TextEncoder().encode(name), 0);
  new DataView(ifr.buffer).setUint16(IFREQ_UNION_OFFSET, IFF_TUN | IFF_NO_PI, true);
  if (L.ioctl(fd, TUNSETIFF, ifr) < 0) {
    const e = sysError(`ioctl(TUNSETIFF ${name})`);
    L.close(fd);
    throw new SetupError(`${e.message}: cannot create a TUN device in the new network namespace`);
  }
  return fd;
}

function setupNetwork(cfg: InnerConfig): number {
  sh(["ip", "link", "set", "lo", "up"], "bringing up lo");
  const fd = openTunDevice(cfg.tun);
  sh(["ip", "addr", "add", `${cfg.address}/32`, "dev", cfg.tun], "adding the device address");
  const v6 = cfg.address6 !== undefined && sh(["ip", "-6", "addr", "add", `${cfg.address6}/128`, "dev", cfg.tun, "nodad"], "adding the IPv6 address", true);
  sh(["ip", "link", "set", cfg.tun, "mtu", String(cfg.mtu), "up"], "bringing up the TUN device");
  sh(["ip", "route", "add", "default", "dev", cfg.tun], "adding the default route");
  // Without an IPv6 address, v6 connects fail at once (no source address)
  // and clients fall back to v4; with IPv6 disabled there is no v6 at all.
  sh(["ip", "-6", "route", "add", "default", "dev", cfg.tun], "adding the IPv6 default route", !v6);
  return fd;
}

function setupFiles(cfg: InnerConfig): { bundle: string; ca: string; warnings: string[] } {
  const warnings: string[] = [];
  const dir = cfg.stateDir;
  // Hide the key and the token: a fresh tmpfs over the state directory.
  sh(["mount", "-t", "tmpfs", "-o", "mode=0700,size=8m,nosuid,nodev", "clawpatrol", dir], "hiding the state directory");
  const ca = path.join(dir, "ca.crt");
  const bundle = path.join(dir, "ca-bundle.pem");
  const resolv = path.join(dir, "resolv.conf");
  const gatewayCa = cfg.caCert.endsWith("\n") ? cfg.caCert : cfg.caCert + "\n";
  writeFileSync(ca, gatewayCa, { mode: 0o644 });
  const system = SYSTEM_BUNDLES.find((f) => existsSync(f));
  let systemPem = "";
  if (system) {
    try {
      systemPem = readFileSync(system, "utf8");
    } catch {
      warnings.push(`cannot read the system CA bundle ${system}; the command trusts only the gateway CA`);
    }
  }
  if (systemPem && !systemPem.endsWith("\n")) systemPem += "\n";
  writeFileSync(bundle, systemPem + gatewayCa, { mode: 0o644 });
  // Tools that ignore the variables read the system bundle: bind ours over it.
  if (system) sh(["mount", "--bind", bundle, system], "binding the CA bundle", true) || warnings.push(`could not bind the CA bundle over ${system}`);

  const resolvText = `# written by clawpatrol run: DNS goes to the gateway\nnameserver ${cfg.dns}\n`;
  writeFileSync(resolv, resolvText, { mode: 0o644 });
  // glibc's nss-resolve asks systemd-resolved over a Unix socket, which
  // crosses network namespaces: hide the socket so lookups fall back to DNS
  // through the tunnel (and keep the stub files /etc/resolv.conf points at).
  if (existsSync(RESOLVED_DIR)) {
    if (sh(["mount", "-t", "tmpfs", "-o", "mode=0755,size=1m", "clawpatrol-resolved", RESOLVED_DIR], "hiding systemd-resolved", true)) {
      for (const f of ["stub-resolv.conf", "resolv.conf"]) writeFileSync(path.join(RESOLVED_DIR, f), resolvText, { mode: 0o644 });
    } else {
      warnings.push(`could not hide ${RESOLVED_DIR}; programs using nss-resolve may resolve names outside the tunnel`);
    }
  }
  let target = "/etc/resolv.conf";
  try {
    if (lstatSync(target).isSymbolicLink()) target = realpathSync(target);
    sh(["mount", "--bind", resolv, target], "pointing DNS at the gateway");
  } catch (e) {
    if (e instanceof SetupError) throw e;
    warnings.push(`cannot point /etc/resolv.conf at the gateway (${(e as Error).message}); DNS may not work inside`);
  }
  return { bundle, ca, warnings };
}

/**
 * The command gate (client/gate/): --gate and the profile's list; the
 * shims, the warden, and PATH with the shims first. Undefined: nothing gated.
 */
async function startGate(
  cfg: InnerConfig,
  env: Record<string, string | undefined>,
  manifest: Record<string, unknown> | undefined,
): Promise<{ warden: Warden; plan: ReturnType<typeof writeShims> } | undefined> {
  const fromProfile = manifest === undefined ? undefined : gateOf(manifest);
  if (fromProfile === undefined) process.stderr.write("clawpatrol: warning: could not read this profile's gate list from the gateway; gating only --gate\n");
  const names = [...new Set([...(cfg.gate ?? []), ...(fromProfile ?? [])])];
  if (names.length === 0) return undefined;
  if (!cfg.self) throw new GateSetupError("--gate: the shim's program is unknown");
  const plan = writeShims(cfg.stateDir, names, cfg.self, env.PATH);
  for (const m of plan.missing) process.stderr.write(`clawpatrol: warning: --gate ${m}: not installed here; the shim refuses it\n`);
  const warden = new Warden({ plan, uid: cfg.uid, gid: cfg.gid, root: cfg.root, caCert: cfg.caCert, proof: cfg.proof ?? "", self: cfg.self });
  warden.start();
  // The socket and the shims stay as they are: the agent owns the files (same uid), but not this mount.
  sh(["mount", "--bind", "-o", "ro", plan.dir, plan.dir], "making the gate's directory read-only");
  env.PATH = `${plan.binDir}:${env.PATH ?? "/usr/local/bin:/usr/bin:/bin"}`;
  return { warden, plan };
}

/** The gateway's SSH CA for its ssh endpoints' hosts in the user's known_hosts (a warning when it cannot be written). */
function trustGatewaySsh(manifest: Record<string, unknown> | undefined, home: string | undefined): void {
  const trust = manifest && sshTrustOf(manifest as Pick<Manifest, "endpoints" | "sshCa">);
  if (!trust || !home) return;
  const file = userKnownHosts(home);
  try {
    trustSshCa(file, trust.ca, trust.hosts);
  } catch (e) {
    process.stderr.write(`clawpatrol: warning: could not add the gateway's SSH CA to ${file} (${(e as Error).message}); ssh may ask about the host key\n`);
  }
}

export async function inner(argv: string[]): Promise<number> {
  const raw = process.env[INNER_ENV];
  delete process.env[INNER_ENV];
  if (!raw) {
    process.stderr.write("clawpatrol: __inner is internal to clawpatrol run\n");
    return 2;
  }
  const cfg = JSON.parse(raw) as InnerConfig;
  let files: ReturnType<typeof setupFiles>;
  try {
    const fd = setupNetwork(cfg);
    files = setupFiles(cfg);
    if (cfg.publish?.length) {
      await serveInside(cfg.publish);
      // The outer stage (host mount namespace) still reaches the sockets.
      if (cfg.publishDir && !sh(["mount", "-t", "tmpfs", "-o", "mode=0700,size=64k", "clawpatrol-publish", cfg.publishDir], "hiding the publish sockets", true)) {
        files.warnings.push(`could not hide ${cfg.publishDir} from the command`);
      }
    }
    sendFd(CTL_FD, fd, new TextEncoder().encode("tun\n"));
    // Keep our copy open (O_CLOEXEC: the command does not inherit it).
  } catch (e) {
    process.stderr.write(`clawpatrol: ${(e as Error).message}\n`);
    return 70;
  }
  for (const w of files.warnings) process.stderr.write(`clawpatrol: warning: ${w}\n`);

  const env: Record<string, string | undefined> = { ...process.env, ...caEnv(files.bundle, files.ca), CLAWPATROL_RUN: "1" };
  let cmd = cfg.root ? argv : ["unshare", "--user", `--map-user=${cfg.uid}`, `--map-group=${cfg.gid}`, "--", ...argv];
  let warden: Warden | undefined;
  try {
    const manifest = await readManifest(cfg.caCert);
    trustGatewaySsh(manifest, env.HOME);
    const gated = await startGate(cfg, env, manifest);
    if (gated) {
      warden = gated.warden;
      cmd = agentArgv(gated.plan, gateTools(), cmd);
    }
  } catch (e) {
    process.stderr.write(`clawpatrol: ${(e as Error).message}\n`);
    return 70;
  }
  let child: ReturnType<typeof Bun.spawn>;
  try {
    child = Bun.spawn(cmd, { stdio: ["inherit", "inherit", "inherit"], env });
  } catch (e) {
    process.stderr.write(`clawpatrol: cannot run ${argv[0]}: ${(e as Error).message}\n`);
    return 127;
  }

  // As pid 1 we only get the signals we handle: forward them.
  const forward = (sig: NodeJS.Signals) => () => {
    try {
      child.kill(sig);
    } catch {
      /* gone */
    }
  };
  for (const s of ["SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"] as NodeJS.Signals[]) process.on(s, forward(s));
  process.on("SIGINT", isatty(0) ? () => {} : forward("SIGINT"));

  // The outer stage holds the other end of fd 3: EOF means it is gone.
  const watch = setInterval(() => {
    if (!pollReadable(CTL_FD, 0)) return;
    const r = recvFd(CTL_FD);
    if (r.kind === "eof") {
      clearInterval(watch);
      process.stderr.write("clawpatrol: the tunnel process went away; stopping the command\n");
      try {
        child.kill("SIGKILL");
      } catch {
        /* gone */
      }
    }
  }, 250);
  // The kill switch: gated commands first (their reports go out), then the command.
  let killedBy: string | undefined;
  const killWatch = cfg.proof
    ? watchKillSwitch({
        caCert: cfg.caCert,
        proof: cfg.proof,
        onKill: (line) => {
          killedBy = line;
          process.stderr.write(`clawpatrol: ${line}; ending this run\n`);
          void (warden?.killAll(line) ?? Promise.resolve()).finally(() => {
            try {
              child.kill("SIGKILL");
            } catch {
              /* gone */
            }
          });
        },
      })
    : undefined;
  const code = await child.exited;
  clearInterval(watch);
  killWatch?.stop();
  warden?.stop();
  if (killedBy) return 137;
  if (child.signalCode) return 128 + (os.constants.signals[child.signalCode as NodeJS.Signals] ?? 0);
  return code;
}
