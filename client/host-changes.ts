// What `clawpatrol up` changes on the host, as data, so that `down` undoes
// exactly that and nothing else (also after the tunnel process was killed):
//
//   - routes: `ip -4|-6 route add ARGS`, undone with `ip route del ARGS`;
//     a route whose device has gone (the TUN dies with its process) is
//     already undone;
//   - a network device we made (wg-quick's interface): deleted if it is
//     still there;
//   - /etc/resolv.conf: its original bytes and mode, or the symlink's
//     target, or that it did not exist; put back as it was.
//
// Each change is recorded before it is made (record.ts writes the list
// out), so a crash between the two leaves at most a change that down
// undoes tolerantly.
import { spawnSync } from "node:child_process";
import {
  chmodSync, closeSync, existsSync, lstatSync, openSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync,
} from "node:fs";
import net from "node:net";
import path from "node:path";

export type ResolvBefore =
  | { kind: "file"; content_b64: string; mode: number }
  | { kind: "symlink"; target: string }
  | { kind: "absent" };

export type HostChange =
  | { kind: "route"; family: 4 | 6; args: string[] }
  | { kind: "link"; name: string }
  | { kind: "wg-quick"; config: string }
  | { kind: "resolv"; path: string; before: ResolvBefore };

export class HostChangeError extends Error {}

interface IpResult {
  ok: boolean;
  out: string;
  err: string;
}

export function ip(args: string[]): IpResult {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  return { ok: r.status === 0, out: r.stdout ?? "", err: (r.stderr || String(r.error ?? "")).trim() };
}

export function linkExists(name: string): boolean {
  return ip(["link", "show", "dev", name]).ok;
}

/**
 * The route that reaches `address` now, pinned as a host route, so the
 * tunnel's own UDP keeps leaving by the way it did once the split default
 * routes send everything else into the tunnel.
 */
export function endpointRoute(address: string, tunnelDev: string): HostChange & { kind: "route" } {
  const family = net.isIPv6(address) ? 6 : 4;
  const r = ip([`-${family}`, "-o", "route", "get", address]);
  if (!r.ok) throw new HostChangeError(`no route to the gateway endpoint ${address} (${r.err}); is the network up?`);
  const words = r.out.trim().split(/\s+/);
  if (words[0] === "local") throw new HostChangeError(`the gateway endpoint ${address} is an address of this machine; whole-machine mode needs the gateway elsewhere`);
  const at = (k: string) => {
    const i = words.indexOf(k);
    return i >= 0 ? words[i + 1] : undefined;
  };
  const dev = at("dev");
  if (!dev) throw new HostChangeError(`cannot tell how ${address} is reached: ${r.out.trim()}`);
  if (dev === tunnelDev) throw new HostChangeError(`${address} is already routed into ${tunnelDev}: run clawpatrol down first`);
  const via = at("via");
  const args = [`${address}/${family === 4 ? 32 : 128}`, ...(via ? ["via", via] : []), "dev", dev];
  return { kind: "route", family, args };
}

/** 0.0.0.0/1 + 128.0.0.0/1 (and ::/1 + 8000::/1): more specific than any default route, which stays untouched. */
export function splitDefaultRoutes(dev: string): (HostChange & { kind: "route" })[] {
  return [
    { kind: "route", family: 4, args: ["0.0.0.0/1", "dev", dev] },
    { kind: "route", family: 4, args: ["128.0.0.0/1", "dev", dev] },
    { kind: "route", family: 6, args: ["::/1", "dev", dev] },
    { kind: "route", family: 6, args: ["8000::/1", "dev", dev] },
  ];
}

export function captureResolv(file: string): ResolvBefore {
  let st;
  try {
    st = lstatSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { kind: "absent" };
    throw e;
  }
  if (st.isSymbolicLink()) return { kind: "symlink", target: readlinkSync(file) };
  return { kind: "file", content_b64: readFileSync(file).toString("base64"), mode: st.mode & 0o7777 };
}

