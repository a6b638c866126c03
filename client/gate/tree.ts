// Process trees from /proc: the children of a process, and all below it; and
// which process group a terminal's Ctrl-C would reach.
import { readdirSync, readFileSync } from "node:fs";

/** The fields of /proc/PID/stat we use. */
export interface ProcStat {
  ppid: number;
  /** Device number of the controlling terminal (0: none). */
  ttyNr: number;
  /** Foreground process group of that terminal (-1: none). */
  tpgid: number;
}

/** Parses /proc/PID/stat (the command name may hold spaces and parentheses: fields start after the last ")"). */
export function parseStat(stat: string): ProcStat | undefined {
  const close = stat.lastIndexOf(")");
  if (close < 0) return undefined;
  // state ppid pgrp session tty_nr tpgid ...
  const f = stat.slice(close + 2).split(" ");
  const [ppid, ttyNr, tpgid] = [Number(f[1]), Number(f[4]), Number(f[5])];
  if (!Number.isInteger(ppid) || !Number.isInteger(ttyNr) || !Number.isInteger(tpgid)) return undefined;
  return { ppid, ttyNr, tpgid };
}

function readStat(pid: number | "self"): ProcStat | undefined {
  try {
    return parseStat(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return undefined; // gone
  }
}

/** Every descendant of `root` (from /proc), deepest last. */
export function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    const s = readStat(Number(d));
    if (s) children.set(s.ppid, [...(children.get(s.ppid) ?? []), Number(d)]);
  }
  const out: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const c of children.get(queue.shift()!) ?? []) {
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

/**
 * The foreground process group of the first terminal below us that is not
 * our own (`procs` shallowest first): the group a Ctrl-C typed on that
 * terminal reaches. A terminal opened deeper down (a nested `script`) is
 * that program's business, as it would be on a real terminal.
 */
export function foregroundOf(procs: readonly ProcStat[], ownTty: number): number | undefined {
  for (const p of procs) if (p.ttyNr !== 0 && p.ttyNr !== ownTty && p.tpgid > 0) return p.tpgid;
  return undefined;
}

/** foregroundOf for the processes below `root` now. */
export function terminalForeground(root: number): number | undefined {
  const procs = descendants(root)
    .map(readStat)
    .filter((s): s is ProcStat => s !== undefined);
  return foregroundOf(procs, readStat("self")?.ttyNr ?? 0);
}
