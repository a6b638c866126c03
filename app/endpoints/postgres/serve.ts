// The shell of a Postgres flow: the only code here that touches sockets.
// It carries out the session's commands (session.ts) and feeds it events:
//   1. the agent's bytes (through TLS with the gateway's leaf once the agent asked),
//   2. the upstream: dialed by name, TLS per the endpoint's sslmode (upstream-tls.ts),
//   3. verdicts: each statement judged by the sql family's rules, approvals held here,
//   4. events: one per statement; cancel keys mapped to the upstream's.
import tls from "node:tls";
import { randomBytes, randomInt } from "node:crypto";
import type { Duplex } from "node:stream";
import type { EndpointHandler, ServeRequest } from "../spec.ts";
import type { FlowDeps } from "../../dispatch/handle.ts";
import type { Decision, Endpoint, Policy } from "../../policy/types.ts";
import type { GatewayEvent } from "../../events/types.ts";
import { judge, needsDeferredFacts } from "../../policy/engine.ts";
import { settleDecision } from "../../approvers/settle.ts";
import { sqlFamily, cut, type SqlFacts } from "../../families/sql/family.ts";
import { PostgresSession, type ActionOutcome, type SessionCommand, type StatementRecord } from "./session.ts";
import { postgresSettings } from "./spec.ts";
import { openUpstream } from "./upstream-tls.ts";
import type { UpstreamStream } from "./upstream-native.ts";
import { cancelKeys, sendCancel } from "./cancel.ts";
import { loadSqlParser, parseSql } from "./sql.ts";
import { log } from "../../log.ts";
import { sqlApprovalRequest } from "../../families/sql/approval.ts";

export const postgresHandler: EndpointHandler = {
  serve: (req, deps) => servePostgres(req, deps as FlowDeps),
};

