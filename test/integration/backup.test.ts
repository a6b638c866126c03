// `clawpatrol-gateway backup` and `restore` as an operator runs them (child
// processes), over the state a real gateway made: its CA, a device, an
// operator and a secret. A backup taken while the gateway runs is restored
// onto a fresh state directory (one that already has a CA of its own, as a
// freshly booted appliance does) and brings back the same CA fingerprint,
// device, operator and secret. Without --include-key the archive holds no
// key or secret in clear and needs the master key to restore; with it, the
// archive is encrypted and a wrong passphrase is refused. A running
// gateway's state is never restored over. Also `version`.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { startTestGateway, tempDir, type TestGateway } from "./support/gateway.ts";
import { openStateDb } from "../../app/store/db.ts";
import { SecretStore } from "../../app/store/secrets.ts";
import { loadOrCreatePrivateKey } from "../../app/net/wireguard/keys.ts";

const ROOT = resolve(import.meta.dir, "../..");
const BUN = join(ROOT, "node_modules/.bin/bun");
const SECRET = "ghp-real-secret-for-the-backup-test-9d1e";
const PASSPHRASE = "correct horse battery staple";

const BODY = `
defaults { verdict = "allow" }
endpoint "https" "github" {
  hosts      = ["api.github.com"]
  credential = github_token.gh
}
credential "github_token" "gh" {}
profile "p" { credentials = [github_token.gh] }
`;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("CLAWPATROL_")) env[k] = v;
  return { ...env, ...extra };
}

