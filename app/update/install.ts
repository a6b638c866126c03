// Installing a verified bundle side by side and switching to it:
//   ROOT/versions/<version>/   one tree per version (app/, config/, node_modules, VERSION)
//   ROOT/current -> versions/<version>   what the units run (one symlink, swapped by rename)
// 1. unpack the payload into a temporary directory under versions/, check it
//    holds app/main.ts, rename it to versions/<version>
// 2. point `current` at it (a new symlink renamed over the old: atomic)
// 3. restart the roles, then wait for them to be healthy
// 4. not healthy within the deadline: point `current` back, restart again,
//    and say so (the new tree stays for inspection)
// 5. keep the running and the previous version, and at most KEEP in all
// The restart and health checks are passed in: systemd and the control
// socket on the appliance, child processes in tests.
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { BundleError } from "./bundle.ts";

const KEEP = 3;

export interface InstallHooks {
  restart(): Promise<void>;
  /** Resolves true once the roles answer (the caller bounds the wait). */
  healthy(): Promise<boolean>;
  log?(line: string): void;
}

export type InstallResult =
  | { ok: true; version: string; previous: string | undefined }
  | { ok: false; rolledBack: true; version: string; previous: string | undefined; reason: string };

export function currentVersion(root: string): string | undefined {
  try {
    return path.basename(readlinkSync(path.join(root, "current")));
  } catch {
    return undefined;
  }
}

function pointCurrentAt(root: string, version: string): void {
  const tmp = path.join(root, `.current.${randomBytes(4).toString("hex")}`);
  symlinkSync(path.join("versions", version), tmp);
  renameSync(tmp, path.join(root, "current"));
}

async function unpack(payload: Buffer, into: string): Promise<void> {
  mkdirSync(into, { recursive: true, mode: 0o755 });
  const tarball = path.join(into, ".payload.tar.gz");
  writeFileSync(tarball, payload);
  // --no-same-owner: the tree belongs to whoever installs it; no absolute or .. paths (GNU tar refuses them by default).
  const proc = Bun.spawn(["tar", "-xzf", tarball, "-C", into, "--no-same-owner"], { stdout: "ignore", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill(), 120_000);
  const [err, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  rmSync(tarball, { force: true });
  if (code !== 0) throw new BundleError(`the bundle's payload does not unpack: ${err.trim().split("\n")[0] ?? `tar exited ${code}`}`);
  // The tar's "." carries the packer's mode (mkdtemp makes it 0700): the units' user must enter the tree.
  chmodSync(into, 0o755);
  if (!existsSync(path.join(into, "app", "main.ts"))) throw new BundleError("the bundle holds no app/main.ts");
}

/** Keeps the running and the previous version, and the newest others up to KEEP in all. */
function prune(root: string, keep: readonly (string | undefined)[]): void {
  const dir = path.join(root, "versions");
  const pinned = new Set(keep.filter((v): v is string => v !== undefined));
  const others = readdirSync(dir)
    .filter((n) => !n.startsWith(".") && !pinned.has(n))
    .map((n) => ({ n, t: lstatSync(path.join(dir, n)).mtimeMs }))
    .sort((a, b) => b.t - a.t);
  for (const v of others.slice(Math.max(0, KEEP - pinned.size))) rmSync(path.join(dir, v.n), { recursive: true, force: true });
}

export async function installBundle(root: string, version: string, payload: Buffer, hooks: InstallHooks): Promise<InstallResult> {
  const log = hooks.log ?? (() => {});
  const versions = path.join(root, "versions");
  mkdirSync(versions, { recursive: true, mode: 0o755 });
  const previous = currentVersion(root);
  if (previous === version) throw new BundleError(`version ${version} is already the running one`);
  const staging = path.join(versions, `.incoming-${randomBytes(4).toString("hex")}`);
  try {
    await unpack(payload, staging);
    writeFileSync(path.join(staging, "VERSION"), `${version}\n`);
    const target = path.join(versions, version);
    rmSync(target, { recursive: true, force: true });
    renameSync(staging, target);
  } catch (e) {
    rmSync(staging, { recursive: true, force: true });
    throw e;
  }
  log(`installed ${version} beside ${previous ?? "nothing"}; switching`);
  pointCurrentAt(root, version);
  await hooks.restart();
  if (await hooks.healthy()) {
    prune(root, [version, previous]);
    log(`${version} is running`);
    return { ok: true, version, previous };
  }
  if (previous === undefined) {
    return { ok: false, rolledBack: true, version, previous, reason: `${version} did not become healthy, and there is no previous version to go back to` };
  }
  log(`${version} did not become healthy; rolling back to ${previous}`);
  pointCurrentAt(root, previous);
  await hooks.restart();
  const back = await hooks.healthy();
  return {
    ok: false,
    rolledBack: true,
    version,
    previous,
    reason: back ? `${version} did not become healthy; ${previous} runs again` : `${version} did not become healthy, and ${previous} did not come back either`,
  };
}
