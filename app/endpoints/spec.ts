// What an endpoint type declares about itself, in one place: its family, the
// HCL it takes, the ports it claims, how flows find it, who speaks first, and
// which credentials fit its slot. The policy loader and the dispatcher read
// these; the handler that serves a flow is loaded lazily (`load`), so the
// loader never imports protocol code.
import type { BlockReader } from "../policy/hcl/reader.ts";
import type { CredentialType, Endpoint, EndpointType, Policy } from "../policy/types.ts";
import type { FamilyName } from "../families/types.ts";
import type { Flow, FlowEndpoint } from "../dispatch/flow.ts";

export interface EndpointBuildContext {
  /** Reads a file the block names (relative paths resolve against the block's file). */
  readText(r: BlockReader, attr: string): string | undefined;
}

/** What a type's builder reads from its block besides the shared credential attribute. */
export interface BuiltEndpoint {
  /** Exact names, IP literals and (where the type allows) `*.suffix` patterns, lower-case. */
  hosts: string[];
  /** Ports claimed; undefined: the type's defaultPorts. */
  ports?: number[];
  caCertPem?: string;
  settings?: Record<string, unknown>;
}

export interface EndpointSpec {
  type: EndpointType;
  family: FamilyName;
  /** Ports claimed when the block names none. */
  defaultPorts: readonly number[];
  /**
   * How a flow finds an endpoint of this type:
   *  - "sni": TLS on a claimed port, by the ClientHello's server name (a VIP or
   *    an IP literal in hosts binds too, for clients that send no SNI);
   *  - "address": by destination before any byte is read: a VIP, an IP
   *    literal or a resolved name in hosts (the conn index), or the only
   *    endpoint of the type the profile sees on that port.
   */
  claim: "sni" | "address";
  /**
   * Reached by name (a VIP, or a name the proxy was given) on any port, the
   * upstream's port coming from the block (ssh: `ssh -p 2222 git.internal`
   * and `ssh git.internal` reach the same server). Such a type never takes
   * the "only endpoint on this port" fallback: an unknown address on :22 is
   * some other server.
   */
  anyPortByName?: boolean;
  /** The server talks first (SSH, ClickHouse's native banner): no peeking at the agent's bytes. */
  serverSpeaksFirst: boolean;
  /** Reached by a name without SNI or Host: its hosts get a DNS VIP. */
  requiresVip: boolean;
  /** Credential types that fit this type's slot. */
  credentialTypes: readonly CredentialType[];
  /** Attributes the block takes besides `credential`. */
  attributes: readonly string[];
  /** Reads the block; problems are reported on `r` (FILE:LINE). */
  build(r: BlockReader, ctx: EndpointBuildContext): BuiltEndpoint;
  /** The handler, loaded on first use; absent for "sni" types, which the TLS interception path serves. */
  load?(): Promise<EndpointHandler>;
}

/** Where a claimed flow really goes: never a VIP, always a name or address the gateway dials. */
export type Upstream = FlowEndpoint;

/** What a handler is given for one flow. Handlers never learn the capture mode. */
export interface ServeRequest {
  flow: Flow;
  endpoint: Endpoint;
  upstream: Upstream;
  policy(): Policy;
}

export interface EndpointHandler {
  serve(req: ServeRequest, deps: unknown): Promise<void>;
}
