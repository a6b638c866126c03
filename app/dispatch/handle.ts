// The flow shell: the one place a Flow's bytes meet the dispatcher's
// decisions. Route by destination (VIPs, direct-IP bindings, claimed ports);
// peek when the destination may carry intercepted TLS, decide, then hand the
// connection to TLS interception, a passthrough splice, or a relay.
// TLS for clawpatrol.internal on :443 is the gateway's own discovery
// service (app/endpoints/internal.ts), so :443 is always peeked; on a :443
// no endpoint claims, anything else is relayed as before.
import tls from "node:tls";
import type { Flow, FlowEndpoint } from "./flow.ts";
import type { Policy } from "../policy/types.ts";
import type { Database } from "bun:sqlite";
import type { GatewayEvent } from "../events/types.ts";
import { dispatchTcp, peekPorts, plainHttpEndpoint, plainHttpPeekPorts, routeDestination, INTERNAL_HOST, type DispatchContext, type DispatchDecision } from "./dispatch.ts";
import { peekClientHello, peekHttpHost, type PeekResult } from "./peek.ts";
import { serveInternal } from "../endpoints/internal.ts";
import { relay, type Dialer, dialTcp } from "../endpoints/relay.ts";
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { EMPTY_DESTINATION_CONTEXT, pickDestination, type DestinationContext } from "./destinations.ts";
import { InterceptSession, type InterceptDeps, type PlainTransport } from "../endpoints/https/session.ts";
import { agentAlpn, H2InterceptSession, negotiatedAlpn } from "../endpoints/https/h2session.ts";
import type { LeafCertificates } from "../tls/leaf.ts";
import { log } from "../log.ts";
import { specOf } from "../endpoints/registry.ts";
import type { GateService } from "../gate/service.ts";
import type { FairQueue } from "../net/fair-queue.ts";
import { stallCorrectedTimeout } from "../net/loop-stall.ts";

/** An agent's TLS handshake that has its slot but does not finish in this long is closed. */
const AGENT_HANDSHAKE_TIMEOUT_MS = 10_000;

export interface FlowDeps extends InterceptDeps {
  leaves: LeafCertificates;
  dial?: Dialer;
  /** The gateway CA certificate, served at https://clawpatrol.internal/ca.crt. */
  caCertPem?: string;
  /** The DNS-VIP table (which addresses are VIPs, for which hostname), when the gateway hands VIPs out. */
  dispatch?: DispatchContext;
  /** The DNS-VIP responder's address: device DNS over TCP (:53, any destination) goes there, as UDP does. */
  dnsTcp?: () => FlowEndpoint | undefined;
  /** What a relayed flow may reach (app/dispatch/destinations.ts); absent: only the fixed classes (loopback, link-local, ...) are refused. */
  destinations?: () => DestinationContext;
  /** Resolves a name a proxy client asked for (default: the system resolver, every address). */
  resolve?: (host: string) => Promise<string[]>;
  /** The state database and directory, for handlers that keep state of their own (ssh host keys). */
  state?: { db: Database; stateDir: string };
  /** The command gate's verdict API, served on clawpatrol.internal. */
  gate?: GateService;
  /** Slots for the agents' TLS handshakes, shared fairly between devices (absent: unbounded). */
  handshakes?: FairQueue;
}

