// The few system calls the client needs beyond what app/net/tun/libc.ts
// binds, through bun:ffi (Linux, x86_64 and aarch64: the struct layouts
// below are LP64 and identical on both):
//
//   - sendmsg/recvmsg with SCM_RIGHTS: the inner stage creates the TUN
//     device inside the new network namespace and hands its fd to the
//     outer process over the socketpair Bun.spawn gives as fd 3;
//   - poll with a timeout on one fd (is the other end there still?);
//   - getuid/getgid are in node:process; isatty from node:tty.
import { dlopen, FFIType, ptr } from "bun:ffi";
import { errno, POLLIN, POLLHUP, POLLERR, POLLFD_SIZE, sysError, EAGAIN, EINTR } from "../app/net/tun/libc.ts";

// <sys/socket.h>
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const MSG_DONTWAIT = 0x40;
const MSG_CMSG_CLOEXEC = 0x40000000;

// struct msghdr (LP64): name 0, namelen 8, iov 16, iovlen 24, control 32, controllen 40, flags 48
const MSGHDR_SIZE = 56;
// struct cmsghdr: len (size_t) 0, level 8, type 12, data 16
const CMSG_HDR = 16;
const CMSG_SPACE_INT = 24; // CMSG_SPACE(sizeof(int))
const CMSG_LEN_INT = 20; // CMSG_LEN(sizeof(int))

const { i32, i64, ptr: P } = FFIType;

function load() {
  return dlopen("libc.so.6", {
    sendmsg: { args: [i32, P, i32], returns: i64 },
    recvmsg: { args: [i32, P, i32], returns: i64 },
    poll: { args: [P, i32, i32], returns: i32 },
  }).symbols;
}
let cached: ReturnType<typeof load> | undefined;
const sys = () => (cached ??= load());

function msghdr(iov: Uint8Array, control: Uint8Array): Uint8Array {
  const m = new Uint8Array(MSGHDR_SIZE);
  const dv = new DataView(m.buffer);
  dv.setBigUint64(16, BigInt(ptr(iov)), true);
  dv.setBigUint64(24, 1n, true);
  dv.setBigUint64(32, BigInt(ptr(control)), true);
  dv.setBigUint64(40, BigInt(control.length), true);
  return m;
}

function iovec(buf: Uint8Array): Uint8Array {
  const v = new Uint8Array(16);
  const dv = new DataView(v.buffer);
  dv.setBigUint64(0, BigInt(ptr(buf)), true);
  dv.setBigUint64(8, BigInt(buf.length), true);
  return v;
}

/** Sends `data` (at least one byte) with `fd` attached as SCM_RIGHTS. Throws on failure. */
export function sendFd(sock: number, fd: number, data: Uint8Array): void {
  const control = new Uint8Array(CMSG_SPACE_INT);
  const dv = new DataView(control.buffer);
  dv.setBigUint64(0, BigInt(CMSG_LEN_INT), true);
  dv.setInt32(8, SOL_SOCKET, true);
  dv.setInt32(12, SCM_RIGHTS, true);
  dv.setInt32(CMSG_HDR, fd, true);
  const iov = iovec(data);
  const m = msghdr(iov, control);
  for (;;) {
    const n = Number(sys().sendmsg(sock, m, 0));
    if (n >= 0) return;
    if (errno() !== EINTR) throw sysError("sendmsg(SCM_RIGHTS)");
  }
}

export type RecvFdResult =
  | { kind: "again" }
  | { kind: "eof" }
  | { kind: "message"; data: Uint8Array; fd: number | undefined };

/** One non-blocking recvmsg: a message (with the fd passed along, if any), EOF, or nothing yet. */
export function recvFd(sock: number): RecvFdResult {
  const buf = new Uint8Array(256);
  const control = new Uint8Array(CMSG_SPACE_INT * 4);
  const iov = iovec(buf);
  const m = msghdr(iov, control);
  const n = Number(sys().recvmsg(sock, m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC));
  if (n < 0) {
    const e = errno();
    if (e === EAGAIN || e === EINTR) return { kind: "again" };
    throw sysError("recvmsg");
  }
  if (n === 0) return { kind: "eof" };
  const mdv = new DataView(m.buffer);
  const controllen = Number(mdv.getBigUint64(40, true));
  let fd: number | undefined;
  const cdv = new DataView(control.buffer);
  let off = 0;
  while (off + CMSG_HDR <= controllen) {
    const len = Number(cdv.getBigUint64(off, true));
    if (len < CMSG_HDR) break;
    if (cdv.getInt32(off + 8, true) === SOL_SOCKET && cdv.getInt32(off + 12, true) === SCM_RIGHTS && len >= CMSG_LEN_INT) {
      fd = cdv.getInt32(off + CMSG_HDR, true);
    }
    off += (len + 7) & ~7;
  }
  return { kind: "message", data: buf.slice(0, n), fd };
}

/** poll() one fd for input (or hang-up) for at most `timeoutMs`; true when it is readable or closed. */
export function pollReadable(fd: number, timeoutMs: number): boolean {
  const fds = new Uint8Array(POLLFD_SIZE);
  const dv = new DataView(fds.buffer);
  dv.setInt32(0, fd, true);
  dv.setInt16(4, POLLIN, true);
  const n = sys().poll(fds, 1, timeoutMs);
  if (n <= 0) return false;
  return (dv.getInt16(6, true) & (POLLIN | POLLHUP | POLLERR)) !== 0;
}
