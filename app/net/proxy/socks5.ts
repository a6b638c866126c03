// SOCKS5 server handshake (RFC 1928) with username/password auth (RFC 1929),
// as a pure state machine: bytes in, bytes to send and an outcome out.
// Only CONNECT is supported; the gateway turns the tunnel into a Flow.
import { formatIp } from "../ipaddr.ts";

export const SOCKS_VERSION = 0x05;
const AUTH_VERSION = 0x01;

export const Method = {
  NO_AUTH: 0x00,
  USERNAME_PASSWORD: 0x02,
  NO_ACCEPTABLE: 0xff,
} as const;

export const Command = { CONNECT: 0x01, BIND: 0x02, UDP_ASSOCIATE: 0x03 } as const;
export const AddressType = { IPV4: 0x01, DOMAIN: 0x03, IPV6: 0x04 } as const;

/** RFC 1928 §6 reply codes. */
export const Reply = {
  SUCCEEDED: 0x00,
  GENERAL_FAILURE: 0x01,
  NOT_ALLOWED: 0x02,
  NETWORK_UNREACHABLE: 0x03,
  HOST_UNREACHABLE: 0x04,
  CONNECTION_REFUSED: 0x05,
  COMMAND_NOT_SUPPORTED: 0x07,
  ADDRESS_TYPE_NOT_SUPPORTED: 0x08,
} as const;

export type Socks5Step =
  | { kind: "need-more"; send?: Uint8Array }
  | { kind: "connect"; host: string; port: number; username?: string; password?: string; rest: Uint8Array; send?: Uint8Array }
  | { kind: "fail"; reason: string; send?: Uint8Array };

type Phase = "greeting" | "auth" | "request" | "done";

export class Socks5Handshake {
  private buf: Uint8Array = new Uint8Array(0);
  private phase: Phase = "greeting";
  private username?: string;
  private password?: string;

  /** allowAnonymous: whether a client offering no authentication may proceed. */
  constructor(private readonly allowAnonymous: boolean) {}

  push(chunk: Uint8Array): Socks5Step {
    if (this.phase === "done") return { kind: "fail", reason: "handshake already finished" };
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    let sendParts: Uint8Array[] = [];
    for (;;) {
      const step = this.step();
      if (step.send) sendParts.push(step.send);
      if (step.kind === "progress") continue;
      const send = sendParts.length > 0 ? Buffer.concat(sendParts) : undefined;
      sendParts = [];
      if (step.kind === "need-more") return send ? { kind: "need-more", send } : { kind: "need-more" };
      this.phase = "done";
      if (step.kind === "fail") return { kind: "fail", reason: step.reason, ...(send ? { send } : {}) };
      return { ...step.connect, ...(send ? { send } : {}) };
    }
  }

  private step():
    | { kind: "progress"; send?: Uint8Array }
    | { kind: "need-more"; send?: undefined }
    | { kind: "fail"; reason: string; send?: Uint8Array }
    | { kind: "connect"; connect: Extract<Socks5Step, { kind: "connect" }>; send?: undefined } {
    const b = this.buf;
    switch (this.phase) {
      case "greeting": {
        if (b.length < 2) return { kind: "need-more" };
        if (b[0] !== SOCKS_VERSION) return { kind: "fail", reason: "not SOCKS5" };
        const n = b[1]!;
        if (b.length < 2 + n) return { kind: "need-more" };
        const methods = b.subarray(2, 2 + n);
        this.buf = b.subarray(2 + n);
        if (methods.includes(Method.USERNAME_PASSWORD)) {
          this.phase = "auth";
          return { kind: "progress", send: Uint8Array.of(SOCKS_VERSION, Method.USERNAME_PASSWORD) };
        }
        if (methods.includes(Method.NO_AUTH) && this.allowAnonymous) {
          this.phase = "request";
          return { kind: "progress", send: Uint8Array.of(SOCKS_VERSION, Method.NO_AUTH) };
        }
        return {
          kind: "fail",
          reason: "no acceptable authentication method",
          send: Uint8Array.of(SOCKS_VERSION, Method.NO_ACCEPTABLE),
        };
      }
      case "auth": {
        // RFC 1929: VER ULEN UNAME PLEN PASSWD
        if (b.length < 2) return { kind: "need-more" };
        if (b[0] !== AUTH_VERSION) return { kind: "fail", reason: "bad auth version", send: Uint8Array.of(AUTH_VERSION, 1) };
        const ulen = b[1]!;
        if (b.length < 3 + ulen) return { kind: "need-more" };
        const plen = b[2 + ulen]!;
        if (b.length < 3 + ulen + plen) return { kind: "need-more" };
        const dec = new TextDecoder();
        this.username = dec.decode(b.subarray(2, 2 + ulen));
        this.password = dec.decode(b.subarray(3 + ulen, 3 + ulen + plen));
        this.buf = b.subarray(3 + ulen + plen);
        this.phase = "request";
        // Whether the token is valid is the caller's decision; the handshake
        // acknowledges here and the caller fails the CONNECT if it is not.
        return { kind: "progress", send: Uint8Array.of(AUTH_VERSION, 0) };
      }
      case "request": {
        // VER CMD RSV ATYP DST.ADDR DST.PORT
        if (b.length < 5) return { kind: "need-more" };
        if (b[0] !== SOCKS_VERSION) return { kind: "fail", reason: "bad request version" };
        const cmd = b[1]!;
        const atyp = b[3]!;
        let host: string;
        let off: number;
        if (atyp === AddressType.IPV4) {
          if (b.length < 10) return { kind: "need-more" };
          host = `${b[4]}.${b[5]}.${b[6]}.${b[7]}`;
          off = 8;
        } else if (atyp === AddressType.DOMAIN) {
          const len = b[4]!;
          if (b.length < 5 + len + 2) return { kind: "need-more" };
          host = new TextDecoder().decode(b.subarray(5, 5 + len));
          off = 5 + len;
          if (len === 0 || !/^[A-Za-z0-9._-]+$/.test(host)) {
            return { kind: "fail", reason: "invalid domain name", send: reply(Reply.GENERAL_FAILURE) };
          }
        } else if (atyp === AddressType.IPV6) {
          if (b.length < 22) return { kind: "need-more" };
          // The same text form CONNECT [v6]:port gives, so events agree.
          host = formatIp(b.subarray(4, 20));
          off = 20;
        } else {
          return { kind: "fail", reason: "unsupported address type", send: reply(Reply.ADDRESS_TYPE_NOT_SUPPORTED) };
        }
        const port = (b[off]! << 8) | b[off + 1]!;
        const rest = b.slice(off + 2);
        if (cmd !== Command.CONNECT) {
          return { kind: "fail", reason: "only CONNECT is supported", send: reply(Reply.COMMAND_NOT_SUPPORTED) };
        }
        const connect: Extract<Socks5Step, { kind: "connect" }> = { kind: "connect", host, port, rest };
        if (this.username !== undefined) connect.username = this.username;
        if (this.password !== undefined) connect.password = this.password;
        return { kind: "connect", connect };
      }
      case "done":
        return { kind: "fail", reason: "handshake already finished" };
    }
  }
}

/** A reply with BND.ADDR 0.0.0.0:0 (clients ignore it for CONNECT). */
export function reply(code: number): Uint8Array {
  return Uint8Array.of(SOCKS_VERSION, code, 0x00, AddressType.IPV4, 0, 0, 0, 0, 0, 0);
}
