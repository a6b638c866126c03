// bun:ffi bindings to the few libc calls a TUN device needs, and the
// constants of <linux/if_tun.h>, <linux/virtio_net.h>, <fcntl.h>, <poll.h>,
// <sys/eventfd.h> and <linux/sockios.h> under their C names.
//
// Linux only (x86_64 and aarch64: the numeric values below are the same on
// both). Sizes returned by read/write are declared as 32-bit: a packet is
// far below 2 GiB and -1 survives the truncation of ssize_t.
//
// `errno` is read through __errno_location() right after the failing call;
// JS runs between the two, so callers treat errno as a hint for counters
// and messages, never as the only signal (a -1 from read() ends a drain
// whatever errno says).
import { dlopen, FFIType, read as ffiRead, type Pointer } from "bun:ffi";

// <fcntl.h>
export const O_RDWR = 0o2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;

// <asm-generic/errno-base.h>
export const EINTR = 4;
export const EAGAIN = 11;
export const EBADF = 9;
export const ENOBUFS = 105;
export const EBUSY = 16;
export const EINVAL = 22;
export const EPERM = 1;
export const ENOENT = 2;

// <poll.h>
export const POLLIN = 0x001;
export const POLLERR = 0x008;
export const POLLHUP = 0x010;
export const POLLNVAL = 0x020;
/** struct pollfd { int fd; short events; short revents; } */
export const POLLFD_SIZE = 8;

// <sys/eventfd.h>
export const EFD_NONBLOCK = O_NONBLOCK;
export const EFD_CLOEXEC = O_CLOEXEC;

// <sys/socket.h>, <linux/sockios.h>
export const AF_INET = 2;
export const SOCK_DGRAM = 2;
export const SIOCGIFMTU = 0x8921;
export const SIOCSIFMTU = 0x8922;

// <net/if.h>: struct ifreq is IFNAMSIZ bytes of name then a 24-byte union
// (ifr_flags: short, ifr_mtu: int, both at offset 16).
export const IFNAMSIZ = 16;
export const IFREQ_SIZE = 40;
export const IFREQ_UNION_OFFSET = 16;

// <linux/if_tun.h>: ioctls (_IOW/_IOR('T', n, int|unsigned int))
export const TUNSETNOCSUM = 0x400454c8;
export const TUNSETDEBUG = 0x400454c9;
export const TUNSETIFF = 0x400454ca;
export const TUNSETPERSIST = 0x400454cb;
export const TUNSETOWNER = 0x400454cc;
export const TUNSETLINK = 0x400454cd;
export const TUNSETGROUP = 0x400454ce;
export const TUNGETFEATURES = 0x800454cf;
export const TUNSETOFFLOAD = 0x400454d0;
export const TUNSETTXFILTER = 0x400454d1;
export const TUNGETIFF = 0x800454d2;
export const TUNGETSNDBUF = 0x800454d3;
export const TUNSETSNDBUF = 0x400454d4;
export const TUNGETVNETHDRSZ = 0x800454d7;
export const TUNSETVNETHDRSZ = 0x400454d8;

// <linux/if_tun.h>: TUNSETIFF flags
export const IFF_TUN = 0x0001;
export const IFF_TAP = 0x0002;
export const IFF_NAPI = 0x0010;
export const IFF_NAPI_FRAGS = 0x0020;
export const IFF_NO_CARRIER = 0x0040;
export const IFF_NO_PI = 0x1000;
export const IFF_ONE_QUEUE = 0x2000;
export const IFF_VNET_HDR = 0x4000;
export const IFF_TUN_EXCL = 0x8000;
export const IFF_MULTI_QUEUE = 0x0100;
export const IFF_ATTACH_QUEUE = 0x0200;
export const IFF_DETACH_QUEUE = 0x0400;
export const IFF_PERSIST = 0x0800;

// <linux/if_tun.h>: TUNSETOFFLOAD features
export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
export const TUN_F_TSO_ECN = 0x08;
export const TUN_F_UFO = 0x10;
export const TUN_F_USO4 = 0x20;
export const TUN_F_USO6 = 0x40;

// <linux/virtio_net.h>: struct virtio_net_hdr (10 bytes) + num_buffers
// (struct virtio_net_hdr_mrg_rxbuf, 12 bytes), fields in host byte order.
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
export const VIRTIO_NET_HDR_F_DATA_VALID = 2;
export const VIRTIO_NET_HDR_GSO_NONE = 0;
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
export const VIRTIO_NET_HDR_GSO_UDP = 3;
export const VIRTIO_NET_HDR_GSO_TCPV6 = 4;
export const VIRTIO_NET_HDR_GSO_UDP_L4 = 5;
export const VIRTIO_NET_HDR_GSO_ECN = 0x80;
export const VIRTIO_NET_HDR_LEN = 12;

const { i32, u32, u64, ptr } = FFIType;

function loadAll() {
  const lib = dlopen("libc.so.6", {
    open: { args: [ptr, i32, u32], returns: i32 },
    close: { args: [i32], returns: i32 },
    // ioctl is variadic; integer and pointer arguments pass like fixed ones
    // on x86_64 and aarch64 Linux. Bound twice: by pointer, and by value
    // (ioctl_int, the same symbol from a second dlopen).
    ioctl: { args: [i32, u64, ptr], returns: i32 },
    read: { args: [i32, ptr, u64], returns: i32 },
    write: { args: [i32, ptr, u64], returns: i32 },
    poll: { args: [ptr, u64, i32], returns: i32 },
    eventfd: { args: [u32, i32], returns: i32 },
    socket: { args: [i32, i32, i32], returns: i32 },
    __errno_location: { args: [], returns: ptr },
    strerror: { args: [i32], returns: FFIType.cstring },
  });
  const byValue = dlopen("libc.so.6", {
    ioctl: { args: [i32, u64, u64], returns: i32 },
  });
  return { ...lib.symbols, ioctl_int: byValue.symbols.ioctl };
}
export type Libc = ReturnType<typeof loadAll>;

let cached: Libc | null = null;

/** The bound libc (loaded once per thread: each Worker binds its own). */
export function libc(): Libc {
  if (cached === null) cached = loadAll();
  return cached;
}

/** errno of the calling thread (read right after the failing call). */
export function errno(): number {
  const p = libc().__errno_location();
  return p === null ? 0 : ffiRead.i32(p as Pointer, 0);
}

export function strerror(code: number): string {
  return String(libc().strerror(code));
}

/** An Error naming the call and errno, e.g. "ioctl(TUNSETIFF): Operation not permitted (errno 1)". */
export function sysError(what: string, code = errno()): Error & { errno: number } {
  const e = new Error(`${what}: ${strerror(code)} (errno ${code})`) as Error & { errno: number };
  e.errno = code;
  return e;
}

/** NUL-terminated C string bytes for `s`. */
export function cString(s: string): Uint8Array {
  const b = new TextEncoder().encode(s);
  const out = new Uint8Array(b.length + 1);
  out.set(b);
  return out;
}
