// `clawpatrol-gateway update BUNDLE|URL [--root DIR] [--keys DIR] [--wait S]` and
// `update keygen DIR`: the appliance's side of bundle updates. The bundle is
// read (or fetched over https), verified against every `*.pub` in the keys
// directory, installed beside the running version under ROOT, and switched
// to; the three units are restarted with systemctl and must answer within
// HEALTH_MS (`systemctl is-active` and the control socket's /health), else
// the previous version is switched back and restarted.
import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { controlFetch } from "../control/client.ts";
import { BundleError, newSigningKey, openBundle } from "./bundle.ts";
import { installBundle, type InstallHooks } from "./install.ts";

export const DEFAULT_ROOT = "/opt/clawpatrol";
export const DEFAULT_KEYS = "/etc/clawpatrol/update-keys";
const UNITS = ["clawpatrol-gateway", "clawpatrol-dnsvip", "clawpatrol-dashboard"];
const HEALTH_MS = 90_000;
const MAX_BUNDLE = 512 * 1024 * 1024;

async function run(argv: string[], timeoutMs = 60_000): Promise<{ code: number; out: string }> {
  const p = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => p.kill(), timeoutMs);
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(timer);
  return { code, out: `${out}${err}`.trim() };
}

/** Restart with systemd; healthy when every unit is active and the gateway answers on its control socket. */
export function systemdHooks(controlSocket: string, log: (line: string) => void, healthMs = HEALTH_MS): InstallHooks {
  return {
    async restart() {
      // A version that crashed at start has run into the units' start limit
      // (StartLimitBurst): systemd would refuse the restart back to the good one.
      await run(["systemctl", "reset-failed", ...UNITS], 30_000);
      const r = await run(["systemctl", "restart", ...UNITS], 120_000);
      if (r.code !== 0) log(`systemctl restart: ${r.out}`);
    },
    async healthy() {
      const end = Date.now() + healthMs;
      while (Date.now() < end) {
        const active = await run(["systemctl", "is-active", ...UNITS], 10_000);
        if (active.code === 0) {
          try {
            const res = await controlFetch(controlSocket, "/health");
            if (res.ok) return true;
          } catch {
            // not up yet
          }
        } else if (/failed/.test(active.out)) return false;
        await Bun.sleep(1000);
      }
      return false;
    },
    log,
  };
}

async function readBundle(source: string): Promise<Buffer> {
  if (/^https:\/\//.test(source)) {
    const res = await fetch(source, { signal: AbortSignal.timeout(300_000) });
    if (!res.ok) throw new BundleError(`${source}: HTTP ${res.status}`);
    const buf = Buffer.from(await res.arrayBuffer());
    if (buf.length > MAX_BUNDLE) throw new BundleError("the bundle is larger than 512 MiB");
    return buf;
  }
  if (/^[a-z]+:\/\//i.test(source)) throw new BundleError("a bundle URL must be https://");
  return readFileSync(source);
}

function trustedKeys(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith(".pub")).sort();
  } catch {
    throw new BundleError(`no update keys directory at ${dir} (put the signer's .pub there, or --keys DIR)`);
  }
  return names.map((n) => readFileSync(path.join(dir, n), "utf8"));
}

export async function updateCommand(rest: string[], flags: Map<string, string>, controlSocket: string, out: (line: string) => void): Promise<number> {
  if (rest[0] === "keygen") {
    const dir = rest[1];
    if (!dir) throw new BundleError("update keygen DIR");
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const k = newSigningKey();
    writeFileSync(path.join(dir, "update.key"), k.privatePem, { mode: 0o600, flag: "wx" });
    chmodSync(path.join(dir, "update.key"), 0o600);
    writeFileSync(path.join(dir, "update.pub"), k.publicPem, { flag: "wx" });
    out(`signing key ${k.keyId}: ${path.join(dir, "update.key")} (keep it off the appliance); trust it by copying update.pub into ${DEFAULT_KEYS}/`);
    return 0;
  }
  const source = rest[0];
  if (!source) throw new BundleError("update BUNDLE|URL [--root DIR] [--keys DIR] [--wait SECONDS]");
  const { header, payload } = openBundle(await readBundle(source), trustedKeys(flags.get("keys") ?? DEFAULT_KEYS));
  out(`bundle ${header.version}: checksum and signature (key ${header.keyId}) verified`);
  // --wait SECONDS: how long the roles get to become healthy (slow machines; default 90).
  const wait = flags.get("wait");
  if (wait !== undefined && !/^[1-9][0-9]{0,4}$/.test(wait)) throw new BundleError("--wait takes seconds (1-99999)");
  const healthMs = wait !== undefined ? Number(wait) * 1000 : HEALTH_MS;
  const r = await installBundle(flags.get("root") ?? DEFAULT_ROOT, header.version, payload, systemdHooks(controlSocket, out, healthMs));
  if (r.ok) {
    out(`updated to ${r.version} (from ${r.previous ?? "none"})`);
    return 0;
  }
  out(`update failed, rolled back: ${r.reason}`);
  return 1;
}