export async function handleFlow(flow: Flow, deps: FlowDeps): Promise<void> {
  const policy = deps.policy();
  flow.conn.on("error", () => {
    /* reported by whoever reads the connection */
  });
  // The explicit proxy's plain-HTTP client: every request names its host.
  if (flow.forwardProxy) return servePlainHttp(flow, deps, undefined);
  const ctx = deps.dispatch ?? {};
  const ports = peekPorts(policy);
  // Plain HTTP to a claimed host (port 80, or an endpoint's port) is peeked for its Host, then judged like HTTPS.
  const plainPort = plainHttpPeekPorts(policy).has(flow.dst.port);
  const route = routeDestination(policy, flow.dst, flow.device, ctx, plainPort ? new Set([...ports, flow.dst.port]) : ports);
  // Device DNS over TCP goes to the DNS-VIP responder, as its UDP does (a VIP's :53 is the VIP's).
  const dns = route.kind === "relay" && flow.dst.port === 53 ? deps.dnsTcp?.() : undefined;
  // The responder is the gateway's own service (often on its loopback): a documented exception to the destination policy.
  if (dns) return relayFlow({ ...flow, dst: dns }, deps, undefined, { kind: "relay", reason: "DNS over TCP, to the DNS-VIP responder" }, true);
  if (route.kind === "relay") return relayFlow(flow, deps, undefined, route);
  if (route.kind === "serve") return serveFlow(flow, deps, route);
  if (route.kind !== "peek") {
    if (route.kind === "deny") connectionEvent(flow, deps, policy, route, 0, 0);
    flow.conn.destroy();
    return;
  }
  const claimed = ports.has(flow.dst.port);
  let peeked = await peekClientHello(flow.conn);
  if (!peeked) {
    flow.conn.destroy();
    return;
  }
  if (plainPort && peeked.peek.kind === "not-tls") {
    const http = await peekHttpHost(flow.conn, peeked.bytes);
    if (!http) {
      flow.conn.destroy();
      return;
    }
    if (http.host !== undefined && plainHttpEndpoint(policy, http.host, flow.device.profile, flow.dst.port)) {
      flow.conn.unshift(Buffer.from(http.bytes));
      // Requests naming a host no endpoint claims go where the agent dialed, as the relay would have.
      return servePlainHttp(flow, deps, flow.dst.port, flow.dst.host);
    }
    peeked = { ...peeked, bytes: http.bytes };
  }
  const decision = dispatchTcp(policy, flow.dst, flow.device, peeked.peek, ctx);
  if (decision.kind === "internal") {
    const terminated = await terminateTls(flow, deps, peeked, INTERNAL_HOST);
    if (!terminated) return;
    const tlsSock = terminated.sock;
    // The SSH CA lives with the ssh endpoint's keys (and ssh2): loaded only when a policy has an ssh endpoint.
    const state = deps.state;
    const sshKeys = state && [...policy.endpoints.values()].some((e) => e.type === "ssh") ? await import("../endpoints/ssh/keys.ts") : undefined;
    const served = serveInternal(tlsSock, flow.device, {
      ...(state && sshKeys ? { sshCa: () => sshKeys.gatewaySshCa(state.db, state.stateDir, Date.now()).publicKey } : {}),
      policy: deps.policy,
      ...(deps.caCertPem !== undefined ? { caCertPem: deps.caCertPem } : {}),
      ...(deps.redact ? { redact: deps.redact } : {}),
      ...(deps.gate ? { gate: deps.gate } : {}),
    });
    terminated.reading();
    await served;
    // As the intercept session does: end (queued responses still flush), destroy later.
    tlsSock.end();
    setTimeout(() => tlsSock.destroy(), 5_000).unref?.();
    return;
  }
  // Peeked only for the discovery service (an unclaimed :443 to an unbound
  // address): everything else here is relayed as if never peeked.
  if (!claimed && decision.kind !== "intercept" && decision.kind !== "deny") {
    return relayFlow(flow, deps, peeked.bytes, { kind: "relay", reason: "port not claimed by any endpoint" });
  }
  switch (decision.kind) {
    case "relay":
    case "passthrough":
      return relayFlow(flow, deps, peeked.bytes, decision);
    case "deny":
      connectionEvent(flow, deps, policy, decision, 0, 0);
      flow.conn.destroy();
      return;
    case "serve":
      flow.conn.unshift(Buffer.from(peeked.bytes));
      return serveFlow(flow, deps, decision);
    case "intercept": {
      const alpn = agentAlpn(decision.endpoint);
      const terminated = await terminateTls(flow, deps, peeked, decision.sni, alpn);
      if (!terminated) return;
      const tlsSock = terminated.sock;
      // The session dials flow.dst: the real upstream (a VIP's hostname, never the VIP).
      const dst = { ...flow, dst: decision.upstream };
      if (alpn.includes("h2")) {
        // Waiting for the ALPN choice sees the handshake through (its slot is free again).
        const chosen = await negotiatedAlpn(tlsSock, deps.policy().defaults.headerTimeoutMs);
        if (chosen === undefined) return void tlsSock.destroy();
        if (chosen === "h2") return new H2InterceptSession(dst, tlsSock, decision.sni, deps).run();
      }
      const session = new InterceptSession(dst, tlsSock, decision.sni, deps);
      terminated.reading();
      await session.run();
      return;
    }
  }
}

