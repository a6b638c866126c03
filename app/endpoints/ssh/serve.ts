// The shell of an SSH flow: the only code of the ssh endpoint that touches
// sockets. ssh2 speaks the wire protocol on both sides; gate.ts decides.
//   1. The upstream first: an ssh2 Client over the gateway's dialer, the
//      upstream's host key checked (host_key pin, else trust on first use),
//      authenticated with the credential's real key or password. Only then
//      does the agent get a server: when the upstream cannot be had, the
//      agent's SSH server shows why in its banner and refuses every login.
//   2. Toward the agent: an ssh2 Server with the endpoint's own host key
//      (keys.ts), accepting any authentication: the tunnel authenticated the
//      device.
//   3. Every channel open, channel request and global request is judged
//      (gate.ts facts, the ssh family's rules, approvals held here); what is
//      allowed is replayed upstream and the two channels are spliced.
//      Agent and X11 forwarding a rule allowed are asked upstream with the
//      exec or shell; the channels the upstream opens back for them are
//      opened toward the agent and spliced.
//   4. Events: one per judged request, one per channel at its close (bytes
//      each way, exit status).
import { randomUUID } from "node:crypto";
import path from "node:path";
import { readFileSync } from "node:fs";
import type { Duplex } from "node:stream";
import ssh2, { type Client as SshClient, type ClientChannel, type Connection, type ParsedKey, type ServerChannel, type Session } from "ssh2";
import type { EndpointHandler, ServeRequest } from "../spec.ts";
import type { FlowDeps } from "../../dispatch/handle.ts";
import type { Decision, Endpoint, Policy } from "../../policy/types.ts";
import type { GatewayEvent } from "../../events/types.ts";
import type { ApprovalRequest } from "../../approvers/types.ts";
import { judge, needsDeferredFacts } from "../../policy/engine.ts";
import { settleDecision } from "../../approvers/settle.ts";
import { sshFamily, type SshFacts } from "../../families/ssh.ts";
import { dialTcp } from "../relay.ts";
import { log } from "../../log.ts";
import { DENIED_EXIT_STATUS, SshGate, type ChannelRecord, type SshRequest, type Verdict } from "./gate.ts";
import { gatewayHostKey, gatewaySshCa, hostCertFor, hostKeyVerdict, KnownUpstreams, publicKeyOfBlob } from "./keys.ts";
import { certifiedHostKey, fixKexReplies } from "./host-cert.ts";
import { ForwardedAgent } from "./agent-forward.ts";
import { sshSettings, upstreamFor } from "./spec.ts";
import { SessionHandle } from "./session-internals.ts";

export const sshHandler: EndpointHandler = {
  serve: (req, deps) => serveSsh(req, deps as FlowDeps),
};

/** How long the upstream's TCP connect, handshake and authentication may take together. */
export const UPSTREAM_READY_TIMEOUT_MS = 20_000;
/** An exec's stdin is buffered up to this when a rule reads ssh.stdin; past it the rules see it as unknown (fail closed). */
export const STDIN_LIMIT_BYTES = 1024 * 1024;

/** Ciphers in the order the gateway prefers: AES-GCM is the fastest ssh2 runs without its native addon. */
const CIPHERS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr"];

/** An x11-req as ssh2's Client asks it upstream. */
interface UpstreamX11 {
  single: boolean;
  screen: number;
  protocol: string;
  cookie: string;
}

/**
 * The agent's x11-req, for the upstream: its protocol and cookie unchanged
 * (OpenSSH's ssh sends a fake cookie and swaps in the real one when an X11
 * channel comes back to it). ssh2 parses the cookie as bytes and would send
 * bytes as hex: it goes on as the text it was. Unreadable: undefined.
 */
function upstreamX11(info: { single: boolean; screen: number; protocol: string; cookie: string | Buffer }): UpstreamX11 | undefined {
  const cookie = Buffer.isBuffer(info.cookie) ? info.cookie.toString("latin1") : info.cookie;
  if (typeof info.protocol !== "string" || !info.protocol || !cookie || !Number.isInteger(info.screen)) return undefined;
  return { single: info.single === true, screen: info.screen, protocol: info.protocol, cookie };
}

