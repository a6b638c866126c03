// Opening the connection to the real PostgreSQL server: TCP, then TLS as the
// endpoint's sslmode says (libpq's meanings):
//   disable      plain TCP
//   prefer       TLS when the server offers it, unverified; else plain
//   require      TLS or nothing; the chain is verified when ca_cert is set
//   verify-full  TLS, chain (ca_cert, the system store: app/tls/trust.ts) and host name verified
// SSLRequest is sent first; the server answers one byte, 'S' or 'N'.
import tls from "node:tls";
import { upstreamTrust, type TrustStore } from "../../tls/trust.ts";
import type { Duplex } from "node:stream";
import { isIP } from "node:net";
import { dialTcp, type Dialer } from "../relay.ts";
import type { PostgresSettings } from "./spec.ts";
import type { Upstream } from "../spec.ts";
import { serializeSSLRequest } from "./wire/frontend.ts";
import { tlsServerEndPoint } from "./auth/channel-binding.ts";
import { NativeUpstream, type UpstreamStream } from "./upstream-native.ts";

export interface OpenedUpstream {
  socket: UpstreamStream;
  tls: boolean;
  /** tls-server-end-point data of the server's certificate, for SCRAM-SHA-256-PLUS. */
  channelBinding?: Uint8Array;
}

/** How long the TCP connect, the SSLRequest answer and the TLS handshake may take together. */
export const UPSTREAM_OPEN_TIMEOUT_MS = 15_000;

export async function openUpstream(
  to: Upstream,
  settings: Pick<PostgresSettings, "sslmode">,
  caCertPem: string | undefined,
  dial: Dialer = dialTcp,
  trust: TrustStore = upstreamTrust,
): Promise<OpenedUpstream> {
  // Plain TCP to the real address (no dialer of a test or a namespace in
  // between): Bun's native socket, the lighter path per message.
  if (settings.sslmode === "disable" && dial === dialTcp) {
    return { socket: await NativeUpstream.connect(to.host, to.port, UPSTREAM_OPEN_TIMEOUT_MS), tls: false };
  }
  const socket = dial(to.host, to.port);
  const timer = setTimeout(() => socket.destroy(new Error(`no answer from ${to.host}:${to.port} within ${UPSTREAM_OPEN_TIMEOUT_MS / 1000} s`)), UPSTREAM_OPEN_TIMEOUT_MS);
  try {
    await connected(socket);
    if (settings.sslmode === "disable") return { socket, tls: false };
    socket.write(serializeSSLRequest());
    const answer = await oneByte(socket);
    if (answer !== 0x53 /* S */) {
      if (settings.sslmode === "prefer") return { socket, tls: false };
      socket.destroy();
      throw new Error(`the server does not offer TLS (sslmode = ${settings.sslmode})`);
    }
    const verify = settings.sslmode === "verify-full" || caCertPem !== undefined;
    const secure = tls.connect({
      socket: socket as never,
      ...(isIP(to.host) === 0 ? { servername: to.host } : {}),
      rejectUnauthorized: verify,
      ...(verify ? { secureContext: trust.secureContext(caCertPem) } : {}),
      // verify-full checks the name; require with a CA checks the chain only (libpq's verify-ca).
      checkServerIdentity: settings.sslmode === "verify-full" ? tls.checkServerIdentity : () => undefined,
    });
    await new Promise<void>((resolve, reject) => {
      secure.once("secureConnect", resolve);
      secure.once("error", reject);
      socket.once("close", () => reject(new Error("the server closed the connection during the TLS handshake")));
    });
    const der = secure.getPeerCertificate()?.raw;
    const channelBinding = der ? tlsServerEndPoint(new Uint8Array(der)) : null;
    return { socket: secure, tls: true, ...(channelBinding ? { channelBinding } : {}) };
  } catch (e) {
    socket.destroy();
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

function connected(socket: Duplex): Promise<void> {
  const s = socket as Duplex & { connecting?: boolean };
  if (s.connecting === false) return Promise.resolve();
  return new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
    socket.once("close", () => reject(new Error("connection closed")));
  });
}

/** Reads exactly one byte; anything after it is a protocol violation (the server must wait for the handshake). */
function oneByte(socket: Duplex): Promise<number> {
  return new Promise((resolve, reject) => {
    const onData = (d: Buffer) => {
      cleanup();
      socket.pause();
      if (d.length > 1) reject(new Error("the server sent data after its answer to SSLRequest"));
      else resolve(d[0]!);
    };
    const onEnd = () => {
      cleanup();
      reject(new Error("the server closed the connection after SSLRequest"));
    };
    const cleanup = () => {
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("error", onEnd);
    };
    socket.on("data", onData);
    socket.once("end", onEnd);
    socket.once("error", onEnd);
  });
}
