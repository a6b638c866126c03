// The shell of a ClickHouse native flow: the only code here that touches
// sockets. It carries out the session's commands (session.ts) and feeds it
// events:
//   1. the agent's bytes (through TLS with a gateway leaf when tls = true),
//   2. the upstream: dialed by name, TLS verified (ca_cert, the system store) when tls = true,
//   3. verdicts: each statement judged by the sql family's rules, approvals held here,
//   4. events: one per Query.
import tls from "node:tls";
import { isIP } from "node:net";
import type { Duplex } from "node:stream";
import type { EndpointHandler, ServeRequest, Upstream } from "../spec.ts";
import type { FlowDeps } from "../../dispatch/handle.ts";
import type { Decision, Endpoint, Policy } from "../../policy/types.ts";
import type { GatewayEvent } from "../../events/types.ts";
import { sqlApprovalRequest } from "../../families/sql/approval.ts";
import { judge } from "../../policy/engine.ts";
import { settleDecision } from "../../approvers/settle.ts";
import { sqlFamily, cut, type SqlFacts } from "../../families/sql/family.ts";
import { upstreamTrust } from "../../tls/trust.ts";
import { dialTcp, type Dialer } from "../relay.ts";
import { ClickHouseNativeSession, type QueryRecord, type QueryVerdict, type SessionCommand } from "./session.ts";
import { clickhouseNativeSettings } from "./spec.ts";
import { log } from "../../log.ts";

export const clickhouseNativeHandler: EndpointHandler = {
  serve: (req, deps) => serveClickHouseNative(req, deps as FlowDeps),
};

/** How long the TCP connect and the TLS handshake to the server may take together. */
export const UPSTREAM_OPEN_TIMEOUT_MS = 15_000;

