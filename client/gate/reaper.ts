// `clawpatrol __reap [--tty] -- CMD...`: the init of one gated command's own
// PID namespace (the warden starts it under `unshare --pid --fork
// --kill-child --mount --mount-proc`). Why a namespace per command: a
// command that double-forks or calls setsid leaves its process tree, but
// never its PID namespace; killing this process (pid 1 there) makes the
// kernel kill every process in it, detached grandchildren included, with no
// race against forks. So the timeout and the kill switch kill the whole
// command, and nothing of it outlives it.
//
// As pid 1 it only gets the signals it handles: it forwards those the warden
// relays (with a terminal: SIGINT and SIGQUIT to the foreground process
// group of the command's pty, as a Ctrl-C typed there would, never to
// `script`, which ends the whole session on SIGINT; SIGWINCH to `script`;
// the rest to every process below; without a terminal: to the command's
// process group). It does not die of a
// signal itself, so it reports how the command ended on fd 3
// ({"exit": N} or {"signal": "SIGTERM"}) and exits with 128+N or N.
import { writeSync } from "node:fs";
import os from "node:os";
import { descendants, terminalForeground } from "./tree.ts";

/** The warden's end of fd 3 reads this. */
export type ReapStatus = { exit: number } | { signal: string };

const FORWARDED: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH"];
const STATUS_FD = 3;
/** The signals a terminal itself sends (to its foreground process group). */
const KEYBOARD = new Set<NodeJS.Signals>(["SIGINT", "SIGQUIT"]);

function send(pid: number, s: NodeJS.Signals): boolean {
  try {
    process.kill(pid, s);
    return true;
  } catch {
    return false;
  }
}

export async function reap(argv: string[]): Promise<number> {
  let tty = false;
  let i = 0;
  for (; i < argv.length && argv[i] !== "--"; i++) if (argv[i] === "--tty") tty = true;
  const cmd = argv.slice(i + 1);
  if (cmd.length === 0) {
    process.stderr.write("clawpatrol: __reap is internal to clawpatrol run --gate\n");
    return 2;
  }
  let child: ReturnType<typeof Bun.spawn>;
  try {
    child = Bun.spawn(cmd, { stdio: ["inherit", "inherit", "inherit"] });
  } catch (e) {
    process.stderr.write(`clawpatrol: cannot start ${cmd[0]}: ${(e as Error).message}\n`);
    return 126;
  }
  const handlers = FORWARDED.map(
    (s) =>
      [
        s,
        () => {
          if (tty) {
            if (s === "SIGWINCH") {
              send(child.pid, s);
              return;
            }
            const foreground = KEYBOARD.has(s) ? terminalForeground(process.pid) : undefined;
            if (foreground !== undefined && send(-foreground, s)) return;
            // Not a keyboard signal, or no pty yet (script has not opened it): everything below.
            for (const p of descendants(process.pid)) send(p, s);
          } else if (!send(-child.pid, s)) {
            // Not yet its own group (setsid has not run): the process itself.
            send(child.pid, s);
          }
        },
      ] as const,
  );
  for (const [s, h] of handlers) process.on(s, h);
  const code = await child.exited;
  for (const [s, h] of handlers) process.off(s, h);
  const status: ReapStatus = child.signalCode ? { signal: String(child.signalCode) } : { exit: code & 255 };
  try {
    writeSync(STATUS_FD, JSON.stringify(status));
  } catch {
    /* started without the warden's status channel */
  }
  if ("signal" in status) return 128 + (os.constants.signals[status.signal as NodeJS.Signals] ?? 0);
  return status.exit;
}
