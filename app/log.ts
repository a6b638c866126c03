// A tiny structured logger: one line per record, `LEVEL msg key=value …`.
// The whole line passes through the redactor hook before it is written, so a
// secret that reaches a log field (an upstream error echoing a header, say)
// never reaches stderr or the journal. The writer is pluggable so journald
// can replace stderr without touching callers.

export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogWriter = (line: string, level: LogLevel) => void;
export type LogFields = Record<string, unknown>;

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

function isLevel(s: string | undefined): s is LogLevel {
  return s !== undefined && Object.hasOwn(RANK, s);
}

const defaultWriter: LogWriter = (line) => {
  process.stderr.write(line + "\n");
};

const envLevel = process.env.CLAWPATROL_LOG_LEVEL?.toLowerCase();
let threshold = RANK[isLevel(envLevel) ? envLevel : "info"];
let writer: LogWriter = defaultWriter;
let redactor: (s: string) => string = (s) => s;

/** Applied to every whole line before it is written (install the secret redactor here). */
export function setLogRedactor(fn: (s: string) => string): void {
  redactor = fn;
}

/** The redactor in place (so whoever installs one can put the previous back). */
export function logRedactor(): (s: string) => string {
  return redactor;
}

/** Redactors of running gateways, applied after the base one, each until its owner removes it. */
const live: ((s: string) => string)[] = [];

/**
 * Adds a redactor for as long as its owner runs (a gateway: its secrets);
 * returns its removal. Two gateways in one process (tests) each redact
 * every line, and closing one never leaves the other's stale redactor behind.
 */
export function addLogRedactor(fn: (s: string) => string): () => void {
  live.push(fn);
  return () => {
    const i = live.indexOf(fn);
    if (i >= 0) live.splice(i, 1);
  };
}

/** Replace where lines go; `undefined` restores stderr. */
export function setLogWriter(fn: LogWriter | undefined): void {
  writer = fn ?? defaultWriter;
}

/** Override CLAWPATROL_LOG_LEVEL (e.g. from a `--verbose` flag or a test). */
export function setLogLevel(level: LogLevel): void {
  threshold = RANK[level];
}

export function logLevelEnabled(level: LogLevel): boolean {
  return RANK[level] >= threshold;
}

// Bare when the value is a plain token, JSON-quoted otherwise so that a line
// always splits back into the same key=value pairs.
function formatValue(v: unknown): string {
  if (v instanceof Error) v = v.message;
  switch (typeof v) {
    case "string":
      return /^[^\s"=\\\x00-\x1f\x7f]+$/.test(v) ? v : JSON.stringify(v);
    case "number":
    case "boolean":
    case "bigint":
      return String(v);
    case "undefined":
      return "undefined";
    default:
      try {
        return JSON.stringify(v) ?? String(v);
      } catch {
        return JSON.stringify(String(v));
      }
  }
}

/** The unredacted line for a record; exported for tests and alternative writers. */
export function formatLogLine(level: LogLevel, msg: string, fields?: LogFields): string {
  // Escape control characters so one record is always one line.
  const text = msg.replace(/[\x00-\x1f\x7f]/g, (c) => JSON.stringify(c).slice(1, -1));
  let line = `${level.toUpperCase()} ${text}`;
  if (fields) {
    for (const [k, v] of Object.entries(fields)) {
      if (v === undefined) continue;
      line += ` ${k}=${formatValue(v)}`;
    }
  }
  return line;
}

function emit(level: LogLevel, msg: string, fields?: LogFields): void {
  if (RANK[level] < threshold) return;
  let line: string;
  try {
    line = redactor(formatLogLine(level, msg, fields));
    for (const r of live) line = r(line);
  } catch {
    // Fail closed: an unredacted line could carry a secret.
    line = `${level.toUpperCase()} log line withheld: redactor failed`;
  }
  try {
    writer(line, level);
  } catch {
    // Logging must never take the caller down.
  }
}

export const log = {
  debug: (msg: string, fields?: LogFields): void => emit("debug", msg, fields),
  info: (msg: string, fields?: LogFields): void => emit("info", msg, fields),
  warn: (msg: string, fields?: LogFields): void => emit("warn", msg, fields),
  error: (msg: string, fields?: LogFields): void => emit("error", msg, fields),
};