type UpstreamAuth = { ok: true; ref: string; user: string; privateKey?: string; passphrase?: string; password?: string } | { ok: false; reason: string };

async function serveSsh(req: ServeRequest, deps: FlowDeps): Promise<void> {
  const { flow, endpoint } = req;
  const device = flow.device;
  const settings = sshSettings(endpoint.settings);
  // The name the flow was claimed under, on the port the block gives it.
  const target = upstreamFor(settings, req.upstream);
  if (!deps.state) throw new Error("the ssh endpoint needs the state database");
  const state = deps.state;
  const auth = upstreamAuth(req.policy(), endpoint, device.profile, deps);
  const started = Date.now();
  // The device's forwarded agent, for the upstream's agent channels (used only on a session a rule allowed it for).
  const agent = new ForwardedAgent();

  const upstream = await openUpstream();
  const hostKey = gatewayHostKey(state.db, state.stateDir, endpoint.ref, Date.now());
  // The same key also as a certificate the gateway's SSH CA signed for the endpoint's hosts, offered first.
  const plainKey = ssh2.utils.parseKey(hostKey.privateKey) as ParsedKey;
  const cert = hostCertFor(hostKey, gatewaySshCa(state.db, state.stateDir, Date.now()), endpoint.ref, settings.upstreams.map((u) => u.host), Date.now());

  return new Promise<void>((resolve) => {
    const server = new ssh2.Server({
      hostKeys: [{ key: certifiedHostKey(plainKey, cert) }, { key: plainKey }],
      algorithms: { cipher: CIPHERS },
      ident: "clawpatrol",
      ...(upstream.ok ? {} : { banner: `clawpatrol: ${upstream.reason}` }),
    });
    server.on("connection", (conn: Connection) => {
      fixKexReplies(conn, cert);
      let agentUser = "";
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        if (upstream.ok) upstream.client.end();
        // SSH means nothing half-closed: the agent's EOF ends the flow. Queued bytes flush, then nothing lingers.
        flow.conn.end();
        setTimeout(() => flow.conn.destroy(), 2_000).unref?.();
        resolve();
      };
      conn.on("error", (e) => log.debug("ssh agent connection error", { flow: flow.id, error: e.message }));
      conn.on("end", finish);
      conn.on("close", finish);
      conn.on("authentication", (ctx) => {
        if (!upstream.ok) return ctx.reject([]);
        agentUser = ctx.username;
        ctx.accept();
      });
      conn.on("ready", () => {
        if (!upstream.ok) return conn.end();
        const client = upstream.client;
        agent.toward = conn;
        client.on("close", () => conn.end());
        const gate = new SshGate({ host: target.host, user: agentUser });
        serveConnection(conn, client, gate);
      });
    });
    server.on("error", (e: Error) => log.debug("ssh server error", { flow: flow.id, error: e.message }));
    flow.conn.on("close", () => {
      if (upstream.ok) upstream.client.end();
      resolve();
    });
    server.injectSocket(flow.conn);
  });

  /** Connects and authenticates upstream; never throws: a failure is a reason for the agent's banner and the log. */
  async function openUpstream(): Promise<{ ok: true; client: SshClient } | { ok: false; reason: string }> {
    if (!auth.ok) {
      log.warn("ssh credential unavailable", { flow: flow.id, endpoint: endpoint.ref, reason: auth.reason });
      connectionEvent("deny", auth.reason);
      return { ok: false, reason: "the gateway holds no credential for this server" };
    }
    const known = new KnownUpstreams(state.db);
    let refusal: string | undefined;
    const client = new ssh2.Client();
    const sock: Duplex = (deps.dial ?? dialTcp)(target.host, target.port);
    return new Promise((resolve) => {
      let settled = false;
      const settle = (r: { ok: true; client: SshClient } | { ok: false; reason: string }) => {
        if (settled) return;
        settled = true;
        if (!r.ok) {
          client.destroy();
          sock.destroy();
        }
        resolve(r);
      };
      client.on("ready", () => settle({ ok: true, client }));
      client.on("error", (e) => {
        const reason = refusal ?? `upstream ${target.host}:${target.port}: ${e.message}`;
        log.warn("ssh upstream failed", { flow: flow.id, endpoint: endpoint.ref, upstream: `${target.host}:${target.port}`, reason });
        if (!settled) connectionEvent("deny", reason);
        settle({ ok: false, reason: refusal ?? `the upstream ${target.host}:${target.port} could not be reached or refused the gateway's login` });
      });
      client.on("close", () => settle({ ok: false, reason: `the upstream ${target.host}:${target.port} closed the connection` }));
      if (auth.password !== undefined) {
        client.on("keyboard-interactive", (_n, _i, _l, prompts, answer) => answer(prompts.map(() => auth.password!)));
      }
      client.connect({
        sock,
        username: auth.user,
        ...(auth.privateKey !== undefined ? { privateKey: auth.privateKey } : {}),
        ...(auth.passphrase !== undefined ? { passphrase: auth.passphrase } : {}),
        ...(auth.password !== undefined ? { password: auth.password, tryKeyboard: true } : {}),
        algorithms: { cipher: CIPHERS },
        // Not agentForward: ssh2 would then ask for it on every channel; it is asked per exec or shell a rule allowed it for.
        agent,
        readyTimeout: UPSTREAM_READY_TIMEOUT_MS,
        keepaliveInterval: 60_000,
        hostVerifier: (blob: Buffer) => {
          const presented = publicKeyOfBlob(blob);
          if (!presented) {
            refusal = "the upstream presented a host key the gateway cannot read";
            return false;
          }
          const v = hostKeyVerdict(presented, settings.hostKey, known.get(target.host, target.port));
          if (v.verdict === "refuse") {
            refusal = `upstream host key refused: ${v.reason}`;
            log.error("ssh upstream host key refused", { flow: flow.id, endpoint: endpoint.ref, upstream: `${target.host}:${target.port}`, reason: v.reason });
            return false;
          }
          if (v.verdict === "record") {
            known.record(target.host, target.port, presented, Date.now());
            log.info("ssh upstream host key recorded (trust on first use)", { endpoint: endpoint.ref, upstream: `${target.host}:${target.port}`, reason: v.reason });
          }
          return true;
        },
      });
    });
  }

  /** Judges and replays what the agent asks for on one authenticated connection. */
  function serveConnection(conn: Connection, client: SshClient, gate: SshGate): void {
    let nextChannel = 0;
    const agentGone = new AbortController();
    conn.on("close", () => agentGone.abort());

    /** Judge one request; approvals are held (this request only). */
    const decide = async (facts: SshFacts): Promise<Verdict> => {
      const current = deps.policy();
      const ep = current.endpoints.get(endpoint.ref) ?? endpoint;
      const d = judge(current, { device: device.name, profile: device.profile, endpoint: ep }, facts);
      if (d.detail) log.warn("rule evaluation failed closed", { flow: flow.id, rule: d.rule, detail: d.detail });
      const verdict = gate.outcome(facts, await verdictOf(current, ep, facts, d, agentGone.signal));
      requestEvent(facts, verdict, d.detail);
      return verdict;
    };

    conn.on("session", (accept, reject) => {
      const facts = gate.facts(undefined, { verb: "session" });
      void decide(facts).then((v) => {
        if (!v.allow) return reject();
        const id = nextChannel++;
        gate.opened(id, facts, Date.now());
        serveSession(accept(), id);
      });
    });

    conn.on("tcpip", (accept, reject, info) => {
      const req: SshRequest = { verb: "forward", host: info.destIP, port: info.destPort };
      const facts = gate.facts(undefined, req);
      void decide(facts).then((v) => {
        if (!v.allow) return reject();
        client.forwardOut(info.srcIP, info.srcPort, info.destIP, info.destPort, (err, up) => {
          if (err) {
            log.info("ssh upstream refused a forward", { flow: flow.id, target: `${info.destIP}:${info.destPort}`, error: err.message });
            return reject();
          }
          const id = nextChannel++;
          gate.opened(id, facts, Date.now());
          splice(id, accept(), up);
        });
      });
    });

    conn.on("request", (accept, reject, name, info) => {
      if (name === "tcpip-forward") {
        const facts = gate.facts(undefined, { verb: "remote_forward", host: info.bindAddr, port: info.bindPort });
        void decide(facts).then((v) => {
          if (!v.allow) return reject?.();
          client.forwardIn(info.bindAddr, info.bindPort, (err, port) => (err ? reject?.() : accept?.(port)));
        });
      } else if (name === "cancel-tcpip-forward") {
        client.unforwardIn(info.bindAddr, info.bindPort, (err) => (err ? reject?.() : accept?.()));
      } else reject?.();
    });

    // A connection the upstream accepted on an allowed remote forward: opened toward the agent.
    client.on("tcp connection", (details, acceptUp, rejectUp) => {
      conn.forwardOut(details.destIP, details.destPort, details.srcIP, details.srcPort, (err, down) => {
        if (err) return rejectUp();
        const id = nextChannel++;
        gate.opened(id, gate.facts(undefined, { verb: "remote_forward", host: details.destIP, port: details.destPort }), Date.now());
        splice(id, down, acceptUp());
      });
    });

    // An X11 connection the upstream opened on a session whose X11 forwarding a
    // rule allowed (ssh2 only offers those): opened toward the agent's ssh,
    // which checks the cookie it made and hands the bytes to its display.
    client.on("x11", (details, acceptUp, rejectUp) => {
      conn.x11(details.srcIP, details.srcPort, (err, down) => {
        if (err) return rejectUp();
        const id = nextChannel++;
        gate.opened(id, gate.facts(undefined, { verb: "x11" }), Date.now());
        splice(id, down, acceptUp());
      });
    });

    /** Exit statuses that came before their channel was spliced. */
    const earlyExits = new WeakMap<ClientChannel, unknown[]>();

    function serveSession(session: Session, id: number): void {
      let pty: { term: string; cols: number; rows: number; width: number; height: number; modes: Record<string, number> } | undefined;
      let upstreamChannel: ClientChannel | undefined;
      // Set when a rule allowed this session's agent forwarding: asked for upstream with its exec or shell.
      let agentForward = false;
      // The agent's x11-req, when a rule allowed it: asked for upstream, unchanged, with its exec or shell.
      let x11: UpstreamX11 | undefined;
      const handle = new SessionHandle(conn, session);
      session.on("close", () => {
        const r = gate.closed(id, Date.now());
        if (r && !upstreamChannel) closeEvent(r);
      });
      // Requests are answered in the order they came (RFC 4254 §5.4), and an
      // exec's facts must see the env requests before it: one at a time.
      let queue: Promise<void> = Promise.resolve();
      const inTurn = (work: () => Promise<void>) => {
        queue = queue.then(work).catch((e: Error) => log.error("ssh session request failed", { flow: flow.id, error: e.message }));
      };

      const refuse = (facts: SshFacts, v: Verdict, reject: (() => void) | undefined, accept?: () => ServerChannel) => {
        const denial = gate.denial(facts, v);
        if (denial.mode === "exit" && accept) handle.deny(accept, denial.stderr, DENIED_EXIT_STATUS);
        else handle.refuse(reject, denial.stderr);
      };

      /** Judges a request that needs no upstream work yet (pty, env, agent, x11); `apply` says whether an allowed one can be carried out. */
      const simple = (req: SshRequest, accept: (() => void) | undefined, reject: (() => void) | undefined, apply: () => boolean = () => true) =>
        inTurn(async () => {
          const facts = gate.facts(id, req);
          const v = await decide(facts);
          if (handle.closed) return;
          if (v.allow && apply()) {
            gate.applied(id, req, facts);
            handle.reply(accept);
          } else refuse(facts, v.allow ? { allow: false, reason: `the ${req.verb} request could not be read` } : v, reject);
        });

      session.on("pty", (accept, reject, info) =>
        simple({ verb: "pty", term: info.term, cols: info.cols, rows: info.rows }, accept, reject, () => {
          pty = { term: info.term, cols: info.cols, rows: info.rows, width: info.width, height: info.height, modes: info.modes };
          return true;
        }),
      );
      session.on("env", (accept, reject, info) => simple({ verb: "env", name: info.key, value: info.val }, accept, reject));
      session.on("auth-agent", (accept, reject) =>
        simple({ verb: "agent" }, accept, reject, () => {
          agentForward = true;
          return true;
        }),
      );
      session.on("x11", (accept, reject, info) =>
        simple({ verb: "x11" }, accept, reject, () => {
          x11 = upstreamX11(info);
          return x11 !== undefined;
        }),
      );
      session.on("window-change", (accept, _reject, info) => {
        if (pty) Object.assign(pty, { cols: info.cols, rows: info.rows, width: info.width, height: info.height });
        upstreamChannel?.setWindow(info.rows, info.cols, info.height, info.width);
        handle.reply(accept);
      });
      session.on("signal", (accept, _reject, info) => {
        upstreamChannel?.signal(info.name);
        handle.reply(accept);
      });

      const openUpstreamChannel = (req: SshRequest): Promise<{ ok: true; up: ClientChannel } | { ok: false; reason: string }> =>
        new Promise((resolve) => {
          const opened = (err: Error | undefined, up: ClientChannel) => {
            if (err) {
              log.info("ssh upstream refused a request", { flow: flow.id, verb: req.verb, error: err.message });
              resolve({ ok: false, reason: `the upstream refused it (${err.message})` });
            } else {
              // A quick command's exit-status can come in the same read as the
              // request's success, before the splice listens: keep it for it.
              up.once("exit", (...args: unknown[]) => earlyExits.set(up, args));
              resolve({ ok: true, up });
            }
          };
          const env = gate.envOf(id);
          const x11Opt = x11 ? { x11 } : {};
          if (req.verb === "exec") client.exec(req.command, { ...(pty ? { pty } : {}), env, agentForward, ...x11Opt }, opened);
          else if (req.verb === "shell") client.shell(pty ?? false, { env, agentForward, ...x11Opt }, opened);
          else if (req.verb === "subsystem") client.subsys(req.name, opened);
          else resolve({ ok: false, reason: `${req.verb} does not start a command` });
        });

      /** exec, shell, subsystem: judged, opened upstream, then answered; the channels are spliced. */
      const start = (req: SshRequest, accept: () => ServerChannel, reject: (() => void) | undefined) =>
        inTurn(async () => {
          const facts = gate.facts(id, req);
          const v = await decide(facts);
          if (handle.closed) return;
          if (!v.allow) return refuse(facts, v, reject, accept);
          const opened = await openUpstreamChannel(req);
          if (!opened.ok) return refuse(facts, { allow: false, reason: opened.reason }, reject, accept);
          const down = handle.accept(accept);
          if (!down) return opened.up.close();
          gate.applied(id, req, facts);
          upstreamChannel = opened.up;
          splice(id, down, opened.up);
        });

      session.on("exec", (accept, reject, info) => {
        const current = deps.policy();
        const ep = current.endpoints.get(endpoint.ref) ?? endpoint;
        if (!needsDeferredFacts(current, ep, device.profile)) return start({ verb: "exec", command: info.command }, accept, reject);
        inTurn(() => execWithStdin(info.command, accept));
      });
      session.on("shell", (accept, reject) => start({ verb: "shell" }, accept, reject));
      session.on("subsystem", (accept, reject, info) => start({ verb: "subsystem", name: info.name }, accept, reject));

      /**
       * A rule reads ssh.stdin: the exec is accepted toward the agent, its
       * stdin read to EOF (up to STDIN_LIMIT_BYTES), then judged. A denial is
       * told on stderr with exit status 1 (the request was already answered).
       */
      const execWithStdin = async (command: string, accept: () => ServerChannel): Promise<void> => {
        const down = handle.accept(accept);
        if (!down) return;
        const chunks: Buffer[] = [];
        const over = await new Promise<boolean>((resolve) => {
          let size = 0;
          const stop = (past: boolean) => {
            down.off("data", onData);
            down.off("end", onEnd);
            down.pause();
            resolve(past);
          };
          const onData = (d: Buffer) => {
            chunks.push(d);
            size += d.length;
            if (size > STDIN_LIMIT_BYTES) stop(true);
          };
          const onEnd = () => stop(false);
          down.on("data", onData);
          down.on("end", onEnd);
        });
        const stdin = Buffer.concat(chunks);
        const req: SshRequest = over
          ? { verb: "exec", command, stdinUnknown: `stdin past ${STDIN_LIMIT_BYTES} bytes` }
          : { verb: "exec", command, stdin: stdin.toString("utf8") };
        const facts = gate.facts(id, req);
        const v = await decide(facts);
        if (handle.closed) return;
        const fail = (line: string) => {
          down.stderr.write(line);
          down.exit(DENIED_EXIT_STATUS);
          down.end();
          down.close();
        };
        if (!v.allow) return fail(gate.denial(facts, v).stderr);
        const opened = await openUpstreamChannel(req);
        if (!opened.ok) return fail(`clawpatrol: ${opened.reason}\r\n`);
        gate.applied(id, req, facts);
        upstreamChannel = opened.up;
        opened.up.write(stdin);
        gate.transferred(id, stdin.length, 0);
        // Whole stdin read: the upstream gets its EOF; past the bound, the rest follows through the splice.
        if (!over) opened.up.end();
        splice(id, down, opened.up, !over);
        down.resume();
      };
    }

    /** Bytes both ways between the agent's channel and the upstream's, exit status down, one record at close. */
    function splice(id: number, down: ServerChannel, up: ClientChannel, agentDone = false): void {
      down.on("data", (d: Buffer) => gate.transferred(id, d.length, 0));
      up.on("data", (d: Buffer) => gate.transferred(id, 0, d.length));
      up.stderr.on("data", (d: Buffer) => gate.transferred(id, 0, d.length));
      if (!agentDone) down.pipe(up);
      // A session's exit status must go before its EOF (ssh2 drops exit() once
      // the channel is ended): it is ended when the upstream channel closes,
      // after its exit-status. A forward passes the upstream's EOF on at once.
      const session = (down as unknown as { type?: string }).type === "session";
      up.pipe(down, { end: !session });
      up.stderr.pipe(down.stderr, { end: false });
      down.on("error", () => up.close());
      up.on("error", () => down.close());
      const onExit = (code: number | null, signal?: string, coreDumped?: boolean, description?: string) => {
        if (typeof code === "number") {
          gate.exited(id, { code });
          down.exit(code);
        } else if (signal) {
          gate.exited(id, { signal });
          down.exit(signal, coreDumped ?? false, description ?? "");
        }
      };
      const early = earlyExits.get(up);
      if (early) onExit(...(early as Parameters<typeof onExit>));
      else up.on("exit", onExit);
      let closed = false;
      const close = () => {
        if (closed) return;
        closed = true;
        // ssh2 sends EOF and CLOSE once what is queued for the agent is written.
        down.end();
        up.close();
        const r = gate.closed(id, Date.now());
        if (r) closeEvent(r);
      };
      up.on("close", close);
      down.on("close", close);
    }
  }

  function verdictOf(current: Policy, ep: Endpoint, facts: SshFacts, d: Decision, signal: AbortSignal): Promise<Verdict> {
    return settleDecision({ policy: current, decision: d, gate: deps.approvals, request: () => approvalRequestFor(facts, ep, d), signal });
  }

  function approvalRequestFor(facts: SshFacts, ep: Endpoint, d: Decision): ApprovalRequest {
    const redact = deps.redact ?? ((t: string) => t);
    const what = facts.command ?? facts.subsystem ?? (facts.forwardHost !== undefined ? `${facts.forwardHost}:${facts.forwardPort ?? 0}` : "");
    return {
      id: randomUUID(),
      time: new Date().toISOString(),
      device: device.name,
      profile: device.profile,
      endpoint: ep.ref,
      rule: d.rule ?? "",
      reason: d.reason,
      method: facts.verb.toUpperCase(),
      host: target.host,
      path: redact(what.slice(0, 300)),
      headers: { user: facts.user },
      bodyPreview: redact((facts.stdin ?? "").slice(0, 4096)),
      bodyTruncated: (facts.stdin?.length ?? 0) > 4096,
      fingerprint: sshFamily.fingerprint(facts),
      family: "ssh",
      summary: redact(sshFamily.summary(facts)),
    };
  }

  function baseEvent(time: number): GatewayEvent {
    const event: GatewayEvent = {
      time: new Date(time).toISOString(),
      kind: "ssh",
      family: "ssh",
      flowId: flow.id,
      device: device.name,
      profile: device.profile,
      endpoint: endpoint.ref,
      host: target.host,
      port: target.port,
      bytesUp: 0,
      bytesDown: 0,
      durationMs: 0,
      verdict: "allow",
      reason: "",
    };
    if (auth.ok) event.credential = auth.ref;
    return event;
  }

  function pathOf(f: SshFacts): string | undefined {
    return f.command ?? f.subsystem ?? (f.forwardHost !== undefined ? `${f.forwardHost}:${f.forwardPort ?? 0}` : undefined);
  }

  function requestEvent(facts: SshFacts, v: Verdict, detail: string | undefined): void {
    const event = baseEvent(Date.now());
    event.method = facts.verb;
    const p = pathOf(facts);
    if (p !== undefined) event.path = p.slice(0, 300);
    event.verdict = v.allow ? "allow" : "deny";
    event.reason = v.reason;
    event.summary = sshFamily.summary(facts);
    event.action = sshFamily.action(facts);
    if (v.rule !== undefined) event.rule = v.rule;
    if (detail) event.detail = detail;
    if (v.approval) Object.assign(event, v.approval);
    deps.publish(event);
  }

  function closeEvent(r: ChannelRecord): void {
    const event = baseEvent(r.startedAt);
    event.method = `${r.facts.verb}-closed`;
    const p = pathOf(r.facts);
    if (p !== undefined) event.path = p.slice(0, 300);
    event.bytesUp = r.bytesUp;
    event.bytesDown = r.bytesDown;
    event.durationMs = r.durationMs;
    const exit = r.exit === undefined ? "" : "code" in r.exit ? ` exited ${r.exit.code}` : ` killed by ${r.exit.signal}`;
    event.reason = `channel closed${exit}`;
    event.summary = `${sshFamily.summary(r.facts)}${exit}`;
    event.action = { ...sshFamily.action(r.facts), ...(r.exit ? ("code" in r.exit ? { exit_status: r.exit.code } : { exit_signal: r.exit.signal }) : {}) };
    deps.publish(event);
  }

  function connectionEvent(verdict: "deny", reason: string): void {
    const event = baseEvent(started);
    event.method = "connect";
    event.verdict = verdict;
    event.reason = reason;
    event.summary = `connect ${target.host}:${target.port}`;
    event.durationMs = Date.now() - started;
    deps.publish(event);
  }
}

