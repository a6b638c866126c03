// The boot test's deliberately broken update bundle: signed by the trusted
// key, so `clawpatrol-gateway update` installs it, but its app exits at
// start, so the roles never become healthy and the update must roll back.
// Its bin/bun links to the runtime of the version it is meant to replace
// (versions/GOOD/bin/bun), which keeps the bundle a few hundred bytes.
//   bun test/image/broken-bundle.ts --key KEY.pem --version V --runtime-of GOOD --out FILE
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { packBundle } from "../../app/update/bundle.ts";

const args = process.argv.slice(2);
const flag = (name: string): string => {
  const i = args.indexOf(`--${name}`);
  const v = i >= 0 ? args[i + 1] : undefined;
  if (!v) throw new Error(`--${name} is required (--key KEY.pem --version V --runtime-of GOOD --out FILE)`);
  return v;
};
const [key, version, good, out] = [flag("key"), flag("version"), flag("runtime-of"), flag("out")];

const tree = mkdtempSync(path.join(os.tmpdir(), "clawpatrol-broken-"));
try {
  mkdirSync(path.join(tree, "app"));
  mkdirSync(path.join(tree, "bin"));
  writeFileSync(path.join(tree, "app", "main.ts"), 'console.error("deliberately broken bundle: exiting at start");\nprocess.exit(1);\n');
  writeFileSync(path.join(tree, "package.json"), JSON.stringify({ name: "clawpatrol", version }));
  symlinkSync(`../../${good}/bin/bun`, path.join(tree, "bin", "bun"));
  const tarball = `${tree}.tar.gz`;
  const tar = Bun.spawnSync(["tar", "-czf", tarball, "-C", tree, "."]);
  if (tar.exitCode !== 0) throw new Error(`tar: ${tar.stderr.toString()}`);
  writeFileSync(out, packBundle(version, readFileSync(tarball), readFileSync(key, "utf8")));
  rmSync(tarball, { force: true });
} finally {
  rmSync(tree, { recursive: true, force: true });
}
