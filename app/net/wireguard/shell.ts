/**
 * The userspace-mode WireGuard shell: the only code around the sans-IO
 * WireGuardDevice that touches a socket or the clock.
 *
 * Pipeline:
 *   1. UDP in (udp.ts: node:dgram by default): every datagram -> device.receiveDatagram
 *   2. outputs: "packet" -> the link's inbox, "datagram" -> the outbox,
 *      "drop" -> counters (debug log), "peer-event" -> log
 *   3. the inbox goes to the PacketLink handler as one batch after the I/O
 *      phase (setImmediate), so a socket read's datagrams arrive together;
 *      the outbox goes to sendMany() one microtask after the work that
 *      queued it
 *   4. link.write(packet) -> device.sendPacket (cryptokey routing picks the
 *      peer) -> step 2
 *   5. the clock: one timer armed at device.nextTimerAt(), re-armed after
 *      every flush; when it fires, device.tick(now) -> step 2
 *
 * The decrypted tunnel is exposed as a PacketLink, so the stack cannot tell
 * it from a TUN device (kernel mode).
 */
import { log, logLevelEnabled } from "../../log.ts";
import type { LinkStats, PacketLink } from "../tun/link.ts";
import { emptyStats } from "../tun/link.ts";
import { getDefaultCrypto, type WgCrypto } from "./crypto.ts";
import { loadSodiumCrypto } from "./crypto-sodium.ts";
import { bindUdp, type UdpBackend, type UdpTransport } from "./udp.ts";
import { WireGuardDevice, type DropReason, type Endpoint, type Output, type PeerConfig, type PeerStatus } from "./device.ts";

export { generateKeyPair, loadOrCreatePrivateKey, publicKeyOf, isWireGuardKey, type KeyPair, type LoadedKey } from "./keys.ts";

/** Inner packets held for a link with no handler yet (then dropped). */
const INBOX_LIMIT = 1024;
/** Datagrams held while the UDP socket is full (then dropped). */
const OUTBOX_LIMIT = 4096;
/** nextTimerAt() walks every peer: do it at most this often while traffic flows. */
const TIMER_RECOMPUTE_MS = 20;
/** Socket buffers: bursts from many devices land here while we decrypt. */
const SOCKET_BUFFER_SIZE = 4 << 20;

export interface ShellPeerConfig {
  /** base64 (or 32 bytes) */
  publicKey: string | Uint8Array;
  allowedIPs: readonly string[];
  presharedKey?: string | Uint8Array;
  /** seconds; 0 or absent: off */
  persistentKeepalive?: number;
  /** Only needed when we must initiate before the device has contacted us. */
  endpoint?: Endpoint;
}

export interface UserspaceWireGuardOptions {
  listen: { host: string; port: number };
  /** base64 or 32 bytes */
  privateKey: string | Uint8Array;
  peers?: readonly ShellPeerConfig[];
  /** Milliseconds since the Unix epoch (TAI64N is derived from it). Default Date.now. */
  now?: () => number;
  /** Default: libsodium when it loads, else the JS backend. */
  crypto?: WgCrypto;
  /** Inner MTU. Default 1420 (wg-quick's). */
  mtu?: number;
  /** The link's name (logs, status). Default "wg-userspace". */
  name?: string;
  /**
   * UDP socket implementation. Default "node": node:dgram can size SO_RCVBUF,
   * which decides burst loss (measured 54k pkt/s vs 22k for Bun.udpSocket with
   * net.core.rmem_max raised; see udp.ts).
   */
  udp?: UdpBackend;
  /** SO_RCVBUF/SO_SNDBUF in bytes ("node" backend only; capped by net.core.rmem_max/wmem_max). Default 4 MiB. */
  socketBufferSize?: number;
}

export interface WireGuardPeerInfo extends PeerStatus {
  /** ms since the Unix epoch, undefined before the first handshake */
  lastHandshake: number | undefined;
}

