// /proc/PID/stat parsing and the choice of the group a forwarded Ctrl-C reaches.
import { describe, expect, test } from "bun:test";
import { foregroundOf, parseStat, terminalForeground } from "../../../client/gate/tree.ts";

describe("process stat and terminal foreground", () => {
  test("parseStat reads ppid, tty_nr and tpgid after the last parenthesis (a command name may hold both)", () => {
    expect(parseStat("4242 (we (ird) name) S 17 4242 4242 34817 4300 4194304 0 0")).toEqual({ ppid: 17, ttyNr: 34817, tpgid: 4300 });
    expect(parseStat("7 (sh) S 1 7 7 0 -1 4194560")).toEqual({ ppid: 1, ttyNr: 0, tpgid: -1 });
    expect(parseStat("garbage")).toBeUndefined();
    expect(parseStat("1 (x) S")).toBeUndefined();
  });

  test("foregroundOf: the shallowest terminal below that is not our own; none before the pty is open", () => {
    const own = 34816;
    // The wrappers still on the caller's terminal, script and its helpers without one, then the command's pty.
    const procs = [
      { ppid: 1, ttyNr: own, tpgid: 900 },
      { ppid: 2, ttyNr: 0, tpgid: -1 },
      { ppid: 3, ttyNr: 34818, tpgid: 12 },
      { ppid: 12, ttyNr: 34819, tpgid: 40 }, // a pty opened deeper down (a nested script)
    ];
    expect(foregroundOf(procs, own)).toBe(12);
    expect(foregroundOf(procs.slice(0, 2), own)).toBeUndefined();
    expect(foregroundOf([], 0)).toBeUndefined();
  });

  test("terminalForeground reads the live tree: a child on a pty of its own reports that pty's group", async () => {
    // script gives `sleep` a pty where it is the session leader and the foreground group.
    const proc = Bun.spawn(["script", "-q", "-c", "exec sleep 30", "/dev/null"], { stdin: "pipe", stdout: "ignore", stderr: "ignore" });
    try {
      const sleeper = () => Number(Bun.spawnSync(["pgrep", "-P", String(proc.pid), "-x", "sleep"], { stdout: "pipe" }).stdout.toString().trim() || 0);
      // Until sh has exec'd sleep and made the pty its controlling terminal.
      for (let i = 0; i < 500 && (sleeper() === 0 || terminalForeground(process.pid) === undefined); i++) await Bun.sleep(10);
      expect(sleeper()).toBeGreaterThan(0);
      expect(terminalForeground(process.pid)).toBe(sleeper());
    } finally {
      proc.kill("SIGKILL");
      await proc.exited;
    }
  });
});