async function servePostgres(req: ServeRequest, deps: FlowDeps): Promise<void> {
  const { flow, endpoint, upstream } = req;
  // The parser's WASM loads once (tens of ms); later flows find it ready.
  await loadSqlParser();
  const settings = postgresSettings(endpoint.settings);
  const policy = req.policy();
  const device = flow.device;
  const credential = credentialFor(policy, endpoint, device.profile, deps);
  const processId = randomInt(1, 2 ** 31 - 1);
  const secretKey = new Uint8Array(randomBytes(4));
  const session = new PostgresSession({
    credential: credential.ok ? credential.value : undefined,
    allowMd5: settings.allowMd5,
    agentTls: true,
    now: Date.now,
    parse: parseSql,
    needsFacets: needsDeferredFacts(policy, endpoint, device.profile),
    // A reload makes a new Policy: prepared statements are judged again at their next Bind.
    policyVersion: deps.policy,
    processId,
    secretKey,
  });
  if (!credential.ok) log.warn("postgres credential unavailable", { flow: flow.id, endpoint: endpoint.ref, reason: credential.reason });

  let agent: Duplex = flow.conn;
  let upstreamSock: UpstreamStream | undefined;
  let closed = false;
  const agentGone = new AbortController();
  let registered: string | undefined;

  const done = new Promise<void>((resolve) => {
    const finish = () => {
      if (closed) return;
      closed = true;
      agentGone.abort();
      if (registered) cancelKeys.delete(registered);
      agent.end();
      upstreamSock?.end();
      // Let queued bytes flush, then make sure nothing lingers.
      setTimeout(() => {
        agent.destroy();
        upstreamSock?.destroy();
      }, 2_000).unref?.();
      resolve();
    };

    // Verdicts decided without an approval go back in the same turn, after the
    // batch that asked; a loop, not recursion, so a long pipeline cannot overflow the stack.
    const decided: { id: number; verdict: { outcomes: ActionOutcome[] } }[] = [];
    let draining = false;
    const run = (commands: SessionCommand[]): void => {
      for (const c of commands) {
        if (closed) return;
        switch (c.type) {
          case "send-agent":
            if (!agent.write(c.data) && upstreamSock) {
              // The agent reads slowly: stop reading the server until it drains.
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
          case "start-agent-tls":
            startAgentTls();
            break;
          case "open-upstream":
            void openUpstream(upstream, settings, endpoint.caCertPem, deps.dial).then(
              (u) => {
                if (closed) {
                  u.socket.destroy();
                  return;
                }
                upstreamSock = u.socket;
                upstreamSock.on("data", (d: Uint8Array) => run(session.handle({ type: "upstream-data", data: d })));
                upstreamSock.on("close", () => run(session.handle({ type: "upstream-closed" })));
                upstreamSock.on("error", (e: Error) => log.debug("postgres upstream error", { flow: flow.id, error: e.message }));
                // Paused after the SSLRequest answer when the server said 'N' (sslmode = prefer).
                upstreamSock.resume();
                run(session.handle({ type: "upstream-ready", tls: u.tls, ...(u.channelBinding ? { channelBinding: u.channelBinding } : {}) }));
              },
              (e: Error) => {
                log.warn("postgres upstream unreachable", { flow: flow.id, upstream: `${upstream.host}:${upstream.port}`, error: e.message });
                run(session.handle({ type: "upstream-failed", reason: e.message }));
              },
            );
            break;
          case "judge": {
            const now = judgeWithoutApproval(c.actions, c.kind);
            if ("outcomes" in now) decided.push({ id: c.id, verdict: now });
            else void judgeActions(c.actions, c.kind, now.judged).then((verdict) => run(session.handle({ type: "verdict", id: c.id, verdict })));
            break;
          }
          case "cancel":
            void forwardCancel(c.processId, c.secretKey);
            break;
          case "register-keys":
            registered = keyOf(c.processId, c.secretKey);
            cancelKeys.set(registered, { processId: c.upstreamProcessId, secretKey: c.upstreamSecretKey, upstream, settings, caCertPem: endpoint.caCertPem });
            break;
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
    const startAgentTls = () => {
      // Paused until TLS takes the stream over: the ClientHello may arrive
      // while the leaf is minted, and a flowing stream with no reader drops it.
      flow.conn.pause();
      flow.conn.off("data", onAgentData);
      void deps.leaves.secureContextFor(upstream.host).then(
        (secureContext) => {
          if (closed) return;
          const t = new tls.TLSSocket(flow.conn as never, { isServer: true, secureContext });
          agent = t;
          t.on("error", (e: Error) => {
            log.debug("postgres agent TLS error", { flow: flow.id, error: e.message });
            finish();
          });
          t.on("secure", () => run(session.handle({ type: "agent-tls-ready" })));
          t.on("data", onAgentData);
          t.on("close", () => run(session.handle({ type: "agent-closed" })));
        },
        (e: Error) => {
          log.error("could not mint a certificate", { host: upstream.host, error: e.message });
          finish();
        },
      );
    };
    flow.conn.on("data", onAgentData);
    flow.conn.on("close", () => run(session.handle({ type: "agent-closed" })));
    flow.conn.on("end", () => run(session.handle({ type: "agent-closed" })));
    flow.conn.resume();
    // The agent may have gone while the parser loaded: its 'end' was emitted before we listened.
    if (flow.conn.readableEnded || flow.conn.destroyed) run(session.handle({ type: "agent-closed" }));
  });

  /**
   * The verdict on each action when rules alone decide it (no approval is
   * asked for): the common case, answered without a promise per statement.
   * When an action needs an approval: the decisions taken so far (that one
   * last), which judgeActions goes on from (judging again would count a
   * rate-limited rule twice).
   */
  function judgeWithoutApproval(actions: SqlFacts[], kind: "statement" | "function-call"): { outcomes: ActionOutcome[] } | { judged: Decision[] } {
    const outcomes: ActionOutcome[] = [];
    const judged: Decision[] = [];
    const current = deps.policy();
    const ep = current.endpoints.get(endpoint.ref) ?? endpoint;
    for (const facts of actions) {
      const d = judge(current, { device: device.name, profile: device.profile, endpoint: ep }, facts);
      judged.push(d);
      if (d.verdict !== "allow" && d.verdict !== "deny") return { judged };
      if (d.detail) log.warn("rule evaluation failed closed", { flow: flow.id, rule: d.rule, detail: d.detail });
      const rule = d.rule !== undefined ? { rule: d.rule } : {};
      let outcome: ActionOutcome = { allow: d.verdict === "allow", reason: d.reason, ...rule, ...shadowOf(d) };
      if (kind === "function-call" && outcome.allow && d.rule === undefined) {
        outcome = { allow: false, reason: "a FunctionCall needs a rule that allows it" };
      }
      outcomes.push(outcome);
      if (!outcome.allow) break;
    }
    return { outcomes };
  }

  /** Shadow verdicts ride on the outcome's extra event fields. */
  function shadowOf(d: Decision): Pick<ActionOutcome, "approval"> {
    return d.shadow ? { approval: { shadow: d.shadow } } : {};
  }

  /** Rules for each action; an approval holds this session only. */
  async function judgeActions(actions: SqlFacts[], kind: "statement" | "function-call", judged: Decision[]): Promise<{ outcomes: ActionOutcome[] }> {
    const outcomes: ActionOutcome[] = [];
    for (const [i, facts] of actions.entries()) {
      const current = deps.policy();
      // The endpoint as the current policy has it (a reload may have changed its rules).
      const ep = current.endpoints.get(endpoint.ref) ?? endpoint;
      const d = judged[i] ?? judge(current, { device: device.name, profile: device.profile, endpoint: ep }, facts);
      if (i >= judged.length && d.detail) log.warn("rule evaluation failed closed", { flow: flow.id, rule: d.rule, detail: d.detail });
      let outcome = { ...(await outcomeOf(current, ep, facts, d)) };
      if (d.shadow) outcome.approval = { ...outcome.approval, shadow: d.shadow };
      // A FunctionCall names a function by OID only: it goes through only when a rule allows it.
      if (kind === "function-call" && outcome.allow && d.rule === undefined) {
        outcome = { allow: false, reason: "a FunctionCall needs a rule that allows it" };
      }
      outcomes.push(outcome);
      if (!outcome.allow) break;
    }
    return { outcomes };
  }

  function outcomeOf(current: Policy, ep: Endpoint, facts: SqlFacts, d: Decision): Promise<ActionOutcome> {
    const request = () => sqlApprovalRequest({ facts, decision: d, device, endpoint: ep.ref, host: upstream.host, redact: deps.redact ?? ((t) => t) });
    return settleDecision({ policy: current, decision: d, gate: deps.approvals, request, signal: agentGone.signal });
  }

  function publish(r: StatementRecord): void {
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
      durationMs: r.durationMs,
      verdict: r.verdict,
      reason: r.reason,
      summary: sqlFamily.summary(r.facts),
      action: { ...sqlFamily.action(r.facts), ...(r.rows !== undefined ? { rows: r.rows } : {}), ...(r.sqlstate ? { sqlstate: r.sqlstate } : {}) },
    };
    if (r.rule !== undefined) event.rule = r.rule;
    if (credential.ok) event.credential = credential.ref;
    if (r.detail) event.detail = r.detail;
    else if (r.facts.unknownReason) event.detail = `facets unknown: ${r.facts.unknownReason}`;
    if (r.approval) Object.assign(event, r.approval);
    deps.publish(event);
  }

  async function forwardCancel(pid: number, key: Uint8Array): Promise<void> {
    const target = cancelKeys.get(keyOf(pid, key));
    if (!target) return;
    await sendCancel(target, deps.dial).catch((e: Error) => log.debug("postgres cancel failed", { error: e.message }));
  }

  return done;
}

function keyOf(processId: number, secretKey: Uint8Array): string {
  return `${processId}:${Buffer.from(secretKey).toString("hex")}`;
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