export interface ShellStats extends LinkStats {
  udpRxDatagrams: number;
  udpRxBytes: number;
  udpTxDatagrams: number;
  udpTxBytes: number;
  /** datagrams dropped because the socket stayed full */
  udpTxDropped: number;
  /** engine drops by reason */
  drops: Partial<Record<DropReason, number>>;
}

export interface UserspaceWireGuard {
  /** our public key (base64), for peers' configs */
  readonly publicKey: string;
  /** the bound UDP address */
  readonly address: { host: string; port: number };
  /** the decrypted tunnel: inner IP packets of every peer */
  readonly link: PacketLink;
  readonly crypto: string;
  addPeer(cfg: ShellPeerConfig): string;
  /** Removes the peer; its sessions end at once (later packets from it are dropped). */
  removePeer(publicKey: string): boolean;
  peers(): WireGuardPeerInfo[];
  stats(): ShellStats;
  close(): void;
}

/** Binds the UDP socket and starts the engine. */
export async function startUserspaceWireGuard(opts: UserspaceWireGuardOptions): Promise<UserspaceWireGuard> {
  const crypto = opts.crypto ?? loadSodiumCrypto() ?? getDefaultCrypto();
  const shell = new Shell(opts, crypto);
  await shell.bind(opts);
  for (const p of opts.peers ?? []) shell.addPeer(p);
  log.info("wireguard userspace listening", {
    host: shell.address.host,
    port: shell.address.port,
    public_key: shell.publicKey,
    crypto: crypto.name,
    peers: opts.peers?.length ?? 0,
  });
  return shell;
}

