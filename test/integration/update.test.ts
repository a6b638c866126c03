// Updates outside the image: bundles made from this checkout's app (signed
// with a key made here), installed side by side under a temporary root, the
// real gateway role run from ROOT/current as the unit would, its control
// socket's /health as the health check. A good bundle with another version
// string switches and runs; a damaged or foreign-signed one is refused
// before anything is unpacked; a broken one (its main.ts exits) does not
// come up, and the previous version runs again by itself.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, existsSync, mkdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Subprocess } from "bun";
import { tempDir } from "./support/gateway.ts";
import { newSigningKey, openBundle, packBundle, BundleError } from "../../app/update/bundle.ts";
import { currentVersion, installBundle, type InstallHooks } from "../../app/update/install.ts";
import { controlFetch } from "../../app/control/client.ts";

const REPO = path.resolve(import.meta.dir, "../..");
const BUN = path.join(REPO, "node_modules/.bin/bun");

let work: string;
let root: string;
let configPath: string;
let socket: string;
let child: Subprocess | undefined;
const signer = newSigningKey();

/** A payload like `make bundle`'s: app/, config/, package.json; node_modules a link to this checkout's (the real bundle carries its own). */
async function payload(version: string, breakIt = false): Promise<Buffer> {
  const tree = path.join(work, `tree-${version}`);
  rmSync(tree, { recursive: true, force: true });
  mkdirSync(tree, { recursive: true });
  cpSync(path.join(REPO, "app"), path.join(tree, "app"), { recursive: true });
  cpSync(path.join(REPO, "config"), path.join(tree, "config"), { recursive: true });
  cpSync(path.join(REPO, "package.json"), path.join(tree, "package.json"));
  symlinkSync(path.join(REPO, "node_modules"), path.join(tree, "node_modules"));
  if (breakIt) writeFileSync(path.join(tree, "app", "main.ts"), "console.error('this build is broken'); process.exit(3);\n");
  const out = path.join(work, `payload-${version}.tar.gz`);
  const p = Bun.spawn(["tar", "-czf", out, "-C", tree, "."], { stderr: "pipe" });
  expect(await p.exited).toBe(0);
  return readFileSync(out);
}

async function stopChild(): Promise<void> {
  if (!child) return;
  child.kill("SIGTERM");
  const killer = setTimeout(() => child?.kill("SIGKILL"), 10_000);
  await child.exited;
  clearTimeout(killer);
  child = undefined;
}

/** What systemd and the control socket do on the appliance: restart the role from ROOT/current, wait for /health. */
const hooks: InstallHooks = {
  async restart() {
    await stopChild();
    rmSync(socket, { force: true });
    child = Bun.spawn([BUN, path.join(root, "current", "app", "main.ts"), "gateway", "--config", configPath], {
      cwd: path.join(root, "current"),
      stdout: "ignore",
      stderr: "ignore",
      env: { ...process.env, CLAWPATROL_STATE_DIR: "" },
    });
  },
  async healthy() {
    const end = Date.now() + 45_000;
    while (Date.now() < end) {
      if (child?.exitCode !== null && child?.exitCode !== undefined) return false;
      try {
        const r = await controlFetch(socket, "/health");
        if (r.ok && ((await r.json()) as { ok?: boolean }).ok) return true;
      } catch {
        // not up yet
      }
      await Bun.sleep(200);
    }
    return false;
  },
};

async function versionOfCurrent(): Promise<string> {
  const p = Bun.spawn([BUN, path.join(root, "current", "app", "main.ts"), "version"], { stdout: "pipe", stderr: "pipe" });
  const [out] = await Promise.all([new Response(p.stdout).text(), p.exited]);
  return out.trim();
}

beforeAll(() => {
  work = tempDir("update");
  root = path.join(work, "opt");
  configPath = path.join(work, "gateway.hcl");
  socket = path.join(work, "control.sock");
  writeFileSync(
    configPath,
    `schema_version = 1
gateway {
  state_dir        = "state"
  control_socket   = "control.sock"
  dashboard_listen = "127.0.0.1:0"
  proxy { listen = "127.0.0.1:0" }
}
defaults { verdict = "allow" }
`,
  );
});