/** The endpoint's credential, when the device's profile is granted it and the gateway holds its secret. */
function upstreamAuth(policy: Policy, endpoint: Endpoint, profile: string, deps: FlowDeps): UpstreamAuth {
  if (!endpoint.credential) return { ok: false, reason: "the endpoint names no credential" };
  const cred = policy.credentials.get(endpoint.credential);
  if (!cred) return { ok: false, reason: `credential ${endpoint.credential} is not configured` };
  if (!policy.profiles.get(profile)?.credentials.includes(cred.ref)) return { ok: false, reason: `profile "${profile}" is not granted ${cred.ref}` };
  const secret = deps.secretFor(cred);
  if (!secret.ok) return { ok: false, reason: secret.reason };
  const user = cred.settings.user;
  if (!user) return { ok: false, reason: `credential ${cred.ref} names no user` };
  if (cred.type === "ssh_password") return { ok: true, ref: cred.ref, user, password: secret.value };
  const passphraseFile = cred.settings.passphrase_file;
  if (passphraseFile === undefined) return { ok: true, ref: cred.ref, user, privateKey: secret.value };
  const file = path.resolve(path.dirname(cred.source.file), passphraseFile);
  try {
    const passphrase = readFileSync(file, "utf8").replace(/\r?\n$/, "");
    return { ok: true, ref: cred.ref, user, privateKey: secret.value, passphrase };
  } catch (e) {
    return { ok: false, reason: `credential ${cred.ref}: cannot read passphrase_file ${file} (${(e as { code?: string }).code ?? "unreadable"})` };
  }
}