class Shell implements UserspaceWireGuard {
  readonly device: WireGuardDevice;
  readonly publicKey: string;
  readonly link: PacketLink;
  readonly crypto: string;
  address = { host: "", port: 0 };
  #now: () => number;
  #sock: UdpTransport | undefined;
  #closed = false;
  // link side
  #handler: ((packets: Uint8Array[]) => void) | undefined;
  #inbox: Uint8Array[] = [];
  #stats: ShellStats = {
    ...emptyStats(),
    udpRxDatagrams: 0,
    udpRxBytes: 0,
    udpTxDatagrams: 0,
    udpTxBytes: 0,
    udpTxDropped: 0,
    drops: {},
  };
  // UDP side: flat [data, port, address, ...] as sendMany() takes it
  #outbox: (Uint8Array | number | string)[] = [];
  #socketFull = false;
  #flushScheduled = false;
  #inboxScheduled = false;
  // clock
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Number.POSITIVE_INFINITY;
  #recomputeAfter = 0;

  constructor(opts: UserspaceWireGuardOptions, crypto: WgCrypto) {
    this.#now = opts.now ?? Date.now;
    this.device = new WireGuardDevice({ privateKey: opts.privateKey, now: this.#now(), crypto, mtu: opts.mtu });
    this.publicKey = this.device.publicKey;
    this.crypto = crypto.name;
    this.link = new TunnelLink(this, opts.name ?? "wg-userspace", this.device.mtu);
  }

  async bind(opts: UserspaceWireGuardOptions): Promise<void> {
    this.#sock = await bindUdp(
      { host: opts.listen.host, port: opts.listen.port, backend: opts.udp ?? "node",
        recvBufferSize: opts.socketBufferSize ?? SOCKET_BUFFER_SIZE,
        sendBufferSize: opts.socketBufferSize ?? SOCKET_BUFFER_SIZE,
      },
      {
        datagram: (data, port, address) => this.#receive(data, port, address),
        drain: () => {
          this.#socketFull = false;
          this.#flushOutbox();
        },
        error: (err) => log.warn("wireguard udp socket error", { error: err }),
      },
    );
    this.address = { host: this.#sock.host, port: this.#sock.port };
  }

  // -------------------------------------------------------------------------
  // Peers
  // -------------------------------------------------------------------------

  addPeer(cfg: ShellPeerConfig): string {
    const pc: PeerConfig = {
      publicKey: cfg.publicKey,
      allowedIPs: cfg.allowedIPs,
      presharedKey: cfg.presharedKey,
      persistentKeepalive: cfg.persistentKeepalive,
      endpoint: cfg.endpoint,
    };
    const id = this.device.addPeer(pc);
    log.info("wireguard peer added", { peer: id, allowed_ips: cfg.allowedIPs.join(","), psk: cfg.presharedKey !== undefined });
    // persistent keepalive / an endpoint may have set timers
    this.#recomputeAfter = 0;
    this.#scheduleFlush();
    return id;
  }

  removePeer(publicKey: string): boolean {
    const ok = this.device.removePeer(publicKey);
    if (ok) log.info("wireguard peer removed", { peer: publicKey });
    this.#recomputeAfter = 0;
    this.#scheduleFlush();
    return ok;
  }

  peers(): WireGuardPeerInfo[] {
    const out: WireGuardPeerInfo[] = [];
    for (const id of this.device.peers()) {
      const s = this.device.peerStatus(id);
      if (s !== undefined) out.push(s);
    }
    return out;
  }

  stats(): ShellStats {
    return { ...this.#stats, drops: { ...this.#stats.drops } };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#sock?.close();
    for (const id of this.device.peers()) this.device.removePeer(id);
    this.#inbox = [];
    this.#outbox = [];
    log.info("wireguard userspace closed", { port: this.address.port });
  }

  // -------------------------------------------------------------------------
  // Data path
  // -------------------------------------------------------------------------

  #receive(data: Uint8Array, port: number, address: string): void {
    if (this.#closed) return;
    this.#stats.udpRxDatagrams++;
    this.#stats.udpRxBytes += data.length;
    this.#handle(this.device.receiveDatagram(data, { address, port }, this.#now()));
  }

  /** link.write: true when the packet was routed to a peer (sent or staged for a handshake). */
  write(packet: Uint8Array): boolean {
    if (this.#closed) {
      this.#stats.txDropped++;
      return false;
    }
    // the engine may stage the packet until a handshake completes: keep our own copy
    const out = this.device.sendPacket(packet.slice(), this.#now());
    let routed = true;
    for (const o of out) if (o.kind === "drop" && (o.reason === "no-route" || o.reason === "invalid-inner-packet")) routed = false;
    if (routed) {
      this.#stats.txPackets++;
      this.#stats.txBytes += packet.length;
    } else {
      this.#stats.txDropped++;
    }
    this.#handle(out);
    return routed;
  }

  setHandler(h: (packets: Uint8Array[]) => void): void {
    this.#handler = h;
    if (this.#inbox.length > 0) this.#scheduleInbox();
  }

  #handle(out: Output[]): void {
    let inbound = false;
    for (const o of out) {
      switch (o.kind) {
        case "datagram":
          if (this.#outbox.length >= OUTBOX_LIMIT * 3) {
            this.#stats.udpTxDropped++;
            break;
          }
          this.#outbox.push(o.data, o.to.port, o.to.address);
          break;
        case "packet":
          if (this.#handler === undefined && this.#inbox.length >= INBOX_LIMIT) {
            this.#stats.rxDropped++;
            break;
          }
          this.#inbox.push(o.data);
          inbound = true;
          this.#stats.rxPackets++;
          this.#stats.rxBytes += o.data.length;
          break;
        case "drop": {
          const d = this.#stats.drops;
          d[o.reason] = (d[o.reason] ?? 0) + 1;
          if (logLevelEnabled("debug")) log.debug("wireguard drop", { reason: o.reason, peer: o.peer });
          break;
        }
        case "peer-event":
          log.info(`wireguard peer ${o.event}`, {
            peer: o.peer,
            endpoint: o.endpoint === undefined ? undefined : `${o.endpoint.address}:${o.endpoint.port}`,
          });
          break;
        default: {
          const never: never = o;
          throw new Error(`wireguard shell: unknown output ${JSON.stringify(never)}`);
        }
      }
    }
    if (inbound) this.#scheduleInbox();
    this.#scheduleFlush();
  }

  /** Outgoing datagrams and the timer: one microtask after the work that queued them. */
  #scheduleFlush(): void {
    if (this.#flushScheduled || this.#closed) return;
    this.#flushScheduled = true;
    queueMicrotask(() => this.#flush());
  }

  #flush(): void {
    this.#flushScheduled = false;
    if (this.#closed) return;
    this.#flushOutbox();
    this.#armTimer(this.#now(), false);
  }

  /**
   * Decrypted packets go to the stack after the I/O phase, not after each
   * datagram's callback: what one socket read returned then arrives as one
   * batch (one pass of the stack, one ACK per connection, one upstream
   * write), where a microtask would hand it over packet by packet. Replies
   * still leave at once (#scheduleFlush): delaying ACKs slowed senders.
   */
  #scheduleInbox(): void {
    if (this.#inboxScheduled || this.#closed) return;
    this.#inboxScheduled = true;
    setImmediate(() => this.#deliverInbox());
  }

  #deliverInbox(): void {
    this.#inboxScheduled = false;
    if (this.#closed || this.#inbox.length === 0 || this.#handler === undefined) return;
    const batch = this.#inbox;
    this.#inbox = [];
    this.#stats.rxBatches++;
    try {
      this.#handler(batch);
    } catch (e) {
      log.error("wireguard link handler threw", { error: e });
    }
  }

  #flushOutbox(): void {
    const sock = this.#sock;
    if (this.#socketFull || sock === undefined || this.#outbox.length === 0 || this.#closed) return;
    const box = this.#outbox;
    const count = box.length / 3;
    let sent: number;
    try {
      sent = sock.sendMany(box);
    } catch (e) {
      // e.g. an unreachable address family: these datagrams are lost, as UDP is
      log.debug("wireguard udp send failed", { error: e, datagrams: count });
      this.#stats.udpTxDropped += count;
      this.#outbox = [];
      return;
    }
    for (let i = 0; i < sent * 3; i += 3) this.#stats.udpTxBytes += (box[i] as Uint8Array).length;
    this.#stats.udpTxDatagrams += sent;
    if (sent === count) {
      this.#outbox = [];
    } else {
      this.#outbox = box.slice(sent * 3);
      this.#socketFull = true; // drain() resumes
    }
  }

  // -------------------------------------------------------------------------
  // Clock
  // -------------------------------------------------------------------------

  /** Keeps one timer armed at the device's next deadline. */
  #armTimer(now: number, force: boolean): void {
    if (this.#closed) return;
    let at: number;
    if (force || now >= this.#recomputeAfter) {
      this.#recomputeAfter = now + TIMER_RECOMPUTE_MS;
      at = this.device.nextTimerAt() ?? Number.POSITIVE_INFINITY;
    } else {
      // skipped the walk over the peers: look again soon in case a deadline moved earlier
      at = this.#recomputeAfter;
    }
    if (this.#timer !== undefined && this.#timerAt <= at) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = at;
    if (at === Number.POSITIVE_INFINITY) return;
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, at - now));
    this.#timer.unref?.();
  }

  #fire(): void {
    this.#timer = undefined;
    this.#timerAt = Number.POSITIVE_INFINITY;
    if (this.#closed) return;
    const now = this.#now();
    const next = this.device.nextTimerAt();
    if (next !== undefined && next <= now) this.#handle(this.device.tick(now));
    this.#flushOutbox();
    this.#armTimer(now, true);
  }
}

/** The PacketLink face of the shell (what the stack sees). */
class TunnelLink implements PacketLink {
  constructor(
    readonly shell: Shell,
    readonly name: string,
    readonly mtu: number,
  ) {}
  onPackets(handler: (packets: Uint8Array[]) => void): void {
    this.shell.setHandler(handler);
  }
  write(packet: Uint8Array): boolean {
    return this.shell.write(packet);
  }
  close(): void {
    this.shell.close();
  }
}