/**
 * Plain HTTP, judged request by request by the HTTPS runtime over a plain
 * upstream socket: the explicit proxy's absolute-form requests (`port`
 * undefined: each names its own), or the tunnel's on a port an endpoint
 * claims for plain HTTP (requests to hosts none claims go to the address
 * the agent dialed, `unclaimedTo`). A claimed host is dialed by name, as an
 * intercepted one is; any other destination passes the destination policy.
 */
async function servePlainHttp(flow: Flow, deps: FlowDeps, port: number | undefined, unclaimedTo?: string): Promise<void> {
  const transport: PlainTransport = {
    ...(port !== undefined ? { port } : {}),
    ...(unclaimedTo !== undefined ? { unclaimedTo } : {}),
    addressFor: async (host, p, claimed) => {
      if (claimed) return { ok: true, address: host };
      const target = await relayTarget({ host, port: p }, deps);
      return target.verdict === "allow" ? { ok: true, address: target.address } : { ok: false, reason: `destination refused: ${target.reason}` };
    },
  };
  await new InterceptSession(flow, flow.conn, flow.dst.host, deps, transport).run();
}

/** Hands a flow to its endpoint type's handler (Postgres, ...); the handler owns the connection from here. */
async function serveFlow(flow: Flow, deps: FlowDeps, decision: Extract<DispatchDecision, { kind: "serve" }>): Promise<void> {
  const spec = specOf(decision.endpoint.type);
  try {
    if (!spec.load) throw new Error(`endpoint type ${spec.type} has no handler`);
    const handler = await spec.load();
    await handler.serve({ flow, endpoint: decision.endpoint, upstream: decision.upstream, policy: deps.policy }, deps);
  } catch (e) {
    // Only this flow ends; the handler itself answers protocol errors in the protocol's form.
    log.error("endpoint handler failed", { flow: flow.id, endpoint: decision.endpoint.ref, error: (e as Error).message });
    flow.conn.destroy();
  }
}

/**
 * Replay the peeked bytes and terminate the agent's TLS with a leaf for
 * `name`. The leaf and the handshake wait for one of the shared slots (in
 * turn between devices): a burst of agents queues here, and the handshakes
 * that run finish in time instead of all at once, late.
 */
async function terminateTls(
  flow: Flow,
  deps: FlowDeps,
  peeked: PeekResult,
  name: string,
  alpn: string[] = ["http/1.1"],
): Promise<{ sock: tls.TLSSocket; /** Call once a reader is attached. */ reading: () => void } | undefined> {
  const slot = await handshakeSlot(flow, deps);
  if (!slot) return undefined;
  const { release, more } = slot;
  flow.conn.unshift(more.length > 0 ? Buffer.concat([peeked.bytes, ...more]) : Buffer.from(peeked.bytes));
  let secureContext: tls.SecureContext;
  try {
    secureContext = await deps.leaves.secureContextFor(name);
  } catch (e) {
    release();
    log.error("could not mint a certificate", { sni: name, error: (e as Error).message });
    flow.conn.destroy();
    return undefined;
  }
  const tlsSock = new tls.TLSSocket(flow.conn as never, {
    isServer: true,
    secureContext,
    ALPNProtocols: alpn,
  });
  const cancelTimeout = stallCorrectedTimeout(AGENT_HANDSHAKE_TIMEOUT_MS, () => {
    log.debug("agent TLS handshake timed out", { flow: flow.id, sni: name });
    tlsSock.destroy();
  });
  const handshakeOver = () => {
    cancelTimeout();
    release();
  };
  tlsSock.once("secure", handshakeOver);
  tlsSock.once("close", handshakeOver);
  flow.conn.once("close", handshakeOver);
  tlsSock.on("error", (e: Error) => {
    handshakeOver();
    log.debug("agent TLS error", { flow: flow.id, error: e.message });
  });
  // Bytes from the agent mean the handshake is over, 'secure' seen or not
  // (some completed handshakes were seen to hold their slot until close).
  // Listened to only once the reader is attached: a 'data' listener before
  // it would start the stream flowing with no one reading.
  return { sock: tlsSock, reading: () => void tlsSock.once("data", handshakeOver) };
}

