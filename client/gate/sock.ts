// The warden's socket, through bun:ffi (Linux, LP64: x86_64 and aarch64):
// AF_UNIX SOCK_SEQPACKET, so each message arrives whole with the descriptors
// sent beside it (the shim hands over its stdin, stdout and stderr), and
// SO_PEERCRED, so the warden knows which process is asking (its pid, in the
// warden's pid namespace) without believing what the message says.
import { dlopen, FFIType, ptr } from "bun:ffi";
import { EAGAIN, EINTR, errno, POLLERR, POLLFD_SIZE, POLLHUP, POLLIN, sysError } from "../../app/net/tun/libc.ts";

const AF_UNIX = 1;
const SOCK_SEQPACKET = 5;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_PEERCRED = 17;
const SCM_RIGHTS = 1;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;
const MSG_CMSG_CLOEXEC = 0x40000000;
const SOCKADDR_UN_SIZE = 110;
const MSGHDR_SIZE = 56;
const CMSG_HDR = 16;

/** Largest message either side sends (the command's argv and environment). */
export const MAX_MESSAGE = 192 * 1024;
/** Descriptors a message may carry. */
const MAX_FDS = 4;

const { i32, i64, ptr: P } = FFIType;

function load() {
  return dlopen("libc.so.6", {
    socket: { args: [i32, i32, i32], returns: i32 },
    bind: { args: [i32, P, i32], returns: i32 },
    listen: { args: [i32, i32], returns: i32 },
    accept4: { args: [i32, P, P, i32], returns: i32 },
    connect: { args: [i32, P, i32], returns: i32 },
    getsockopt: { args: [i32, i32, i32, P, P], returns: i32 },
    sendmsg: { args: [i32, P, i32], returns: i64 },
    recvmsg: { args: [i32, P, i32], returns: i64 },
    poll: { args: [P, i32, i32], returns: i32 },
    close: { args: [i32], returns: i32 },
    isatty: { args: [i32], returns: i32 },
    tcgetattr: { args: [i32, P], returns: i32 },
    tcsetattr: { args: [i32, i32, P], returns: i32 },
  }).symbols;
}
let cached: ReturnType<typeof load> | undefined;
const sys = () => (cached ??= load());

function sockaddr(path: string): Uint8Array {
  const bytes = new TextEncoder().encode(path);
  if (bytes.length >= SOCKADDR_UN_SIZE - 2) throw new Error(`socket path too long: ${path}`);
  const a = new Uint8Array(SOCKADDR_UN_SIZE);
  new DataView(a.buffer).setUint16(0, AF_UNIX, true);
  a.set(bytes, 2);
  return a;
}

/** A listening SEQPACKET socket at `path` (non-blocking, close-on-exec). */
export function listenSeqpacket(path: string): number {
  const fd = sys().socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw sysError("socket(AF_UNIX)");
  const a = sockaddr(path);
  if (sys().bind(fd, a, a.length) < 0 || sys().listen(fd, 64) < 0) {
    const e = sysError(`bind/listen ${path}`);
    sys().close(fd);
    throw e;
  }
  return fd;
}

/** A pending connection (non-blocking), or undefined. */
export function acceptOne(listener: number): number | undefined {
  const fd = sys().accept4(listener, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd >= 0) return fd;
  const e = errno();
  if (e === EAGAIN || e === EINTR) return undefined;
  throw sysError("accept4");
}

/** Connects to the warden (blocking socket; the shim polls before reading). */
export function connectSeqpacket(path: string): number {
  const fd = sys().socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) throw sysError("socket(AF_UNIX)");
  const a = sockaddr(path);
  if (sys().connect(fd, a, a.length) < 0) {
    const e = sysError(`connect ${path}`);
    sys().close(fd);
    throw e;
  }
  return fd;
}

export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
}

/** The connecting process, as the kernel recorded it at connect(). */
export function peerCred(fd: number): PeerCred {
  const buf = new Uint8Array(12);
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, 12, true);
  if (sys().getsockopt(fd, SOL_SOCKET, SO_PEERCRED, buf, len) < 0) throw sysError("getsockopt(SO_PEERCRED)");
  const dv = new DataView(buf.buffer);
  return { pid: dv.getInt32(0, true), uid: dv.getUint32(4, true), gid: dv.getUint32(8, true) };
}

