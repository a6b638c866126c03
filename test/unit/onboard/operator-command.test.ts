// The command the gateway prints for operators runs as printed: the installed
// entry on the appliance, the checkout's bun and app/main.ts under `make run`.
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { gatewayCommandFor } from "../../../app/control/operator-command.ts";

const ROOT = path.resolve(import.meta.dir, "../../..");
const MAIN = path.join(ROOT, "app/main.ts");

test("installed on PATH: the plain command", () => {
  expect(gatewayCommandFor({ argv: ["/usr/local/bin/bun", "/usr/lib/clawpatrol/app/main.ts", "gateway"], cwd: "/", onPath: true })).toBe("clawpatrol-gateway");
});

test("make run in a checkout: the checkout's bun and entry, relative to where it was started", () => {
  expect(gatewayCommandFor({ argv: ["/x/bun", MAIN, "all", "--config", "config/default.hcl"], cwd: ROOT, onPath: false })).toBe("./node_modules/.bin/bun app/main.ts");
});

test("another config is named, absolute; started elsewhere, the paths are absolute", () => {
  expect(gatewayCommandFor({ argv: ["/x/bun", MAIN, "all", "--config", "my gw.hcl"], cwd: ROOT, onPath: false })).toBe(
    `./node_modules/.bin/bun app/main.ts --config '${path.join(ROOT, "my gw.hcl")}'`,
  );
  expect(gatewayCommandFor({ argv: ["/x/bun", MAIN, "all"], cwd: path.join(tmpdir(), "elsewhere"), onPath: false })).toBe(`${path.join(ROOT, "node_modules/.bin/bun")} ${MAIN}`);
});

test("the printed checkout command runs: --help through it exits 0", () => {
  const cmd = gatewayCommandFor({ argv: ["/x/bun", MAIN, "all"], cwd: ROOT, onPath: false });
  const dir = mkdtempSync(path.join(tmpdir(), "cp-opcmd-"));
  try {
    const r = Bun.spawnSync(["sh", "-c", `${cmd} --help`], { cwd: ROOT, env: { ...process.env, HOME: dir } });
    expect(r.exitCode).toBe(0);
    expect(r.stdout.toString()).toContain("devices approve CODE --profile P");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("not the checkout's entry (a test runner, a compiled binary): the installed name", () => {
  expect(gatewayCommandFor({ argv: ["/x/bun", path.join(ROOT, "test/unit/x.test.ts")], cwd: ROOT, onPath: false })).toBe("clawpatrol-gateway");
});
