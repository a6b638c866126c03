// The shell of a ClickHouse native flow: with the database shell it shares
// with Postgres (../db-shell.ts), the only code here that touches sockets.
// It carries out the session's commands (session.ts) and feeds it
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
import type { Decision } from "../../policy/types.ts";
import type { SqlFacts } from "../../families/sql/family.ts";
import { DbShell, passwordCredential, type Judged } from "../db-shell.ts";
import { upstreamTrust } from "../../tls/trust.ts";
import { dialTcp, type Dialer } from "../relay.ts";
import { ClickHouseNativeSession, type QueryVerdict, type SessionCommand } from "./session.ts";
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
  const credential = passwordCredential(policy, endpoint, device.profile, deps);
  if (!credential.ok) log.warn("clickhouse credential unavailable", { flow: flow.id, endpoint: endpoint.ref, reason: credential.reason });
  const session = new ClickHouseNativeSession({
    credential: credential.ok ? credential.value : undefined,
    ...(credential.ok ? {} : { credentialProblem: "the gateway holds no credential for this endpoint" }),
    now: Date.now,
  });

  const shell: DbShell<QueryVerdict, SessionCommand> = new DbShell({
    name: "clickhouse",
    req,
    deps,
    session,
    credentialRef: credential.ok ? credential.ref : undefined,
    execute: (c) => {
      switch (c.type) {
        case "open-upstream":
          shell.openUpstream(openUpstream(upstream, settings.tls, endpoint.caCertPem, deps.dial), () => shell.run(session.handle({ type: "upstream-ready" })));
          break;
        case "judge": {
          const now = judgeWithoutApproval(c.actions);
          if ("verdict" in now && now.verdict) shell.decide(c.id, now.verdict);
          else shell.decideLater(c.id, judgeWithApproval(c.actions, "judged" in now ? now.judged : []));
          break;
        }
        case "record":
          shell.publish(c.record, Date.now() - c.record.startedAt, { queryId: c.record.queryId }, c.record.approval);
          break;
        default:
          shell.carryOut(c);
      }
    },
  });
  if (settings.tls) {
    // The agent speaks TLS from its first byte (ClickHouse's secure port): terminate it with a leaf for the name it dialed.
    shell.terminateAgentTls((t) => {
      shell.listenAgent(t);
      flow.conn.resume();
    });
  } else {
    shell.acceptAgent();
  }

  function verdictOf(d: Decision): QueryVerdict {
    return {
      allow: d.verdict === "allow",
      reason: d.reason,
      ...(d.rule !== undefined ? { rule: d.rule } : {}),
      ...(d.detail !== undefined ? { detail: d.detail } : {}),
    };
  }

  /**
   * The verdict when rules alone decide every statement. When one needs an
   * approval: the decisions taken so far (that one last), which
   * judgeWithApproval goes on from (judging again would count a
   * rate-limited rule twice).
   */
  function judgeWithoutApproval(actions: SqlFacts[]): { verdict: QueryVerdict | undefined } | { judged: Decision[] } {
    let last: QueryVerdict | undefined;
    const judged: Decision[] = [];
    for (const facts of actions) {
      const d = shell.judge(facts).decision;
      judged.push(d);
      if (d.verdict !== "allow" && d.verdict !== "deny") return { judged };
      shell.warnIfFailedClosed(d);
      last = verdictOf(d);
      if (!last.allow) return { verdict: last };
    }
    return { verdict: last };
  }

  /** Rules for each statement, the decisions already taken reused; an approval holds this session only. */
  async function judgeWithApproval(actions: SqlFacts[], judged: Decision[]): Promise<QueryVerdict> {
    let last: QueryVerdict = { allow: false, reason: "nothing to judge" };
    for (const [i, facts] of actions.entries()) {
      const j = shell.judge(facts, judged[i]);
      if (i >= judged.length - 1) shell.warnIfFailedClosed(j.decision);
      last = await outcomeOf(j);
      if (!last.allow) return last;
    }
    return last;
  }

  async function outcomeOf(j: Judged): Promise<QueryVerdict> {
    const d = j.decision;
    if (d.verdict === "allow" || d.verdict === "deny") return verdictOf(d);
    const settled = await shell.settle(j);
    return {
      allow: settled.allow,
      reason: settled.reason,
      ...(settled.rule !== undefined ? { rule: settled.rule } : {}),
      ...(settled.approval !== undefined ? { approval: settled.approval } : {}),
    };
  }

  return shell.done;
}

/** TCP to the server, then TLS verified against ca_cert and the system store when the endpoint says tls. */
async function openUpstream(to: Upstream, useTls: boolean, caCertPem: string | undefined, dial: Dialer = dialTcp): Promise<{ socket: Duplex }> {
  const socket = dial(to.host, to.port);
  const timer = setTimeout(() => socket.destroy(new Error(`no answer from ${to.host}:${to.port} within ${UPSTREAM_OPEN_TIMEOUT_MS / 1000} s`)), UPSTREAM_OPEN_TIMEOUT_MS);
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", () => resolve());
      socket.once("error", reject);
      socket.once("close", () => reject(new Error("the server closed the connection")));
    });
    if (!useTls) return { socket };
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
    return { socket: secure };
  } finally {
    clearTimeout(timer);
  }
}