/** Bytes an agent may send past its ClientHello while its handshake waits for a slot. */
const MAX_BYTES_WHILE_QUEUED = 64 * 1024;

/**
 * A handshake slot for the flow's device, and any bytes the agent sent while
 * waiting for it. Waiting, the connection is read (not paused) so that an
 * agent that gives up is seen at once and leaves the queue: a client that
 * dialed more connections than it needed closes the spare ones, and those
 * must not hold the slots of live ones. Undefined (the connection closed):
 * the queue was full, or the agent left.
 */
async function handshakeSlot(flow: Flow, deps: FlowDeps): Promise<{ release: () => void; more: Buffer[] } | undefined> {
  if (!deps.handshakes) return { release: () => undefined, more: [] };
  const slot = deps.handshakes.acquire(flow.device.name);
  if ("refused" in slot) {
    log.warn("TLS handshake queue full, connection refused", { flow: flow.id, device: flow.device.name, waiting: deps.handshakes.stats().waiting });
    flow.conn.destroy();
    return undefined;
  }
  const more: Buffer[] = [];
  let bytes = 0;
  const onData = (chunk: Buffer) => {
    more.push(chunk);
    bytes += chunk.length;
    if (bytes > MAX_BYTES_WHILE_QUEUED) flow.conn.destroy();
  };
  const gone = () => slot.cancel();
  flow.conn.on("data", onData);
  flow.conn.once("end", gone);
  flow.conn.once("close", gone);
  flow.conn.resume();
  const release = await slot.granted;
  flow.conn.pause();
  flow.conn.off("data", onData);
  flow.conn.off("end", gone);
  flow.conn.off("close", gone);
  if (!release) {
    flow.conn.destroy();
    return undefined;
  }
  if (flow.conn.destroyed) {
    release();
    return undefined;
  }
  return { release, more };
}

async function relayFlow(
  flow: Flow,
  deps: FlowDeps,
  initial: Uint8Array | undefined,
  decision: Extract<DispatchDecision, { kind: "relay" | "passthrough" }>,
  gatewayService = false,
): Promise<void> {
  // The one destination policy: never the gateway itself, its link or another device.
  const target = gatewayService ? { verdict: "allow" as const, address: flow.dst.host, reason: "gateway service" } : await relayTarget(flow.dst, deps);
  if (target.verdict === "refuse") {
    log.info("relay refused", { flow: flow.id, device: flow.device.name, host: flow.dst.host, port: flow.dst.port, reason: target.reason });
    connectionEvent(flow, deps, deps.policy(), { kind: "deny", reason: target.reason, ...("sni" in decision && decision.sni ? { sni: decision.sni } : {}) }, 0, 0);
    flow.conn.destroy();
    return;
  }
  const result = await relay(flow.conn, target.address, flow.dst.port, initial, deps.dial ?? dialTcp, undefined, deps.buffers?.(flow.device));
  connectionEvent(flow, deps, deps.policy(), decision, result.bytesUp, result.bytesDown, result.error);
}

const systemResolve = async (host: string): Promise<string[]> => (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);

/** The address a relay dials: the flow's IP literal, or a proxy client's name resolved here, judged before dialling. */
async function relayTarget(dst: FlowEndpoint, deps: FlowDeps): Promise<ReturnType<typeof pickDestination>> {
  const ctx = deps.destinations?.() ?? EMPTY_DESTINATION_CONTEXT;
  const host = dst.host.startsWith("[") && dst.host.endsWith("]") ? dst.host.slice(1, -1) : dst.host;
  if (isIP(host) !== 0) return pickDestination([host], dst.port, ctx);
  let addresses: string[];
  try {
    addresses = await (deps.resolve ?? systemResolve)(host);
  } catch (e) {
    return { verdict: "refuse", class: "unspecified", reason: `cannot resolve ${host}: ${(e as Error).message}` };
  }
  return pickDestination(addresses, dst.port, ctx);
}

function connectionEvent(
  flow: Flow,
  deps: FlowDeps,
  _policy: Policy,
  decision: Exclude<DispatchDecision, { kind: "intercept" | "internal" | "serve" }>,
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
