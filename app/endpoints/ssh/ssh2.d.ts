// The part of ssh2 1.17's API the SSH endpoint uses, typed (the package ships
// no declarations and @types/ssh2 is not installed). Names follow ssh2's README.
declare module "ssh2" {
  import type { EventEmitter } from "node:events";
  import type { Duplex, Readable, Writable } from "node:stream";

  export interface ParsedKey {
    type: string;
    comment: string;
    getPublicSSH(): Buffer;
    getPrivatePEM(): string | null;
    sign(data: Buffer, algo?: string): Buffer | Error;
  }

  export const utils: {
    generateKeyPairSync(type: "ed25519"): { private: string; public: string };
    parseKey(data: string | Buffer, passphrase?: string | Buffer): ParsedKey | ParsedKey[] | Error;
  };

  export interface Algorithms {
    kex?: string[];
    cipher?: string[];
    serverHostKey?: string[];
    hmac?: string[];
    compress?: string[];
  }

  export interface ServerConfig {
    hostKeys: (string | Buffer | { key: string | Buffer | ParsedKey; passphrase?: string })[];
    algorithms?: Algorithms;
    ident?: string;
    banner?: string;
    greeting?: string;
    debug?: (message: string) => void;
  }

  export class Server extends EventEmitter {
    constructor(cfg: ServerConfig, listener?: (client: Connection) => void);
    injectSocket(socket: Duplex): void;
  }

  export interface AuthContext {
    method: "none" | "password" | "publickey" | "hostbased" | "keyboard-interactive";
    username: string;
    accept(): void;
    reject(methods?: string[], isPartial?: boolean): void;
  }

  export interface PtyInfo {
    cols: number;
    rows: number;
    width: number;
    height: number;
    term: string;
    modes: Record<string, number>;
  }

  export interface X11Info {
    single: boolean;
    protocol: string;
    /** ssh2 parses it as bytes. */
    cookie: string | Buffer;
    screen: number;
  }

  export interface TcpipInfo {
    srcIP: string;
    srcPort: number;
    destIP: string;
    destPort: number;
  }

  export interface ServerChannel extends Duplex {
    stderr: Writable;
    exit(status: number): void;
    exit(signalName: string, coreDumped: boolean, errorMessage: string): void;
    close(): void;
  }

  export interface ClientChannel extends Duplex {
    stderr: Readable;
    setWindow(rows: number, cols: number, height: number, width: number): void;
    signal(signalName: string): void;
    close(): void;
    on(event: "exit", listener: (code: number | null, signalName?: string, coreDumped?: boolean, description?: string) => void): this;
    on(event: "data", listener: (chunk: Buffer) => void): this;
    on(event: "close" | "end" | "finish" | "drain", listener: () => void): this;
    on(event: "error", listener: (err: Error) => void): this;
  }

  type Accept<T> = (() => T) | undefined;
  type Reject = (() => void) | undefined;

  export interface Session extends EventEmitter {
    on(event: "pty", listener: (accept: Accept<void>, reject: Reject, info: PtyInfo) => void): this;
    on(event: "env", listener: (accept: Accept<void>, reject: Reject, info: { key: string; val: string }) => void): this;
    on(event: "window-change", listener: (accept: Accept<void>, reject: Reject, info: { cols: number; rows: number; width: number; height: number }) => void): this;
    on(event: "x11", listener: (accept: Accept<void>, reject: Reject, info: X11Info) => void): this;
    on(event: "signal", listener: (accept: Accept<void>, reject: Reject, info: { name: string }) => void): this;
    on(event: "auth-agent", listener: (accept: Accept<void>, reject: Reject) => void): this;
    on(event: "shell", listener: (accept: () => ServerChannel, reject: Reject) => void): this;
    on(event: "exec", listener: (accept: () => ServerChannel, reject: Reject, info: { command: string }) => void): this;
    on(event: "subsystem", listener: (accept: () => ServerChannel, reject: Reject, info: { name: string }) => void): this;
    on(event: "close" | "eof" | "end", listener: () => void): this;
  }

