// The ghost sandbox: `sandbox = "ghost"` (and `workspace`) on an exec rule,
// checked by the loader and handed to the warden in the allow answer; the
// mount commands the warden runs for it (setup.ts ghostMounts).
import { describe, expect, test } from "bun:test";
import { GateService } from "../../../app/gate/service.ts";
import { ghostMounts, mountPoints } from "../../../client/gate/setup.ts";
import { policyFrom } from "../policy/helpers.ts";

const rules = (extra: string) => `schema_version = 1
defaults {
  verdict = "allow"
}
endpoint "exec" "tools" {}
profile "dev" {}
rule "ghosted" {
  endpoint  = exec.tools
  condition = "exec.command == 'npm'"
  verdict   = "allow"
  ${extra}
}
`;

const npm = { command: "npm", path: "/usr/bin/npm", argv: ["npm", "ci"], cwd: "/work/proj", env: {}, paths: [], tty: false, uid: 1000 };
const tools = { unshare: "/usr/bin/unshare", mount: "/usr/bin/mount", setsid: "/usr/bin/setsid", script: "/usr/bin/script", env: "/usr/bin/env" };

describe("sandbox = ghost", () => {
  test("the allow answer carries it, with the workspace (default: the cwd)", async () => {
    for (const [extra, workspace] of [['sandbox = "ghost"', "/work/proj"], ['sandbox = "ghost"\n  workspace = "/work/"', "/work"]] as const) {
      const p = await policyFrom(rules(extra));
      const gate = new GateService({ policy: () => p, publish: () => undefined });
      expect(gate.ask({ name: "laptop", profile: "dev" }, npm)).toMatchObject({ status: "allow", sandbox: "ghost", workspace });
    }
    const none = await policyFrom(rules('sandbox = "none"'));
    const a = new GateService({ policy: () => none, publish: () => undefined }).ask({ name: "laptop", profile: "dev" }, npm);
    expect(a).not.toHaveProperty("sandbox");
  });

  test("the loader refuses what it cannot mean", async () => {
    await expect(policyFrom(rules('sandbox = "docker"'))).rejects.toThrow(/sandbox/);
    await expect(policyFrom(rules('sandbox = "ghost"\n  workspace = "rel/dir"'))).rejects.toThrow(/workspace must be an absolute path/);
    await expect(policyFrom(rules('workspace = "/work"'))).rejects.toThrow(/workspace applies only with sandbox = "ghost"/);
  });

  test("the mounts: the workspace staged where nothing is mounted, $HOME a tmpfs, the rest read-only", () => {
    const mounts = mountPoints(["22 1 8:1 / / rw - ext4 /dev/sda1 rw", "23 22 0:5 / /proc rw - proc proc rw", "24 22 0:6 / /mnt/data rw - ext4 x rw", "25 22 0:7 / /home/a\\040b rw - tmpfs t rw", "26 22 0:8 / /home/me/.cache rw - tmpfs t rw", "27 22 0:9 / /tmp rw - tmpfs t rw"].join("\n"));
    expect(mounts).toEqual(["/", "/proc", "/mnt/data", "/home/a b", "/home/me/.cache", "/tmp"]);
    const lines = ghostMounts(tools, { workspace: "/tmp/ws", home: "/home/me", mounts, cwd: "/tmp/ws/sub", exists: (p) => p === "/mnt" || p === "/media" })!;
    expect(lines).toEqual([
      "'/usr/bin/mount' --bind '/tmp/ws' '/media'",
      "'/usr/bin/mount' -t tmpfs -o mode=0755,size=64m clawpatrol-ghost-home '/home/me'",
      "'/usr/bin/mount' --bind '/media' '/tmp/ws'",
      "'/usr/bin/mount' -o remount,bind,ro '/media'",
      "'/usr/bin/mount' -o remount,bind,ro '/'",
      "'/usr/bin/mount' -o remount,bind,ro '/mnt/data'",
      "'/usr/bin/mount' -o remount,bind,ro '/home/a b'",
      "'/usr/bin/mount' -o remount,bind,ro '/tmp'",
      "cd '/tmp/ws/sub'",
    ]);
    expect(ghostMounts(tools, { workspace: "/", home: undefined, mounts, cwd: "/", exists: () => true })).toBeUndefined();
  });
});
