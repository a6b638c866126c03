// Client downloads: the binaries and checksums the gateway serves, and the
// install script run for real (curl, sha256sum, install) into a temp HOME.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { chmodSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { startTestGateway, tempDir, type TestGateway } from "./support/gateway.ts";

let t: TestGateway;
let dir = "";
const body = "#!/bin/sh\necho clawpatrol test build\n";

beforeAll(async () => {
  dir = tempDir("dist");
  for (const name of ["clawpatrol-linux-x64", "clawpatrol-linux-arm64"]) {
    writeFileSync(path.join(dir, name), body);
    writeFileSync(path.join(dir, `${name}.sha256`), `${createHash("sha256").update(body).digest("hex")}  ${name}\n`);
  }
  t = await startTestGateway("", {}, { downloadsDir: dir });
});

afterAll(async () => {
  await t?.stop();
});

/** Runs the script without blocking this process, which serves the downloads. */
async function sh(script: string, home: string) {
  const p = Bun.spawn(["sh", script], { env: { PATH: process.env.PATH!, HOME: home }, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, exitCode] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, exitCode };
}

const base = () => `http://127.0.0.1:${t.gw.publicServer.address.port}`;

test("binaries and checksums are served; other names are not", async () => {
  const bin = await fetch(`${base()}/download/clawpatrol-linux-x64`);
  expect(bin.status).toBe(200);
  expect(await bin.text()).toBe(body);
  const sum = await (await fetch(`${base()}/download/clawpatrol-linux-x64.sha256`)).text();
  expect(sum.split(/\s+/)[0]).toBe(createHash("sha256").update(body).digest("hex"));
  expect((await fetch(`${base()}/download/..%2Fstate.db`)).status).toBe(404);
  expect((await fetch(`${base()}/download/clawpatrol-windows.exe`)).status).toBe(404);
});

test("install.sh downloads the binary for this machine, verifies it and installs it", async () => {
  const home = tempDir("home");
  const script = await (await fetch(`${base()}/install.sh`)).text();
  writeFileSync(path.join(home, "install.sh"), script);
  const run = await sh(path.join(home, "install.sh"), home);
  // As root it installs to /usr/local/bin; the test runs it as whoever runs the suite.
  const dest = process.getuid?.() === 0 ? "/usr/local/bin/clawpatrol" : path.join(home, ".local/bin/clawpatrol");
  try {
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toContain("installed");
    expect(readFileSync(dest, "utf8")).toBe(body);
    expect(statSync(dest).mode & 0o111).not.toBe(0);
  } finally {
    if (process.getuid?.() === 0) Bun.spawnSync(["rm", "-f", dest]);
  }
});

test("a download that does not match its checksum is not installed", async () => {
  writeFileSync(path.join(dir, "clawpatrol-linux-x64.sha256"), `${"0".repeat(64)}  clawpatrol-linux-x64\n`);
  writeFileSync(path.join(dir, "clawpatrol-linux-arm64.sha256"), `${"0".repeat(64)}  clawpatrol-linux-arm64\n`);
  const home = tempDir("home");
  writeFileSync(path.join(home, "install.sh"), await (await fetch(`${base()}/install.sh`)).text());
  chmodSync(path.join(home, "install.sh"), 0o755);
  const run = await sh(path.join(home, "install.sh"), home);
  expect(run.exitCode).not.toBe(0);
  expect(run.stderr).toContain("checksum mismatch");
});