  export interface Connection extends EventEmitter {
    on(event: "authentication", listener: (ctx: AuthContext) => void): this;
    on(event: "ready" | "end" | "close", listener: () => void): this;
    on(event: "error", listener: (err: Error) => void): this;
    on(event: "session", listener: (accept: () => Session, reject: () => void) => void): this;
    on(event: "tcpip", listener: (accept: () => ServerChannel, reject: () => void, info: TcpipInfo) => void): this;
    on(
      event: "request",
      listener: (accept: ((port?: number) => void) | undefined, reject: Reject, name: string, info: { bindAddr: string; bindPort: number }) => void,
    ): this;
    on(event: "handshake", listener: (negotiated: { kex: string; srvHostKey: string; cs: { cipher: string; mac: string }; sc: { cipher: string; mac: string } }) => void): this;
    end(): this;
    forwardOut(boundAddr: string, boundPort: number, remoteAddr: string, remotePort: number, cb: (err: Error | undefined, channel: ServerChannel) => void): this;
    x11(originAddr: string, originPort: number, cb: (err: Error | undefined, channel: ServerChannel) => void): this;
  }

  export interface ConnectConfig {
    sock: Duplex;
    username: string;
    privateKey?: string | Buffer;
    passphrase?: string | Buffer;
    password?: string;
    tryKeyboard?: boolean;
    hostVerifier?: (key: Buffer) => boolean;
    algorithms?: Algorithms;
    readyTimeout?: number;
    keepaliveInterval?: number;
    debug?: (message: string) => void;
    agent?: BaseAgent;
    agentForward?: boolean;
  }

  export class BaseAgent {
    getIdentities(cb: (err: Error | undefined, keys?: unknown[]) => void): void;
  }

  export interface TcpConnectionDetails {
    destIP: string;
    destPort: number;
    srcIP: string;
    srcPort: number;
  }

  export class Client extends EventEmitter {
    connect(cfg: ConnectConfig): this;
    end(): this;
    destroy(): this;
    exec(command: string, options: { pty?: Partial<PtyInfo> | boolean; env?: Record<string, string>; agentForward?: boolean; x11?: ClientX11 }, cb: (err: Error | undefined, channel: ClientChannel) => void): this;
    shell(window: Partial<PtyInfo> | false, options: { env?: Record<string, string>; agentForward?: boolean; x11?: ClientX11 }, cb: (err: Error | undefined, channel: ClientChannel) => void): this;
    subsys(name: string, cb: (err: Error | undefined, channel: ClientChannel) => void): this;
    forwardOut(srcIP: string, srcPort: number, dstIP: string, dstPort: number, cb: (err: Error | undefined, channel: ClientChannel) => void): this;
    forwardIn(bindAddr: string, bindPort: number, cb: (err: Error | undefined, bindPort: number) => void): this;
    unforwardIn(bindAddr: string, bindPort: number, cb: (err: Error | undefined) => void): this;
    on(event: "ready" | "end" | "close", listener: () => void): this;
    on(event: "error", listener: (err: Error) => void): this;
    on(event: "handshake", listener: (negotiated: { kex: string; srvHostKey: string; cs: { cipher: string; mac: string }; sc: { cipher: string; mac: string } }) => void): this;
    on(
      event: "keyboard-interactive",
      listener: (name: string, instructions: string, lang: string, prompts: { prompt: string; echo: boolean }[], finish: (answers: string[]) => void) => void,
    ): this;
    on(event: "tcp connection", listener: (details: TcpConnectionDetails, accept: () => ClientChannel, reject: () => void) => void): this;
    on(event: "x11", listener: (details: { srcIP: string; srcPort: number }, accept: () => ClientChannel, reject: () => void) => void): this;
  }

  export interface ClientX11 {
    single?: boolean;
    screen?: number;
    protocol?: string;
    cookie?: string | Buffer;
  }

  const ssh2: { Server: typeof Server; Client: typeof Client; BaseAgent: typeof BaseAgent; utils: typeof utils };
  export default ssh2;
}
