// Agent forwarding through the gateway, when a rule allows it (ssh2 1.17's
// internals, in this one module): the upstream's `auth-agent@openssh.com`
// channels reach ssh2's Client through its `agent` (getStream), and each one
// is carried to the agent's own forwarded agent as a channel the gateway's
// server opens toward the device. ssh2's Server has no public call to open
// that channel type; its Protocol has (openssh_authAgent), and the channel
// table turns the confirmation into a Channel as for its own opens.
import ssh2, { type Connection, type ServerChannel } from "ssh2";
import type { Duplex } from "node:stream";

/** ssh2's defaults for a channel the server opens (lib/Channel.js MAX_WINDOW, lib/protocol/constants PACKET_SIZE). */
const MAX_WINDOW = 2 * 1024 * 1024;
const PACKET_SIZE = 32 * 1024;

interface ServerInternals {
  _chanMgr: { add(cb: unknown): number };
  _protocol: { openssh_authAgent(chan: number, initWindow: number, maxPacket: number): void };
}

/** Opens an `auth-agent@openssh.com` channel toward the device (which refuses it unless its session asked for forwarding). */
export function openAgentChannel(conn: Connection, cb: (err: Error | undefined, channel?: ServerChannel) => void): void {
  const c = conn as unknown as ServerInternals;
  const wrapper = Object.assign((err: Error | undefined, channel?: ServerChannel) => cb(err, channel), { type: "auth-agent@openssh.com" });
  const id = c._chanMgr.add(wrapper);
  if (id === -1) return cb(new Error("no free channels"));
  c._protocol.openssh_authAgent(id, MAX_WINDOW, PACKET_SIZE);
}

/**
 * The agent ssh2's upstream Client is given: it holds no key of its own (the
 * gateway logs in with the credential, never with the device's agent), and
 * each stream it hands out is a channel to the device's forwarded agent.
 */
export class ForwardedAgent extends ssh2.BaseAgent {
  /** The device's connection, once it is authenticated. */
  toward: Connection | undefined;

  override getIdentities(cb: (err: Error | undefined, keys?: unknown[]) => void): void {
    cb(undefined, []);
  }

  getStream(cb: (err: Error | undefined, stream?: Duplex) => void): void {
    if (!this.toward) return cb(new Error("no agent connection"));
    openAgentChannel(this.toward, (err, channel) => (err || !channel ? cb(err ?? new Error("refused")) : cb(undefined, channel)));
  }
}