async function serveClickHouseNative(req: ServeRequest, deps: FlowDeps): Promise<void> {
  const { flow, endpoint, upstream } = req;
  const settings = clickhouseNativeSettings(endpoint.settings);
  const policy = req.policy();
  const device = flow.device;
  const credential = credentialFor(policy, endpoint, device.profile, deps);
  if (!credential.ok) log.warn("clickhouse credential unavailable", { flow: flow.id, endpoint: endpoint.ref, reason: credential.reason });
  const session = new ClickHouseNativeSession({
    credential: credential.ok ? credential.value : undefined,
    ...(credential.ok ? {} : { credentialProblem: "the gateway holds no credential for this endpoint" }),
    now: Date.now,
  });

  let agent: Duplex = flow.conn;
  let upstreamSock: Duplex | undefined;
  let closed = false;
  const agentGone = new AbortController();

  const done = new Promise<void>((resolve) => {
    const finish = () => {
      if (closed) return;
      closed = true;
      agentGone.abort();
      agent.end();
      upstreamSock?.end();
      // Let queued bytes flush, then make sure nothing lingers.
      setTimeout(() => {
        agent.destroy();
        upstreamSock?.destroy();
      }, 2_000).unref?.();
      resolve();
    };

    // Verdicts decided without an approval go back in the same turn; a loop, not recursion.
    const decided: { id: number; verdict: QueryVerdict }[] = [];
    let draining = false;
    const run = (commands: SessionCommand[]): void => {
      for (const c of commands) {
        if (closed) return;
        switch (c.type) {
          case "send-agent":
            if (!agent.write(c.data) && upstreamSock) {
              upstreamSock.pause();
              agent.once("drain", () => upstreamSock?.resume());
            }
            break;
          case "send-upstream":
            if (upstreamSock && !upstreamSock.write(c.data)) {
              agent.pause();
              upstreamSock.once("drain", () => agent.resume());
            }
            break;
          case "open-upstream":
            void openUpstream(upstream, settings.tls, endpoint.caCertPem, deps.dial).then(
              (socket) => {
                if (closed) {
                  socket.destroy();
                  return;
                }
                upstreamSock = socket;
                socket.on("data", (d: Buffer) => run(session.handle({ type: "upstream-data", data: d })));
                socket.on("close", () => run(session.handle({ type: "upstream-closed" })));
                socket.on("error", (e: Error) => log.debug("clickhouse upstream error", { flow: flow.id, error: e.message }));
                run(session.handle({ type: "upstream-ready" }));
              },
              (e: Error) => {
                log.warn("clickhouse upstream unreachable", { flow: flow.id, upstream: `${upstream.host}:${upstream.port}`, error: e.message });
                run(session.handle({ type: "upstream-failed", reason: e.message }));
              },
            );
            break;
          case "judge": {
            const now = judgeWithoutApproval(c.actions);
            if (now) decided.push({ id: c.id, verdict: now });
            else void judgeWithApproval(c.actions).then((verdict) => run(session.handle({ type: "verdict", id: c.id, verdict })));
            break;
          }
          case "record":
            publish(c.record);
            break;
          case "log":
            log[c.level](c.message, { flow: flow.id, endpoint: endpoint.ref, ...c.fields });
            break;
          case "close":
            finish();
            break;
        }
      }
      if (draining) return;
      draining = true;
      try {
        for (let d = decided.shift(); d !== undefined && !closed; d = decided.shift()) run(session.handle({ type: "verdict", id: d.id, verdict: d.verdict }));
      } finally {
        decided.length = 0;
        draining = false;
      }
    };

    const onAgentData = (d: Buffer) => run(session.handle({ type: "agent-data", data: d }));
    const listen = (s: Duplex) => {
      s.on("data", onAgentData);
      s.on("close", () => run(session.handle({ type: "agent-closed" })));
      s.on("end", () => run(session.handle({ type: "agent-closed" })));
    };
    if (settings.tls) {
      // The agent speaks TLS from its first byte (ClickHouse's secure port): terminate it with a leaf for the name it dialed.
      flow.conn.pause();
      void deps.leaves.secureContextFor(upstream.host).then(
        (secureContext) => {
          if (closed) return;
          const t = new tls.TLSSocket(flow.conn as never, { isServer: true, secureContext });
          agent = t;
          t.on("error", (e: Error) => {
            log.debug("clickhouse agent TLS error", { flow: flow.id, error: e.message });
            finish();
          });
          listen(t);
          flow.conn.resume();
        },
        (e: Error) => {
          log.error("could not mint a certificate", { host: upstream.host, error: e.message });
          finish();
        },
      );
    } else {
      listen(flow.conn);
      flow.conn.resume();
      if (flow.conn.readableEnded || flow.conn.destroyed) run(session.handle({ type: "agent-closed" }));
    }
  });

  function verdictOf(d: Decision): QueryVerdict {
    return {
      allow: d.verdict === "allow",
      reason: d.reason,
      ...(d.rule !== undefined ? { rule: d.rule } : {}),
      ...(d.detail !== undefined ? { detail: d.detail } : {}),
    };
  }

  /** The verdict when rules alone decide every statement; undefined when one needs an approval. */
  function judgeWithoutApproval(actions: SqlFacts[]): QueryVerdict | undefined {
    const current = deps.policy();
    const ep = current.endpoints.get(endpoint.ref) ?? endpoint;
    let last: QueryVerdict | undefined;
    for (const facts of actions) {
      const d = judge(current, { device: device.name, profile: device.profile, endpoint: ep }, facts);
      if (d.verdict !== "allow" && d.verdict !== "deny") return undefined;
      if (d.detail) log.warn("rule evaluation failed closed", { flow: flow.id, rule: d.rule, detail: d.detail });
      last = verdictOf(d);
      if (!last.allow) return last;
    }
    return last;
  }

  /** Rules for each statement; an approval holds this session only. */
  async function judgeWithApproval(actions: SqlFacts[]): Promise<QueryVerdict> {
    let last: QueryVerdict = { allow: false, reason: "nothing to judge" };
    for (const facts of actions) {
      const current = deps.policy();
      const ep = current.endpoints.get(endpoint.ref) ?? endpoint;
      const d = judge(current, { device: device.name, profile: device.profile, endpoint: ep }, facts);
      if (d.detail) log.warn("rule evaluation failed closed", { flow: flow.id, rule: d.rule, detail: d.detail });
      last = await outcomeOf(current, ep, facts, d);
      if (!last.allow) return last;
    }
    return last;
  }

  async function outcomeOf(current: Policy, ep: Endpoint, facts: SqlFacts, d: Decision): Promise<QueryVerdict> {
    if (d.verdict === "allow" || d.verdict === "deny") return verdictOf(d);
    const request = () => sqlApprovalRequest({ facts, decision: d, device, endpoint: ep.ref, host: upstream.host, redact: deps.redact ?? ((t) => t) });
    const settled = await settleDecision({ policy: current, decision: d, gate: deps.approvals, request, signal: agentGone.signal });
    return { allow: settled.allow, reason: settled.reason, ...(settled.rule !== undefined ? { rule: settled.rule } : {}) };
  }

  function publish(r: QueryRecord): void {
    const event: GatewayEvent = {
      time: new Date(r.startedAt).toISOString(),
      kind: "sql",
      family: "sql",
      flowId: flow.id,
      device: device.name,
      profile: device.profile,
      endpoint: endpoint.ref,
      host: upstream.host,
      port: upstream.port,
      method: (r.facts.facets?.verb ?? "sql").toUpperCase(),
      path: cut(r.facts.facets?.statement ?? r.facts.text, 300),
      bytesUp: 0,
      bytesDown: 0,
      durationMs: Date.now() - r.startedAt,
      verdict: r.verdict,
      reason: r.reason,
      summary: sqlFamily.summary(r.facts),
      action: { ...sqlFamily.action(r.facts), queryId: r.queryId },
    };
    if (r.rule !== undefined) event.rule = r.rule;
    if (credential.ok) event.credential = credential.ref;
    if (r.detail) event.detail = r.detail;
    else if (r.facts.unknownReason) event.detail = `facets unknown: ${r.facts.unknownReason}`;
    deps.publish(event);
  }

  return done;
}