async function cli(config: string, args: string[], opts: { stdin?: string; env?: Record<string, string> } = {}): Promise<Run> {
  const proc = Bun.spawn([BUN, "app/main.ts", ...args, "--config", config], {
    cwd: ROOT,
    env: cleanEnv(opts.env),
    stdin: opts.stdin === undefined ? "ignore" : new TextEncoder().encode(opts.stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => proc.kill(), 60_000);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** A config beside a state directory of its own, as a second appliance would have. */
function freshAppliance(): { config: string; stateDir: string; dir: string } {
  const dir = tempDir("restore");
  const config = join(dir, "gateway.hcl");
  writeFileSync(config, `schema_version = 1\ngateway {\n  state_dir = "state"\n}\n${BODY}`);
  return { config, stateDir: join(dir, "state"), dir };
}

const fingerprint = (r: Run) => /SHA-256 fingerprint: ([0-9A-F:]+)/i.exec(r.stderr)?.[1];

let t: TestGateway;
let work: string;
let originalFingerprint: string;
let masterKeyFile: string;
let plainBackup: string;
let keyedBackup: string;
let passFile: string;
const cleanups: string[] = [];

beforeAll(async () => {
  t = await startTestGateway(BODY);
  work = tempDir("backup-files");
  cleanups.push(work);
  const stateDir = t.gw.policy().gateway.stateDir;
  loadOrCreatePrivateKey(stateDir); // a WireGuard key, as an appliance has
  for (const [args, stdin] of [
    [["operator", "add", "alice", "--role", "admin"]],
    [["devices", "add", "laptop", "--profile", "p"]],
    [["secret", "set", "gh"], SECRET],
  ] as [string[], string?][]) {
    const r = await cli(t.configPath, args, stdin === undefined ? {} : { stdin });
    if (r.code !== 0) throw new Error(`${args.join(" ")}: ${r.stderr}`);
  }
  const ca = await cli(t.configPath, ["ca", "show"]);
  originalFingerprint = fingerprint(ca)!;
  masterKeyFile = join(work, "master.key.copy");
  writeFileSync(masterKeyFile, readFileSync(join(stateDir, "master.key")));
  passFile = join(work, "passphrase");
  writeFileSync(passFile, `${PASSPHRASE}\n`);
  plainBackup = join(work, "plain.cpbk");
  keyedBackup = join(work, "keyed.cpbk");
}, 60_000);

afterAll(async () => {
  await t?.stop();
  for (const d of cleanups) rmSync(d, { recursive: true, force: true });
});

describe("backup and restore", () => {
  test("version prints the running version", async () => {
    const r = await cli(t.configPath, ["version"]);
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(`clawpatrol-gateway ${pkg.version} (bun ${Bun.version})`);
  }, 90_000);

  test("a backup of a running gateway without the key holds no key or secret in clear", async () => {
    const r = await cli(t.configPath, ["backup", plainBackup]);
    expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 0 });
    expect(r.stderr).toContain(originalFingerprint);
    const bytes = readFileSync(plainBackup);
    expect(bytes.subarray(0, 6).toString()).toBe("CPBK1\n");
    expect(bytes.includes(readFileSync(masterKeyFile))).toBe(false);
    expect(bytes.includes(Buffer.from("PRIVATE KEY"))).toBe(false);
    expect(bytes.includes(Buffer.from(SECRET))).toBe(false);
    const stateDir = t.gw.policy().gateway.stateDir;
    expect(bytes.includes(readFileSync(join(stateDir, "wg.key")).subarray(0, 20))).toBe(false);
  }, 90_000);

  test("--include-key needs a passphrase, and then nothing of the state is readable", async () => {
    const refused = await cli(t.configPath, ["backup", keyedBackup, "--include-key"]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("passphrase");
    const r = await cli(t.configPath, ["backup", keyedBackup, "--include-key", "--passphrase-file", passFile]);
    expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 0 });
    const bytes = readFileSync(keyedBackup);
    expect(bytes.subarray(0, 7).toString()).toBe("CPBKE1\n");
    for (const clear of ["SQLite format", "CPBK1", "BEGIN", "laptop", "alice"]) expect(bytes.includes(Buffer.from(clear))).toBe(false);
    expect(bytes.includes(readFileSync(masterKeyFile))).toBe(false);
  }, 90_000);

  test("restore is refused while the gateway runs on that state", async () => {
    const r = await cli(t.configPath, ["restore", plainBackup]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("the gateway is running");
  }, 90_000);

  test("the keyed backup onto a fresh appliance: same CA, device, operator and secret; a wrong passphrase is refused", async () => {
    const a = freshAppliance();
    cleanups.push(a.dir);
    // A fresh appliance already has a CA of its own (first boot).
    const own = fingerprint(await cli(a.config, ["ca", "show"]));
    expect(own).toBeDefined();
    expect(own).not.toBe(originalFingerprint);

    const wrong = await cli(a.config, ["restore", keyedBackup], { env: { CLAWPATROL_BACKUP_PASSPHRASE: "not the passphrase at all" } });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain("wrong passphrase");
    const none = await cli(a.config, ["restore", keyedBackup]);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain("encrypted");

    const r = await cli(a.config, ["restore", keyedBackup], { env: { CLAWPATROL_BACKUP_PASSPHRASE: PASSPHRASE } });
    expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 0 });
    expect(r.stderr).toContain("pre-restore-");
    await expectRestored(a);
    // The appliance's own CA was moved aside, not lost.
    const aside = readdirSync(a.stateDir).find((n) => n.startsWith("pre-restore-"))!;
    expect(existsSync(join(a.stateDir, aside, "ca.key"))).toBe(true);
  }, 90_000);

  test("the backup without the key restores only with the master key it was made with", async () => {
    const a = freshAppliance();
    cleanups.push(a.dir);
    const missing = await cli(a.config, ["restore", plainBackup]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("does not carry the master key");
    const otherKey = join(a.dir, "other.key");
    writeFileSync(otherKey, Buffer.alloc(32, 7));
    const mismatched = await cli(a.config, ["restore", plainBackup, "--key", otherKey]);
    expect(mismatched.code).toBe(1);
    expect(mismatched.stderr).toContain("not the one this backup was made with");
    expect(existsSync(join(a.stateDir, "state.db"))).toBe(false);

    const r = await cli(a.config, ["restore", plainBackup, "--key", masterKeyFile]);
    expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 0 });
    await expectRestored(a);
  }, 90_000);
});

async function expectRestored(a: { config: string; stateDir: string }): Promise<void> {
  expect(fingerprint(await cli(a.config, ["ca", "show"]))).toBe(originalFingerprint);
  expect((await cli(a.config, ["devices", "list"])).stdout).toMatch(/^laptop\s+proxy\s+p\s/m);
  expect((await cli(a.config, ["operator", "list"])).stdout).toContain("alice");
  expect((await cli(a.config, ["secret", "list"])).stdout.trim()).toBe("gh");
  const original = t.gw.policy().gateway.stateDir;
  expect(readFileSync(join(a.stateDir, "wg.key"), "utf8")).toBe(readFileSync(join(original, "wg.key"), "utf8"));
  const db = openStateDb(a.stateDir);
  try {
    expect(new SecretStore(db, a.stateDir).get("gh")).toBe(SECRET);
  } finally {
    db.close();
  }
}
