// Whole-machine mode's parts that need no root: the CLI, the route plan,
// the wg-quick config, /etc/resolv.conf put back exactly (regular file,
// symlink, absent) on real files in a temp dir, and down when nothing is up.
import { describe, expect, test } from "bun:test";
import { existsSync, lstatSync, mkdtempSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "../../../client/main.ts";
import { captureResolv, restoreResolv, splitDefaultRoutes, writeResolv } from "../../../client/host-changes.ts";
import { wgQuickConfig, writeWgQuickConfig } from "../../../client/wg-quick.ts";
import { down, session, statusLines } from "../../../client/whole-machine.ts";

const tmp = () => mkdtempSync(path.join(os.tmpdir(), "clawpatrol-wm-unit-"));

describe("parseArgs", () => {
  test.each([
    [["up"], { cmd: "up" }],
    [["down"], { cmd: "down" }],
    [["join", "gw", "--whole-machine"], { cmd: "join", url: "gw", wholeMachine: true }],
  ])("%j", (args, expected) => {
    expect(parseArgs(args as string[]).command).toEqual(expected as never);
  });
});

test("split default routes: v4 and v6 halves into the tunnel, no default route touched", () => {
  expect(splitDefaultRoutes("clawpatrol0").map((r) => `${r.family} ${r.args.join(" ")}`)).toEqual([
    "4 0.0.0.0/1 dev clawpatrol0",
    "4 128.0.0.0/1 dev clawpatrol0",
    "6 ::/1 dev clawpatrol0",
    "6 8000::/1 dev clawpatrol0",
  ]);
});

test("wg-quick config: Table = off (our routes), no DNS line (our resolv.conf), written 0600", () => {
  const text = wgQuickConfig(
    {
      privateKey: "cHJpdmF0ZS1rZXktcHJpdmF0ZS1rZXktcHJpdmF0ZS0=",
      device: { name: "d", profile: "p", address: "10.77.0.2", address6: "fd00::2", addresses: [] },
      gateway: { public_key: "pub=", endpoint: "gw:51820", allowed_ips: [], dns: "10.77.0.1", address: "10.77.0.1", persistent_keepalive: 0 },
    },
    "192.0.2.1:51820",
    1420,
  );
  expect(text).toContain("Address = 10.77.0.2/32, fd00::2/128\n");
  expect(text).toContain("Table = off\n");
  expect(text).toContain("AllowedIPs = 0.0.0.0/0, ::/0\n");
  expect(text).toContain("Endpoint = 192.0.2.1:51820\n");
  expect(text).toContain("PersistentKeepalive = 25\n");
  expect(text).not.toMatch(/^DNS/m);
  const f = writeWgQuickConfig(tmp(), "clawpatrol0", text);
  expect(path.basename(f)).toBe("clawpatrol0.conf");
  expect(statSync(f).mode & 0o777).toBe(0o600);
  expect(statSync(path.dirname(f)).mode & 0o777).toBe(0o700);
});

describe("resolv.conf comes back exactly", () => {
  const ours = "nameserver 10.77.0.1\n";

  test("a regular file: rewritten in place (same inode), original bytes and mode back", () => {
    const f = path.join(tmp(), "resolv.conf");
    const original = "# odd bytes\tkept\nnameserver 192.0.2.53\noptions edns0"; // no trailing newline
    writeFileSync(f, original, { mode: 0o640 });
    const ino = statSync(f).ino;
    const before = captureResolv(f);
    writeResolv(f, before, ours);
    expect(readFileSync(f, "utf8")).toBe(ours);
    expect(statSync(f).ino).toBe(ino);
    restoreResolv(f, before);
    expect(readFileSync(f, "utf8")).toBe(original);
    expect(statSync(f).mode & 0o777).toBe(0o640);
    expect(statSync(f).ino).toBe(ino);
  });

  test("a symlink: replaced by a file (the target is never written), the same link back", () => {
    const d = tmp();
    const target = path.join(d, "stub-resolv.conf");
    writeFileSync(target, "nameserver 127.0.0.53\n");
    const f = path.join(d, "resolv.conf");
    symlinkSync("stub-resolv.conf", f);
    const before = captureResolv(f);
    expect(before).toEqual({ kind: "symlink", target: "stub-resolv.conf" });
    writeResolv(f, before, ours);
    expect(lstatSync(f).isSymbolicLink()).toBe(false);
    expect(readFileSync(f, "utf8")).toBe(ours);
    expect(readFileSync(target, "utf8")).toBe("nameserver 127.0.0.53\n");
    restoreResolv(f, before);
    expect(readlinkSync(f)).toBe("stub-resolv.conf");
  });

  test("absent: made while up, gone again after", () => {
    const f = path.join(tmp(), "resolv.conf");
    const before = captureResolv(f);
    expect(before).toEqual({ kind: "absent" });
    writeResolv(f, before, ours);
    expect(readFileSync(f, "utf8")).toBe(ours);
    restoreResolv(f, before);
    expect(existsSync(f)).toBe(false);
  });
});

test("nothing up: down says so (exit 0, needs no root), status says down", async () => {
  const dir = tmp();
  expect(session(dir)).toEqual({ kind: "down" });
  const out: string[] = [];
  expect(await down({ dir, out: (l) => out.push(l) })).toBe(0);
  expect(out.join("\n")).toContain("not up");
  expect(statusLines(dir)).toEqual(["whole machine: down"]);
});