afterAll(async () => {
  await stopChild();
  rmSync(work, { recursive: true, force: true });
});

describe("bundles", () => {
  test("a damaged payload fails its checksum, a foreign key its signature; nothing is unpacked", async () => {
    const bundle = packBundle("0.1.0+t1", await payload("0.1.0+t1"), signer.privatePem);
    expect(openBundle(bundle, [signer.publicPem]).header.version).toBe("0.1.0+t1");
    const damaged = Buffer.from(bundle);
    damaged[damaged.length - 10]! ^= 1;
    expect(() => openBundle(damaged, [signer.publicPem])).toThrow("checksum mismatch");
    const other = newSigningKey();
    expect(() => openBundle(packBundle("0.1.0+t1", Buffer.from("x"), other.privatePem), [signer.publicPem])).toThrow("bad signature");
    expect(() => openBundle(bundle, [])).toThrow(BundleError);
    // A header rewritten to another version no longer verifies.
    const relabelled = Buffer.from(bundle.toString("latin1").replace('"version":"0.1.0+t1"', '"version":"9.9.9+t1"'), "latin1");
    expect(() => openBundle(relabelled, [signer.publicPem])).toThrow("bad signature");
    expect(existsSync(root)).toBe(false);
  }, 60_000);

  test("the CLI: update keygen writes a key pair; update refuses a bundle no trusted key signed, and installs nothing", async () => {
    const keys = path.join(work, "keys");
    const cli = async (...args: string[]) => {
      const p = Bun.spawn([BUN, "app/main.ts", ...args, "--config", configPath], { cwd: REPO, stdout: "pipe", stderr: "pipe", env: { ...process.env, CLAWPATROL_STATE_DIR: "" } });
      const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
      return { code, stdout, stderr };
    };
    const made = await cli("update", "keygen", keys);
    expect({ code: made.code, stderr: made.stderr }).toMatchObject({ code: 0 });
    expect(readFileSync(path.join(keys, "update.key"), "utf8")).toContain("PRIVATE KEY");
    const bundleFile = path.join(work, "foreign.cpup");
    writeFileSync(bundleFile, packBundle("0.2.0", Buffer.from("not even a tarball"), signer.privatePem));
    const otherRoot = path.join(work, "opt-cli");
    const r = await cli("update", bundleFile, "--keys", keys, "--root", otherRoot);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("bad signature");
    expect(existsSync(otherRoot)).toBe(false);
  }, 60_000);

  test("install v1, update to v2 side by side, then a broken v3 rolls back to v2 by itself", async () => {
    const install = async (version: string, broken = false) => {
      const { header, payload: p } = openBundle(packBundle(version, await payload(version, broken), signer.privatePem), [signer.publicPem]);
      return installBundle(root, header.version, p, hooks);
    };
    expect(await install("0.1.0+t1")).toEqual({ ok: true, version: "0.1.0+t1", previous: undefined });
    expect(await versionOfCurrent()).toStartWith("clawpatrol-gateway 0.1.0+t1 ");

    expect(await install("0.1.0+t2")).toEqual({ ok: true, version: "0.1.0+t2", previous: "0.1.0+t1" });
    expect(readlinkSync(path.join(root, "current"))).toBe(path.join("versions", "0.1.0+t2"));
    expect(existsSync(path.join(root, "versions", "0.1.0+t1", "app", "main.ts"))).toBe(true);
    expect(await versionOfCurrent()).toStartWith("clawpatrol-gateway 0.1.0+t2 ");
    expect(await hooks.healthy()).toBe(true);

    const r = await install("0.1.0+t3-broken", true);
    expect(r).toMatchObject({ ok: false, rolledBack: true, version: "0.1.0+t3-broken", previous: "0.1.0+t2" });
    expect(r.ok === false && r.reason).toBe("0.1.0+t3-broken did not become healthy; 0.1.0+t2 runs again");
    expect(currentVersion(root)).toBe("0.1.0+t2");
    expect(await hooks.healthy()).toBe(true);
    expect(await versionOfCurrent()).toStartWith("clawpatrol-gateway 0.1.0+t2 ");
  }, 240_000);
});
