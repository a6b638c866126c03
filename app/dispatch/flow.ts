// A Flow is what every capture mode (explicit proxy, userspace WireGuard,
// kernel WireGuard via TUN) produces and every handler consumes. Handlers
// never learn which capture mode made it.
import type { Duplex } from "node:stream";

export interface FlowEndpoint {
  /** An IP literal, or a hostname when the capture mode only knows a name (CONNECT). */
  host: string;
  port: number;
}

export interface DeviceIdentity {
  name: string;
  profile: string;
}

export interface Flow {
  id: string;
  proto: "tcp";
  src: FlowEndpoint;
  /** The original destination, as the agent dialled it. */
  dst: FlowEndpoint;
  device: DeviceIdentity;
  /** The agent side of the connection; readable bytes are what the agent sent. */
  conn: Duplex;
  /** When the capture mode accepted the flow (ms since epoch). */
  startedAt: number;
  /**
   * The explicit proxy's plain-HTTP client: absolute-form requests, each
   * naming its own host (`dst` is the first one's), not a tunnel.
   */
  forwardProxy?: boolean;
}

let flowCounter = 0;
const flowPrefix = Math.floor(Math.random() * 36 ** 4).toString(36).padStart(4, "0");

/** Short, unique-per-process flow ids (`k3x9-1a`), cheap enough for every connection. */
export function newFlowId(): string {
  flowCounter += 1;
  return `${flowPrefix}-${flowCounter.toString(36)}`;
}
