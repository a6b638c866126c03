// CancelRequest: the agent holds the gateway's BackendKeyData, never the
// server's. A cancel arrives on a new connection with the gateway's key; it
// is looked up here and sent to the server with the server's key, on a
// connection of its own (TLS when the endpoint requires it).
import type { Dialer } from "../relay.ts";
import type { Upstream } from "../spec.ts";
import type { PostgresSettings } from "./spec.ts";
import { serializeCancelRequest } from "./wire/frontend.ts";
import { openUpstream } from "./upstream-tls.ts";

export interface CancelTarget {
  processId: number;
  secretKey: Uint8Array;
  upstream: Upstream;
  settings: Pick<PostgresSettings, "sslmode">;
  caCertPem: string | undefined;
}

/** Gateway key (`pid:hexsecret`) -> the upstream session it stands for; entries live as long as their session. */
export const cancelKeys = new Map<string, CancelTarget>();

export async function sendCancel(target: CancelTarget, dial?: Dialer): Promise<void> {
  const { socket } = await openUpstream(target.upstream, target.settings, target.caCertPem, dial);
  await new Promise<void>((resolve) => {
    socket.end(serializeCancelRequest(target.processId, target.secretKey));
    // The server answers nothing and closes.
    socket.once("close", () => resolve());
    socket.once("error", () => resolve());
    socket.resume();
  });
}