/** Puts `bytes` at `file` as a regular file without following a symlink there. */
function replaceWithFile(file: string, bytes: Uint8Array | string, mode: number): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.clawpatrol-${process.pid}`);
  writeFileSync(tmp, bytes, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, file);
}

/**
 * Points DNS at the gateway. A regular file is rewritten in place (keeps its
 * inode, owner and mode, and works where the file is a bind mount); a
 * symlink is replaced by a file, never written through.
 */
export function writeResolv(file: string, before: ResolvBefore, text: string): void {
  if (before.kind === "file") writeFileSync(file, text);
  else replaceWithFile(file, text, 0o644);
}

export function restoreResolv(file: string, before: ResolvBefore): void {
  switch (before.kind) {
    case "absent":
      rmSync(file, { force: true });
      return;
    case "symlink": {
      const tmp = path.join(path.dirname(file), `.${path.basename(file)}.clawpatrol-${process.pid}`);
      rmSync(tmp, { force: true });
      symlinkSync(before.target, tmp);
      renameSync(tmp, file);
      return;
    }
    case "file": {
      const bytes = Buffer.from(before.content_b64, "base64");
      let isFile = false;
      try {
        isFile = lstatSync(file).isFile();
      } catch {
        /* gone: recreate */
      }
      if (isFile) {
        writeFileSync(file, bytes);
        chmodSync(file, before.mode);
      } else {
        replaceWithFile(file, bytes, before.mode);
      }
      return;
    }
  }
}

/**
 * wg-quick's output goes to `logFile` (when given), not to pipes: a
 * userspace implementation it starts (wireguard-go where the module is
 * missing) keeps its stdio open and a pipe would never close.
 */
function wgQuick(action: "up" | "down", config: string, logFile?: string): { ok: boolean; err: string } {
  const start = logFile && existsSync(logFile) ? statSync(logFile).size : 0;
  const fd = logFile ? openSync(logFile, "a", 0o600) : "ignore";
  try {
    const r = spawnSync("wg-quick", [action, config], { stdio: ["ignore", fd, fd] });
    const tail = logFile ? readFileSync(logFile).subarray(start).toString("utf8").trim().split("\n").pop() ?? "" : "";
    return { ok: r.status === 0, err: tail || String(r.error ?? `exit status ${r.status}`) };
  } finally {
    if (typeof fd === "number") closeSync(fd);
  }
}

/** Makes one change; throws with the reason when it cannot. */
export function applyChange(c: HostChange, resolvText = "", logFile?: string): void {
  switch (c.kind) {
    case "route": {
      const r = ip([`-${c.family}`, "route", "add", ...c.args]);
      if (!r.ok) throw new HostChangeError(`ip -${c.family} route add ${c.args.join(" ")}: ${r.err}`);
      return;
    }
    case "wg-quick": {
      const r = wgQuick("up", c.config, logFile);
      if (!r.ok) throw new HostChangeError(`wg-quick up failed: ${r.err}`);
      return;
    }
    case "link":
      return; // made by whoever recorded it
    case "resolv":
      writeResolv(c.path, c.before, resolvText);
      return;
  }
}

/** Undoes one change; what is already undone is fine. Returns a warning when it could not. */
export function undoChange(c: HostChange, logFile?: string): string | undefined {
  switch (c.kind) {
    case "route": {
      const r = ip([`-${c.family}`, "route", "del", ...c.args]);
      if (r.ok || /No such process|Cannot find device|No such device/i.test(r.err)) return undefined;
      return `ip -${c.family} route del ${c.args.join(" ")}: ${r.err}`;
    }
    case "link": {
      if (!linkExists(c.name)) return undefined;
      const r = ip(["link", "del", "dev", c.name]);
      return r.ok || !linkExists(c.name) ? undefined : `ip link del ${c.name}: ${r.err}`;
    }
    case "wg-quick": {
      const dev = path.basename(c.config, ".conf");
      if (!linkExists(dev)) return undefined;
      const r = wgQuick("down", c.config, logFile);
      if (r.ok || !linkExists(dev)) return undefined;
      return `wg-quick down ${c.config}: ${r.err}`;
    }
    case "resolv":
      try {
        restoreResolv(c.path, c.before);
        return undefined;
      } catch (e) {
        return `restoring ${c.path}: ${(e as Error).message}`;
      }
  }
}

/** Undoes `changes` newest first; returns the warnings. */
export function undoAll(changes: readonly HostChange[], logFile?: string): string[] {
  const warnings: string[] = [];
  for (const c of [...changes].reverse()) {
    const w = undoChange(c, logFile);
    if (w) warnings.push(w);
  }
  return warnings;
}
