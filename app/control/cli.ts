// Shared by the operator commands: tables, times, and who is acting.
import { userInfo } from "node:os";

/** `cli:<user>`: the sudo caller when run through sudo. */
export function cliOperator(env: Record<string, string | undefined> = process.env): string {
  let user = env.SUDO_USER;
  if (!user) {
    try {
      user = userInfo().username;
    } catch {
      user = "unknown";
    }
  }
  return `cli:${user}`;
}

/**
 * Agent-controlled text (a path, an SQL statement) for a terminal: control
 * characters and bidi overrides escaped as \uXXXX, so a cell stays one line
 * and cannot paint or reorder the operator's screen.
 */
export function terminalSafe(s: string): string {
  return s.replace(/[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

/** Left-aligned columns, two spaces apart. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

export function printTable(header: string[], rows: string[][]): void {
  console.log(formatTable(header, rows));
}

/** `2025-01-02 03:04` (UTC). */
export function isoMinute(ms: number): string {
  return new Date(ms).toISOString().slice(0, 16).replace("T", " ");
}

/** A command line the operator got wrong: exit 2 with a pointer to --help. */
export class UsageError extends Error {}
