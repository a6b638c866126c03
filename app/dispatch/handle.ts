// The flow shell: the one place a Flow's bytes meet the dispatcher's
// decision. Peek when the port may carry intercepted TLS, decide, then hand
// the connection to TLS interception, a passthrough splice, or a relay.
import tls from "node:tls";
import type { Flow } from "./flow.ts";
import type { Policy } from "../policy/types.ts";
import type { GatewayEvent } from "../events/types.ts";
import { dispatchTcp, peekPorts, type DispatchDecision } from "./dispatch.ts";
import { peekClientHello } from "./peek.ts";
import { relay, type Dialer, dialTcp } from "../endpoints/relay.ts";
import { InterceptSession, type InterceptDeps } from "../endpoints/https/session.ts";
import type { LeafCertificates } from "../tls/leaf.ts";
import { log } from "../log.ts";

export interface FlowDeps extends InterceptDeps {
  leaves: LeafCertificates;
  dial?: Dialer;
}

export async function handleFlow(flow: Flow, deps: FlowDeps): Promise<void> {
  const policy = deps.policy();
  flow.conn.on("error", () => {
    /* reported by whoever reads the connection */
  });
  if (!policy.profiles.has(flow.device.profile)) {
    connectionEvent(flow, deps, policy, { kind: "deny", reason: `profile "${flow.device.profile}" is not configured` }, 0, 0);
    flow.conn.destroy();
    return;
  }
  if (!peekPorts(policy).has(flow.dst.port)) {
    return relayFlow(flow, deps, undefined, { kind: "relay", reason: "port not claimed by any endpoint" });
  }
  const peeked = await peekClientHello(flow.conn);
  if (!peeked) {
    flow.conn.destroy();
    return;
  }
  const decision = dispatchTcp(policy, flow.dst, flow.device, peeked.peek);
  switch (decision.kind) {
    case "relay":
    case "passthrough":
      return relayFlow(flow, deps, peeked.bytes, decision);
    case "deny":
      connectionEvent(flow, deps, policy, decision, 0, 0);
      flow.conn.destroy();
      return;
    case "intercept": {
      flow.conn.unshift(Buffer.from(peeked.bytes));
      let secureContext: tls.SecureContext;
      try {
        secureContext = await deps.leaves.secureContextFor(decision.sni);
      } catch (e) {
        log.error("could not mint a certificate", { sni: decision.sni, error: (e as Error).message });
        flow.conn.destroy();
        return;
      }
      const tlsSock = new tls.TLSSocket(flow.conn as never, {
        isServer: true,
        secureContext,
        ALPNProtocols: ["http/1.1"],
      });
      tlsSock.on("error", (e: Error) => log.debug("agent TLS error", { flow: flow.id, error: e.message }));
      await new InterceptSession(flow, tlsSock, decision.sni, deps).run();
      return;
    }
  }
}

async function relayFlow(
  flow: Flow,
  deps: FlowDeps,
  initial: Uint8Array | undefined,
  decision: Extract<DispatchDecision, { kind: "relay" | "passthrough" }>,
): Promise<void> {
  const result = await relay(flow.conn, flow.dst.host, flow.dst.port, initial, deps.dial ?? dialTcp);
  connectionEvent(flow, deps, deps.policy(), decision, result.bytesUp, result.bytesDown, result.error);
}

function connectionEvent(
  flow: Flow,
  deps: FlowDeps,
  _policy: Policy,
  decision: Exclude<DispatchDecision, { kind: "intercept" }>,
  bytesUp: number,
  bytesDown: number,
  error?: string,
): void {
  const event: GatewayEvent = {
    time: new Date(flow.startedAt).toISOString(),
    kind: "connection",
    flowId: flow.id,
    device: flow.device.name,
    profile: flow.device.profile,
    host: "sni" in decision && decision.sni ? decision.sni : flow.dst.host,
    port: flow.dst.port,
    bytesUp,
    bytesDown,
    durationMs: Date.now() - flow.startedAt,
    verdict: decision.kind,
    reason: decision.reason,
  };
  if (error) event.detail = error;
  deps.publish(event);
}
