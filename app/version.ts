// The running version: `VERSION` beside app/ when a bundle stamped one (it
// carries the build's own string, e.g. "0.1.0+20261207.abc1234"), else
// package.json's. Read once; `clawpatrol-gateway version` and the
// dashboard's header show it.
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), "..");

function read(): string {
  try {
    const stamped = readFileSync(path.join(ROOT, "VERSION"), "utf8").trim();
    if (/^[0-9A-Za-z.+_-]{1,64}$/.test(stamped)) return stamped;
  } catch {
    // not a stamped bundle
  }
  try {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { version?: unknown };
    if (typeof pkg.version === "string") return pkg.version;
  } catch {
    // fall through
  }
  return "unknown";
}

let cached: string | undefined;

export function appVersion(): string {
  return (cached ??= read());
}

/** `clawpatrol-gateway 0.1.0 (bun 1.4.5)` */
export function versionLine(): string {
  return `clawpatrol-gateway ${appVersion()} (bun ${Bun.version})`;
}
