// journald's native protocol: one datagram per entry to
// /run/systemd/journal/socket (AF_UNIX, SOCK_DGRAM), fields as `KEY=value\n`,
// or `KEY\n<u64 LE length><value>\n` when the value holds a newline
// (systemd's "Native Journal Protocol").
//
// Why the socket through libc (bun:ffi socket/sendto) and not libsystemd's
// sd_journal_sendv: node:dgram has no unix sockets, sd_journal_sendv always
// sends to the system socket (a test cannot point it at its own), and
// libsystemd would be one more library the process loads. The socket is
// non-blocking: a journald that is behind makes a send fail (EAGAIN) rather
// than stall the gateway; the caller falls back to stderr for that entry.
import { dlopen, FFIType, read as ffiRead, type Pointer } from "bun:ffi";
import { existsSync, fstatSync } from "node:fs";
import type { LogLevel, LogWriter } from "./log.ts";

export const JOURNAL_SOCKET = "/run/systemd/journal/socket";

// <sys/socket.h>, <sys/un.h>
const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const MSG_NOSIGNAL = 0x4000;
/** sizeof(sun_path) */
const SUN_PATH_MAX = 108;

/** syslog(3) priorities, as journald's PRIORITY= field takes them. */
export const PRIORITY = { err: 3, warning: 4, notice: 5, info: 6, debug: 7 } as const;

/** A value longer than this is cut (a datagram must fit the socket buffer; an agent controls paths). */
export const MAX_FIELD_BYTES = 16 * 1024;

const FIELD_NAME = /^[A-Z0-9][A-Z0-9_]{0,63}$/;

export type JournalFields = ReadonlyArray<readonly [string, string]>;

/** The datagram for one entry. Throws on an invalid field name (a programming error). */
export function encodeJournalEntry(fields: JournalFields): Uint8Array {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  for (const [key, raw] of fields) {
    if (!FIELD_NAME.test(key)) throw new Error(`invalid journal field name ${JSON.stringify(key)}`);
    const value = truncate(enc.encode(raw));
    if (!value.includes(0x0a)) {
      parts.push(enc.encode(`${key}=`), value, NEWLINE);
      continue;
    }
    const len = new Uint8Array(8);
    new DataView(len.buffer).setBigUint64(0, BigInt(value.length), true);
    parts.push(enc.encode(`${key}\n`), len, value, NEWLINE);
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const NEWLINE = new Uint8Array([0x0a]);
const ELLIPSIS = new TextEncoder().encode("…");

function truncate(b: Uint8Array): Uint8Array {
  if (b.length <= MAX_FIELD_BYTES) return b;
  // Back off to a UTF-8 boundary so the cut value stays valid text.
  let end = MAX_FIELD_BYTES - ELLIPSIS.length;
  while (end > 0 && (b[end]! & 0xc0) === 0x80) end--;
  const out = new Uint8Array(end + ELLIPSIS.length);
  out.set(b.subarray(0, end));
  out.set(ELLIPSIS, end);
  return out;
}

/**
 * Whether this process's stderr is systemd's journal stream: systemd sets
 * JOURNAL_STREAM=<dev>:<inode> of that stream, and a child whose stderr was
 * redirected elsewhere inherits the variable but not the stream.
 */
export function stderrIsJournal(env: Record<string, string | undefined> = process.env): boolean {
  const m = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? "");
  if (!m) return false;
  try {
    const st = fstatSync(2, { bigint: true });
    return st.dev === BigInt(m[1]!) && st.ino === BigInt(m[2]!);
  } catch {
    return false;
  }
}

/** The socket to send native entries to, when the process runs under systemd with journal output; else undefined. */
export function journalSocketForProcess(env: Record<string, string | undefined> = process.env): string | undefined {
  return stderrIsJournal(env) && existsSync(JOURNAL_SOCKET) ? JOURNAL_SOCKET : undefined;
}

function loadLibc() {
  const { i32, u32, u64, ptr } = FFIType;
  return dlopen("libc.so.6", {
    socket: { args: [i32, i32, i32], returns: i32 },
    sendto: { args: [i32, ptr, u64, i32, ptr, u32], returns: i32 },
    close: { args: [i32], returns: i32 },
    __errno_location: { args: [], returns: ptr },
    strerror: { args: [i32], returns: FFIType.cstring },
  }).symbols;
}
let libc: ReturnType<typeof loadLibc> | undefined;

export type SendResult = { ok: true } | { ok: false; error: string };

/** A datagram socket that sends entries to one journal socket path. */
export class JournalWriter {
  private fd = -1;
  private readonly addr: Uint8Array;

  constructor(readonly socketPath: string = JOURNAL_SOCKET) {
    const name = new TextEncoder().encode(socketPath);
    if (name.length === 0 || name.length >= SUN_PATH_MAX) throw new Error(`journal socket path too long: ${socketPath}`);
    // struct sockaddr_un { sa_family_t sun_family; char sun_path[108]; }, NUL-terminated
    this.addr = new Uint8Array(2 + name.length + 1);
    new DataView(this.addr.buffer).setUint16(0, AF_UNIX, true);
    this.addr.set(name, 2);
  }

  send(fields: JournalFields): SendResult {
    const data = encodeJournalEntry(fields);
    const c = (libc ??= loadLibc());
    if (this.fd < 0) {
      this.fd = c.socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (this.fd < 0) return { ok: false, error: `socket: ${errnoText()}` };
    }
    const n = c.sendto(this.fd, data, data.length, MSG_NOSIGNAL, this.addr, this.addr.length);
    if (n < 0) return { ok: false, error: `sendto ${this.socketPath}: ${errnoText()}` };
    return { ok: true };
  }

  close(): void {
    if (this.fd >= 0) libc?.close(this.fd);
    this.fd = -1;
  }
}

function errnoText(): string {
  const c = libc!;
  const p = c.__errno_location();
  const code = p === null ? 0 : ffiRead.i32(p as Pointer, 0);
  return `${String(c.strerror(code))} (errno ${code})`;
}

const LOG_PRIORITY: Record<LogLevel, number> = {
  debug: PRIORITY.debug,
  info: PRIORITY.info,
  warn: PRIORITY.warning,
  error: PRIORITY.err,
};

/**
 * A log.ts writer that sends each (already redacted) line natively with its
 * level as PRIORITY=; a failed send writes the line to `fallback` instead and
 * says so once.
 */
export function journalLogWriter(
  writer: JournalWriter,
  identifier: string,
  fallback: (line: string) => void = (line) => {
    process.stderr.write(line + "\n");
  },
): LogWriter {
  let warned = false;
  return (line, level) => {
    const r = writer.send([
      ["MESSAGE", line],
      ["PRIORITY", String(LOG_PRIORITY[level])],
      ["SYSLOG_IDENTIFIER", identifier],
    ]);
    if (r.ok) return;
    if (!warned) {
      warned = true;
      fallback(`WARN journald native protocol failed, logging to stderr instead error=${JSON.stringify(r.error)}`);
    }
    fallback(line);
  };
}