function msghdr(data: Uint8Array, control: Uint8Array): { m: Uint8Array; keep: Uint8Array[] } {
  const iov = new Uint8Array(16);
  const iv = new DataView(iov.buffer);
  iv.setBigUint64(0, BigInt(ptr(data)), true);
  iv.setBigUint64(8, BigInt(data.length), true);
  const m = new Uint8Array(MSGHDR_SIZE);
  const dv = new DataView(m.buffer);
  dv.setBigUint64(16, BigInt(ptr(iov)), true);
  dv.setBigUint64(24, 1n, true);
  if (control.length > 0) {
    dv.setBigUint64(32, BigInt(ptr(control)), true);
    dv.setBigUint64(40, BigInt(control.length), true);
  }
  return { m, keep: [iov, data, control] };
}

/** Sends one message, with `fds` attached (SCM_RIGHTS). False when the peer is gone. */
export function sendMessage(fd: number, value: unknown, fds: number[] = []): boolean {
  const data = new TextEncoder().encode(JSON.stringify(value));
  if (data.length > MAX_MESSAGE) throw new Error("message too large");
  let control = new Uint8Array(0);
  if (fds.length > 0) {
    const len = CMSG_HDR + 4 * fds.length;
    control = new Uint8Array((len + 7) & ~7);
    const dv = new DataView(control.buffer);
    dv.setBigUint64(0, BigInt(len), true);
    dv.setInt32(8, SOL_SOCKET, true);
    dv.setInt32(12, SCM_RIGHTS, true);
    fds.forEach((f, i) => dv.setInt32(CMSG_HDR + 4 * i, f, true));
  }
  const { m } = msghdr(data, control);
  for (;;) {
    const n = Number(sys().sendmsg(fd, m, MSG_NOSIGNAL));
    if (n >= 0) return true;
    const e = errno();
    if (e === EINTR) continue;
    if (e === EAGAIN) return false;
    return false;
  }
}

export type Received = { kind: "again" } | { kind: "eof" } | { kind: "message"; value: unknown; fds: number[] };

/** One non-blocking receive: a whole message (and its descriptors), EOF, or nothing yet. */
export function receiveMessage(fd: number): Received {
  const data = new Uint8Array(MAX_MESSAGE);
  const control = new Uint8Array(CMSG_HDR + 8 * MAX_FDS);
  const { m } = msghdr(data, control);
  const n = Number(sys().recvmsg(fd, m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC));
  if (n < 0) {
    const e = errno();
    if (e === EAGAIN || e === EINTR) return { kind: "again" };
    return { kind: "eof" };
  }
  const fds: number[] = [];
  const mdv = new DataView(m.buffer);
  const controllen = Number(mdv.getBigUint64(40, true));
  const cdv = new DataView(control.buffer);
  let off = 0;
  while (off + CMSG_HDR <= controllen) {
    const len = Number(cdv.getBigUint64(off, true));
    if (len < CMSG_HDR) break;
    if (cdv.getInt32(off + 8, true) === SOL_SOCKET && cdv.getInt32(off + 12, true) === SCM_RIGHTS) {
      for (let p = off + CMSG_HDR; p + 4 <= off + len; p += 4) fds.push(cdv.getInt32(p, true));
    }
    off += (len + 7) & ~7;
  }
  if (n === 0 && fds.length === 0) return { kind: "eof" };
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(data.subarray(0, n)));
  } catch {
    value = undefined;
  }
  return { kind: "message", value, fds };
}

/** Whether `fd` is readable (or closed) within `timeoutMs`. */
export function readable(fd: number, timeoutMs: number): boolean {
  const fds = new Uint8Array(POLLFD_SIZE);
  const dv = new DataView(fds.buffer);
  dv.setInt32(0, fd, true);
  dv.setInt16(4, POLLIN, true);
  if (sys().poll(fds, 1, timeoutMs) <= 0) return false;
  return (dv.getInt16(6, true) & (POLLIN | POLLHUP | POLLERR)) !== 0;
}

export function closeFd(fd: number): void {
  sys().close(fd);
}

export function isTty(fd: number): boolean {
  return sys().isatty(fd) === 1;
}

/** struct termios is 60 bytes on Linux (x86_64, aarch64); a little more is harmless. */
const TERMIOS_SIZE = 64;
const TCSANOW = 0;

/** The terminal's settings on `fd` (to put back later), or undefined when it is not a terminal. */
export function saveTerminal(fd: number): Uint8Array | undefined {
  const t = new Uint8Array(TERMIOS_SIZE);
  return sys().tcgetattr(fd, t) === 0 ? t : undefined;
}

export function restoreTerminal(fd: number, saved: Uint8Array): void {
  sys().tcsetattr(fd, TCSANOW, saved);
}
