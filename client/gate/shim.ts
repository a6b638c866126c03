// `clawpatrol __shim SOCKET NAME ARGS...`: what a gated command is inside a
// run. /bin/sh runs it from the shim script bound over the real binary (the
// name is written in the script, so `exec -a`, copies and symlinks change
// nothing). It hands its stdin, stdout and stderr to the warden with the
// arguments and the environment, forwards the signals it gets, and exits
// with the status the warden reports. It decides nothing: the warden takes
// the caller's cwd and identity from the kernel, not from this message.
import { connectSeqpacket, readable, receiveMessage, restoreTerminal, saveTerminal, sendMessage } from "./sock.ts";

/** Exit status of a command the gate refused or could not run (as a shell's "cannot execute"). */
export const GATE_REFUSED = 126;

const FORWARDED: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGWINCH", "SIGUSR1", "SIGUSR2"];

export async function shim(argv: string[]): Promise<number> {
  const [socket, name, ...args] = argv;
  if (!socket || !name) {
    process.stderr.write("clawpatrol: __shim is internal to clawpatrol run --gate\n");
    return 2;
  }
  let fd: number;
  try {
    fd = connectSeqpacket(socket);
  } catch (e) {
    process.stderr.write(`clawpatrol: ${name}: the command gate is not reachable (${(e as Error).message})\n`);
    return GATE_REFUSED;
  }
  // A command killed at its timeout leaves the terminal as it set it: put
  // ours back (by ioctl: stty itself may be gated).
  const saved = saveTerminal(0);
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  if (!sendMessage(fd, { type: "run", command: name, args, env }, [0, 1, 2])) {
    process.stderr.write(`clawpatrol: ${name}: the command gate closed the connection\n`);
    return GATE_REFUSED;
  }
  const handlers = FORWARDED.map((s) => [s, () => sendMessage(fd, { type: "signal", signal: s })] as const);
  for (const [s, h] of handlers) process.on(s, h);
  try {
    for (;;) {
      if (!readable(fd, 0)) {
        await Bun.sleep(10);
        continue;
      }
      const r = receiveMessage(fd);
      if (r.kind === "again") continue;
      if (r.kind === "eof") {
        process.stderr.write(`clawpatrol: ${name}: the command gate went away\n`);
        return GATE_REFUSED;
      }
      const v = r.value as { type?: string; code?: unknown } | undefined;
      if (v?.type === "exit" && typeof v.code === "number") return v.code & 255;
    }
  } finally {
    for (const [s, h] of handlers) process.off(s, h);
    if (saved) restoreTerminal(0, saved);
  }
}
