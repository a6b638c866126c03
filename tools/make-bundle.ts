#!/usr/bin/env bun
// `make bundle`: dist/clawpatrol-VERSION.cpup, the signed update bundle
// `clawpatrol-gateway update` accepts (app/update/bundle.ts).
//   bun tools/make-bundle.ts --key KEY.pem [--version V] [--out DIR] [--node-modules DIR] [--fast]
// The payload is app/, config/, package.json, package-lock.json,
// image/libexec/ (first boot and boot-time access, run from the installed
// version), the client binaries in dist/ when `make client` made them (the
// gateway serves them at /download/), the production node_modules (as the
// image stages them: npm ci --omit=dev in a scratch directory, or
// --node-modules DIR, a copy made so, e.g. image/build.sh's cache), the Bun
// runtime as bin/bun, and VERSION. V defaults to package.json's version plus
// the commit and date (0.1.0+20261207.abc1234).
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { packBundle } from "../app/update/bundle.ts";

const REPO = path.resolve(import.meta.dir, "..");
const args = process.argv.slice(2);
const flag = (name: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};

async function sh(argv: string[], cwd = REPO): Promise<string> {
  const p = Bun.spawn(argv, { cwd, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`${argv.join(" ")}: ${err.trim()}`);
  return out.trim();
}

const keyFile = flag("key");
if (!keyFile) {
  console.error("usage: bun tools/make-bundle.ts --key KEY.pem [--version V] [--out DIR]   (a key: clawpatrol-gateway update keygen DIR)");
  process.exit(2);
}
const pkg = JSON.parse(readFileSync(path.join(REPO, "package.json"), "utf8")) as { version: string };
const commit = await sh(["git", "rev-parse", "--short", "HEAD"]).catch(() => "nogit");
const version = flag("version") ?? `${pkg.version}+${new Date().toISOString().slice(0, 10).replace(/-/g, "")}.${commit}`;
const outDir = flag("out") ?? path.join(REPO, "dist");

const tree = mkdtempSync(path.join(os.tmpdir(), "clawpatrol-bundle-"));
// mkdtemp's 0700 would travel as the tree's "." mode: the units' user must enter it.
chmodSync(tree, 0o755);
try {
  for (const p of ["app", "config", "package.json", "package-lock.json", "image/libexec"]) cpSync(path.join(REPO, p), path.join(tree, p), { recursive: true });
  const clients = existsSync(path.join(REPO, "dist")) ? readdirSync(path.join(REPO, "dist")).filter((n) => /^clawpatrol-linux-[a-z0-9]+(\.sha256)?$/.test(n)) : [];
  for (const n of clients) cpSync(path.join(REPO, "dist", n), path.join(tree, "dist", n));
  if (clients.length === 0) console.error("make-bundle: no client binaries in dist/ (make client): this bundle serves no /download/");
  const prebuilt = flag("node-modules");
  if (prebuilt) cpSync(prebuilt, path.join(tree, "node_modules"), { recursive: true, verbatimSymlinks: true });
  else await sh(["npm", "ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"], tree);
  // elysia's peer dependencies for its types only (~35 MB); nothing loads them at run time (as image/build.sh).
  for (const p of ["typescript", "@types", "bun-types", "undici-types", ".bin/tsc", ".bin/tsserver"]) rmSync(path.join(tree, "node_modules", p), { recursive: true, force: true });
  // The Bun runtime travels with the app: bin/bun, the one this checkout runs.
  const bun = ["node_modules/@oven/bun-linux-x64/bin/bun", "node_modules/bun/bin/bun.exe", "node_modules/bun/bin/bun"]
    .map((p) => path.join(REPO, p))
    .find((p) => existsSync(p) && readFileSync(p).subarray(0, 4).toString("latin1") === "\x7fELF");
  if (!bun) throw new Error("no Bun binary under node_modules/ (run: npm ci)");
  mkdirSync(path.join(tree, "bin"));
  cpSync(bun, path.join(tree, "bin", "bun"));
  writeFileSync(path.join(tree, "VERSION"), `${version}\n`);
  const tarball = path.join(tree, "..", `${path.basename(tree)}.tar.gz`);
  // --fast: gzip -1 (the boot test's bundle: quicker to make, larger).
  await sh(args.includes("--fast") ? ["tar", "-I", "gzip -1", "-cf", tarball, "-C", tree, "."] : ["tar", "-czf", tarball, "-C", tree, "."]);
  mkdirSync(outDir, { recursive: true });
  const out = path.join(outDir, `clawpatrol-${version}.cpup`);
  writeFileSync(out, packBundle(version, readFileSync(tarball), readFileSync(keyFile, "utf8")));
  rmSync(tarball, { force: true });
  console.log(out);
} finally {
  if (existsSync(tree)) rmSync(tree, { recursive: true, force: true });
}