/** TCP to the server, then TLS verified against ca_cert and the system store when the endpoint says tls. */
async function openUpstream(to: Upstream, useTls: boolean, caCertPem: string | undefined, dial: Dialer = dialTcp): Promise<Duplex> {
  const socket = dial(to.host, to.port);
  const timer = setTimeout(() => socket.destroy(new Error(`no answer from ${to.host}:${to.port} within ${UPSTREAM_OPEN_TIMEOUT_MS / 1000} s`)), UPSTREAM_OPEN_TIMEOUT_MS);
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", () => resolve());
      socket.once("error", reject);
      socket.once("close", () => reject(new Error("the server closed the connection")));
    });
    if (!useTls) return socket;
    const secure = tls.connect({
      socket: socket as never,
      ...(isIP(to.host) === 0 ? { servername: to.host } : {}),
      rejectUnauthorized: true,
      secureContext: upstreamTrust.secureContext(caCertPem),
    });
    await new Promise<void>((resolve, reject) => {
      secure.once("secureConnect", resolve);
      secure.once("error", reject);
    });
    return secure;
  } finally {
    clearTimeout(timer);
  }
}

type CredentialResult = { ok: true; ref: string; value: { user: string; password: string } } | { ok: false; reason: string };

/** The endpoint's credential, when the device's profile is granted it and the gateway holds its secret. */
function credentialFor(policy: Policy, endpoint: Endpoint, profile: string, deps: FlowDeps): CredentialResult {
  if (!endpoint.credential) return { ok: false, reason: "the endpoint names no credential" };
  const cred = policy.credentials.get(endpoint.credential);
  if (!cred) return { ok: false, reason: `credential ${endpoint.credential} is not configured` };
  if (!policy.profiles.get(profile)?.credentials.includes(cred.ref)) return { ok: false, reason: `profile "${profile}" is not granted ${cred.ref}` };
  const secret = deps.secretFor(cred);
  if (!secret.ok) return { ok: false, reason: secret.reason };
  const user = cred.settings.user;
  if (!user) return { ok: false, reason: `credential ${cred.ref} names no user` };
  return { ok: true, ref: cred.ref, value: { user, password: secret.value } };
}
