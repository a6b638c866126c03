// The gateway role, assembled: policy (with hot reload), state database,
// secrets, CA and leaves, the event bus and its sinks, and the capture
// modes that produce Flows. Everything below the Flow is capture-agnostic.
import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Database } from "bun:sqlite";
import type { Credential, Policy } from "./policy/types.ts";
import { loadPolicy, formatConfigError } from "./policy/load.ts";
import { watchPolicy } from "./policy/reload.ts";
import { openStateDb, STATE_DB_FILE } from "./store/db.ts";
import { sqliteKillStore } from "./store/gate-kills.ts";
import { persistRateLimits } from "./store/rate-limits.ts";
import { persistSpend } from "./store/spend.ts";
import { spendMetricLines } from "./spend/metrics.ts";
import { SecretStore } from "./store/secrets.ts";
import { DeviceRegistry } from "./store/devices.ts";
import { loadOrCreateCA, type CertificateAuthority } from "./tls/ca.ts";
import { LeafCertificates } from "./tls/leaf.ts";
import { Redactor } from "./events/redact.ts";
import { EventBus } from "./events/bus.ts";
import { QueuedActionsSink } from "./events/sinks/sqlite-queue.ts";
import { JsonlSink } from "./events/sinks/jsonl.ts";
import { StderrSink } from "./events/sinks/stderr.ts";
import { humanEventSink } from "./events/sinks/journald.ts";
import { JournalWriter, journalLogWriter, journalSocketForProcess } from "./journal.ts";
import { Metrics } from "./events/metrics.ts";
import { exportAuth, startClickHouseExport } from "./events/export/clickhouse.ts";
import { resolveSecret } from "./credentials/resolve.ts";
import { pluginFor } from "./credentials/plugin.ts";
import { UpstreamPool } from "./endpoints/https/upstream.ts";
import { upstreamTrust } from "./tls/trust.ts";
import { handleFlow, type FlowDeps } from "./dispatch/handle.ts";
import { GateService } from "./gate/service.ts";
import type { AnyElysia } from "elysia";
import { killControlRoutes, localKillOps } from "./gate/kill-routes.ts";
import { ALL_DEVICES, KILL_TUNNEL_GRACE_MS } from "./gate/kill.ts";
import { ConnIndex, systemResolver } from "./dispatch/conn-index.ts";
import { destinationContextFor } from "./dispatch/destination-context.ts";
import { hostAddressCache } from "./net/host-addresses.ts";
import { fdMetrics } from "./net/fds.ts";
import { FairQueue } from "./net/fair-queue.ts";
import { processLoopStall } from "./net/loop-stall.ts";
import { runtimeMetrics } from "./events/runtime-metrics.ts";
import { DEFAULT_QUOTAS, DeviceQuotas, bufferedMetricLines, type QuotaVerdict } from "./dispatch/quotas.ts";
import type { SecretLookup } from "./endpoints/https/session.ts";
import type { ApprovalGate } from "./endpoints/https/approval.ts";
import { createApprovals, chainOptionsFor, type Approvals } from "./approvers/registry.ts";
import { newFlowId, type DeviceIdentity, type Flow } from "./dispatch/flow.ts";
import { startProxyListener, type ProxyListener, type ProxyRefusal } from "./net/proxy/listener.ts";
import { startControlServer, type ControlServer } from "./control/server.ts";
import { startPublicServer, localApproverCallback, type PublicServer } from "./control/public.ts";
import { loadDashboardTls } from "./tls/dashboard-tls.ts";
import { deviceControlRoutes, forwardedClientHost, forwardedClientIp } from "./control/server.ts";
import { startDnsVip, type DnsVip } from "./dns/role.ts";
import { syncVips } from "./dns/vip-hosts.ts";
import { VipTable } from "./store/vips.ts";
import { parseHostPort } from "./net/stack/udp-sockets.ts";
import { onboardControlRoutes, onboardPublicRoutes } from "./control/onboard/index.ts";
import { deviceRunControlRoutes, deviceRunPublicRoutes } from "./control/device-runs/index.ts";
import { startTunnel, type Tunnel } from "./tunnel.ts";
import { operatorApi } from "./control/api/index.ts";
import { ConfigEditor } from "./control/config/editor.ts";
import { registryDeviceOps } from "./control/api/device-ops.ts";
import { downloadRoutes } from "./control/downloads.ts";
import { dashboardRoutes } from "./dashboard/routes.ts";
import { fileURLToPath } from "node:url";
import { addLogRedactor, log, setLogWriter } from "./log.ts";

const PRUNE_INTERVAL_MS = 3_600_000;
/**
 * On stop (SIGTERM), how long flows may take to finish the exchange under
 * way (its event recorded) before the rest are cut; the sinks are flushed
 * after. systemd's stop timeout is 90 s.
 */
const DRAIN_MS = 5_000;
/**
 * Agents' TLS handshakes run this many at a time; the rest wait in turn,
 * fairly between devices, up to HANDSHAKES_MAX_WAITING, past which a
 * connection is closed at once and logged. A slot is held from the leaf to
 * the agent's first bytes (or 10 s), so it also covers handshakes a client
 * started and abandoned (Go's transport leaves spare dials half done): 32
 * slots were taken by those under `hey -c 200` and starved the live ones.
 */
const HANDSHAKE_SLOTS = 256;
const HANDSHAKES_MAX_WAITING = 4096;

function hostPort(listen: string): { host: string; port: number } {
  const { host, port } = parseHostPort(listen);
  return { host, port };
}

function formatHostPort(a: { host: string; port: number }): string {
  return a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

export interface GatewayOptions {
  configPath: string;
  env?: Record<string, string | undefined>;
  /** Echo events to stderr in the compact human form (default true). */
  stderrEvents?: boolean;
  /** Where those lines go (default process.stderr); tests capture them. */
  stderrWrite?: (line: string) => void;
  /** Watch the config for changes (default true). */
  watch?: boolean;
  /** Serve the control socket (default true). */
  control?: boolean;
  /** Where the client binaries served at /download/ are (default: dist/ beside app/, as `make client` and the image put them). */
  downloadsDir?: string;
  /**
   * all (default; `make run`): the public API on dashboard_listen and the
   * DNS-VIP responder run in this process. gateway (the appliance): they are
   * the dashboard and dnsvip services; this process serves neither.
   */
  role?: "all" | "gateway";
}

export interface RunningGateway {
  policy(): Policy;
  ca: CertificateAuthority;
  db: Database;
  secrets: SecretStore;
  devices: DeviceRegistry;
  bus: EventBus;
  proxies: ProxyListener[];
  approvals: Approvals;
  /** The WireGuard capture mode, when `gateway { wireguard {} }` is configured. */
  tunnel: Tunnel | undefined;
  /** The public API (role `all` only; the dashboard role serves it otherwise). */
  readonly publicServer: PublicServer;
  /** The in-process DNS-VIP responder (role `all` with `gateway { dns }`). */
  dnsVip: DnsVip | undefined;
  /** Feed a Flow from any capture mode. */
  handleFlow(flow: Flow): Promise<void>;
  /** Apply a config now (as the watcher does); returns the errors if it was rejected. */
  reload(): Promise<string[]>;
  close(): Promise<void>;
}

export class ConfigRejected extends Error {
  constructor(readonly errors: string[]) {
    super(errors.join("\n"));
  }
}

export async function startGateway(opts: GatewayOptions): Promise<RunningGateway> {
  const env = opts.env ?? process.env;
  const first = await loadPolicy(opts.configPath, { env });
  if (!first.ok) throw new ConfigRejected(first.errors.map(formatConfigError));
  let policy = first.policy;
  let generation = 0;
  upstreamTrust.setGatewayCaPem(policy.gateway.upstreamCaPem);

  const stateDir = policy.gateway.stateDir;
  const db = openStateDb(stateDir);
  // Rules' rate-limit buckets: kept across reloads, and across a restart within their window.
  const rateLimits = persistRateLimits(db);
  // The day's LLM spend that budgets are checked against: kept across a restart.
  const spend = persistSpend(db);
  // A `secret set` from another process is seen within this long.
  const secrets = new SecretStore(db, stateDir, { revalidateMs: 250 });
  const devices = new DeviceRegistry(db);
  const ca = await loadOrCreateCA(stateDir);
  // Trusted only for an endpoint with `trust_gateway_ca = true` (the offline demo's echo server).
  upstreamTrust.setOwnCaPem(ca.certPem);
  const leaves = new LeafCertificates(ca);

  const secretSources = { store: secrets, env, readFile: (p: string) => readFileSync(p, "utf8") };
  // The strings that would reveal each secret, worked out once per value.
  const needlesCache = new Map<string, string[]>();
  const secretFor: SecretLookup = (cred: Credential) => {
    const r = resolveSecret(cred, secretSources);
    if (!r.ok) return r;
    const key = `${cred.ref}\0${r.value}`;
    let needles = needlesCache.get(key);
    if (!needles) {
      needles = pluginFor(cred.type).revealingForms(r.value, cred);
      if (needlesCache.size >= 1024) needlesCache.clear();
      needlesCache.set(key, needles);
    }
    return { ok: true, value: r.value, needles };
  };

  // Every form in which a configured secret could appear, for the redactor.
  const revealingValues = (): string[] => {
    const out: string[] = [...secrets.values()];
    for (const cred of policy.credentials.values()) {
      const r = secretFor(cred);
      if (r.ok) out.push(r.value, ...r.needles);
    }
    return out;
  };
  const redactor = new Redactor(revealingValues, {
    // File- and env-held secrets can change without the store knowing: also refresh every few seconds.
    version: () => `${generation}:${secrets.version()}:${Math.floor(Date.now() / 5000)}`,
  });
  // Ours while this gateway runs; the previous one is back after close() (its
  // secret store is closed then, and redacting through it would throw).
  const removeLogRedactor = addLogRedactor((s: string) => redactor.redactText(s));
  // Under systemd with stderr in the journal: log lines and events go natively, with fields.
  const journalSocket = opts.stderrWrite ? undefined : journalSocketForProcess(env);
  if (journalSocket) setLogWriter(journalLogWriter(new JournalWriter(journalSocket), "clawpatrol-gateway"));

  const bus = new EventBus(redactor);
  // Inserts in a worker thread: the event loop never waits on SQLite.
  const actions = new QueuedActionsSink({ file: path.join(stateDir, STATE_DB_FILE), retentionDays: policy.gateway.eventsRetentionDays });
  bus.addSink(actions);
  if (policy.gateway.eventsJsonl) bus.addSink(new JsonlSink(policy.gateway.eventsJsonl));
  // The audit export: rows wait in a spool under the state dir while ClickHouse is away.
  const exportSettings = policy.gateway.eventsClickhouse;
  const exporter = exportSettings
    ? startClickHouseExport(exportSettings, {
        stateDir,
        gatewayName: exportSettings.gatewayName ?? os.hostname(),
        auth: () => exportAuth(exportSettings.credential, policy.credentials, (cred) => resolveSecret(cred, secretSources)),
        caRoots: () => upstreamTrust.roots(),
      })
    : undefined;
  if (exporter) bus.addSink(exporter);
  if (opts.stderrEvents ?? true) bus.addSink(opts.stderrWrite ? new StderrSink(opts.stderrWrite) : humanEventSink(env));
  actions.prune();
  const pruneTimer = setInterval(() => actions.prune(), PRUNE_INTERVAL_MS);
  pruneTimer.unref?.();

  const approvals = await createApprovals(policy, {
    secrets: { store: secrets, env },
    publish: (e) => log.info("approval decided", { id: e.id, rule: e.rule, decision: e.decision, approvers: e.approvals.map((a) => a.approver).join(","), latencyMs: e.latencyMs }),
  });
  const approvalGate: ApprovalGate = {
    hold: ({ request, rule, chain, operationId, signal }) =>
      approvals.hub.resumeOrStart(request, chain, chainOptionsFor(policy, rule, signal), operationId),
  };

  const gate = new GateService({
    policy: () => policy,
    approvals: approvalGate,
    publish: (e) => bus.publish(e),
    redact: (text) => redactor.redactText(text),
    // The warden proves itself with the device's API token (the agent cannot read it).
    wardenOf: (proof) => devices.lookupByApiToken(proof)?.name,
    kills: sqliteKillStore(db),
  });
  const gateSweep = setInterval(() => gate.sweep(), 10_000);
  gateSweep.unref?.();

  const pool = new UpstreamPool();
  const handshakes = new FairQueue(HANDSHAKE_SLOTS, HANDSHAKES_MAX_WAITING);
  const shutdown = new AbortController();
  const deps: FlowDeps = {
    handshakes,
    shutdown: shutdown.signal,
    policy: () => policy,
    secretFor,
    publish: (e) => bus.publish(e),
    pool,
    leaves,
    caCertPem: ca.certPem,
    approvals: approvalGate,
    redact: (text) => redactor.redactText(text),
    gate,
    // Set once the responder runs (`all`), else the dnsvip service's configured address.
    dnsTcp: () => dnsTcpTarget,
    // VIP destinations back to the hostname they were handed out for (the VIP table);
    // the addresses of endpoints claimed by address (the conn index).
    dispatch: { vipHostname: (ip) => vipTable.hostnameOf(ip), endpointsAt: (ip) => connIndex.lookup(ip) },
    // What a relay may reach: not this host, its link, or a device (app/dispatch/destinations.ts).
    destinations: () => destinationContextFor(policy, hostAddresses()),
    state: { db, stateDir },
    // What a device's relays and interceptions hold counts against its buffered-bytes quota, as its stack rings do.
    buffers: (device) => {
      bufferOwners.set(device.name, device);
      return quotas.bufferAccount(device.name);
    },
  };
  const connIndex = new ConnIndex({ resolve: systemResolver });
  connIndex.update(policy);
  const hostAddresses = hostAddressCache();
  let dnsTcpTarget: { host: string; port: number } | undefined;
  const vipTable = new VipTable(db);
  let flowsOpen = 0;
  // The agents' connections of open flows, cut when a stop's drain runs out.
  const flowConns = new Set<Flow["conn"]>();
  // Per-device quotas (app/dispatch/quotas.ts): one device cannot take what all share.
  const quotas = new DeviceQuotas(
    () => ({ ...DEFAULT_QUOTAS, ...policy.defaults.quotas }),
    () => performance.now(),
    // a device's windows closed at its buffered-bytes quota: reported like a refusal, without a flow
    (device, v) => {
      const d = bufferOwners.get(device);
      if (d) quotaRefused(d, { host: "", port: 0 }, "buffers", v);
    },
  );
  // who a buffer account belongs to, for its event (one entry per device that opened a TCP flow)
  const bufferOwners = new Map<string, DeviceIdentity>();
  const quotaRefused = (device: DeviceIdentity, dst: { host: string; port: number }, flowId: string, v: Extract<QuotaVerdict, { ok: false }>) => {
    // A flood makes one event per device and quota every few seconds, not one per packet.
    if (!quotas.shouldReport(device.name, v.quota)) return;
    log.warn("device over quota", { device: device.name, quota: v.quota, limit: v.limit });
    refusalEvent(device, dst, flowId, v.reason);
  };
  // UDP to a refused destination: one event per device and destination every few seconds.
  const udpRefused = (device: DeviceIdentity, dst: { host: string; port: number }, reason: string) => {
    if (quotas.shouldReport(device.name, `udp ${dst.host}:${dst.port}`)) refusalEvent(device, dst, "udp", reason);
  };
  const refusalEvent = (device: DeviceIdentity, dst: { host: string; port: number }, flowId: string, reason: string) => {
    bus.publish({
      time: new Date().toISOString(),
      kind: "connection",
      flowId,
      device: device.name,
      profile: device.profile,
      host: dst.host,
      port: dst.port,
      bytesUp: 0,
      bytesDown: 0,
      durationMs: 0,
      verdict: "deny",
      reason,
    });
  };
  /** A new TCP flow against the device's quotas: admitted (`release` when it ends) or refused and recorded. */
  const admitTcp = (device: DeviceIdentity, dst: { host: string; port: number }, flowId: string): { ok: true; release: () => void } | { ok: false; reason: string } => {
    // DNS over TCP (any :53) goes to the responder: its own, smaller quota.
    const dns = dst.port === 53;
    const q = quotas.openTcp(device.name, dns);
    if (!q.ok) {
      quotaRefused(device, dst, flowId, q);
      return q;
    }
    let released = false;
    return { ok: true, release: () => void (released || ((released = true), quotas.closeTcp(device.name, dns))) };
  };
  // A tunnel's flow (admitted here: the stack answered the handshake already, a refusal is a reset).
  const onFlow = (flow: Flow): Promise<void> => {
    const a = admitTcp(flow.device, flow.dst, flow.id);
    if (!a.ok) {
      flow.conn.destroy();
      return Promise.resolve();
    }
    flow.conn.once("close", a.release);
    return runFlow(flow);
  };
  // A flow its capture mode admitted (the proxy: before it answered the handshake).
  const runFlow = (flow: Flow): Promise<void> => {
    flowsOpen += 1;
    flowConns.add(flow.conn);
    return handleFlow(flow, deps)
      .catch((e: Error) => {
        log.error("flow failed", { flow: flow.id, error: e.message });
        flow.conn.destroy();
      })
      .finally(() => {
        flowsOpen -= 1;
        flowConns.delete(flow.conn);
      });
  };
  const metrics = new Metrics({
    approvalsPending: () => approvals.hub.pending().length,
    flowsOpen: () => flowsOpen,
    devices: () => devices.list().filter((d) => !d.revokedAt).length,
    extra: () => [
      ...fdMetrics(),
      ...runtimeMetrics({
        loop: processLoopStall(),
        pool: () => pool.stats(),
        handshakes: () => ({ ...handshakes.stats(), limit: handshakes.limit, maxWaiting: handshakes.maxWaiting }),
        leaves: () => ({ cached: leaves.cachedCount, max: leaves.maxCached }),
        sinkPending: () => ({ sqlite: actions.queued }),
      }),
      ...actions.metricLines(),
      ...bufferedMetricLines(quotas),
      ...(exporter?.metricLines() ?? []),
      ...spendMetricLines(spend.ledger),
    ],
  });
  bus.addSink(metrics);

  const identify = (token: string | undefined): DeviceIdentity | undefined => {
    if (token !== undefined) return devices.lookupByToken(token);
    const profile = policy.defaults.profile;
    return profile ? { name: "anonymous", profile } : undefined;
  };

  // VIPs for the hostnames that need one, at build and at every reload.
  const bindVips = (p: Policy) => {
    try {
      const bound = syncVips(db, p, Date.now());
      if (bound && bound.length > 0) log.info("dns vips bound", { count: bound.length });
    } catch (e) {
      log.error("dns vips: allocation failed, bindings unchanged", { error: (e as Error).message });
    }
  };
  bindVips(policy);

  const apply = (next: Policy) => {
    bindVips(next);
    connIndex.update(next);
    if (next.gateway.stateDir !== policy.gateway.stateDir) {
      log.warn("state_dir changes take effect on restart", { from: policy.gateway.stateDir, to: next.gateway.stateDir });
    }
    const exportKey = (p: Policy) => JSON.stringify({ ...p.gateway.eventsClickhouse, source: undefined });
    if (exportKey(next) !== exportKey(policy)) log.warn("events.clickhouse changes take effect on restart");
    policy = next;
    generation += 1;
    upstreamTrust.setGatewayCaPem(next.gateway.upstreamCaPem);
    approvals.setPolicy(next);
    rateLimits.limiter.retain(new Set(next.rules.map((r) => r.name)));
    redactor.refresh();
    log.info("policy loaded", { files: next.files.map((f) => path.relative(process.cwd(), f) || f).join(","), rules: next.rules.length });
  };
  const reject = (errors: string[]) => {
    log.error(`config rejected, keeping the last good policy:\n  ${errors.join("\n  ")}`);
  };

  const watcher =
    opts.watch === false
      ? undefined
      : watchPolicy(opts.configPath, {
          onPolicy: apply,
          onErrors: (errors) => reject(errors.map(formatConfigError)),
        }, { env });

  const reload = async (): Promise<string[]> => {
    const r = await loadPolicy(opts.configPath, { env });
    if (!r.ok) {
      const errors = r.errors.map(formatConfigError);
      reject(errors);
      return errors;
    }
    apply(r.policy);
    return [];
  };

  const role = opts.role ?? "all";
  // In `all` the DNS-VIP responder runs here, on its own socket, as the service would.
  const dnsVip = role === "all" && policy.gateway.dns ? await startDnsVip(() => policy) : undefined;
  // Where device DNS goes, UDP and TCP.
  dnsTcpTarget = dnsVip ? { ...dnsVip.responder.address } : policy.gateway.dns ? hostPort(policy.gateway.dns.listen) : undefined;

  // The WireGuard capture mode and the onboarding that feeds it.
  let tunnel: Tunnel | undefined;
  const wgSettings = policy.gateway.wireguard;
  if (wgSettings) {
    tunnel = await startTunnel(wgSettings, {
      db,
      devices,
      stateDir,
      caCertPem: ca.certPem,
      publicUrl: policy.gateway.publicUrl ?? `${policy.gateway.dashboardTls ? "https" : "http"}://${policy.gateway.dashboardListen}`,
      policy: () => policy,
      onFlow: (f) => void onFlow(f),
      destinations: deps.destinations!,
      udpQuota: {
        open: (device, dst) => {
          const q = quotas.openUdp(device.name);
          if (!q.ok) quotaRefused(device, dst, "udp", q);
          return q.ok;
        },
        close: (device) => quotas.closeUdp(device.name),
      },
      bufferAccount: (device) => {
        bufferOwners.set(device.name, device);
        return quotas.bufferAccount(device.name);
      },
      onUdpRefused: udpRefused,
      // Device DNS to the DNS-VIP responder: ours in `all`, else the dnsvip service's address.
      ...(dnsTcpTarget ? { dnsResolver: formatHostPort(dnsTcpTarget) } : {}),
    });
    // The kill switch closes the stopped devices' run tunnels too, once their
    // wardens have had the moment they need to hear it and end the runs.
    // Only the runs alive when the switch went on, and only while it stays on
    // for their device: a release within the grace lets the next run live.
    const runs = tunnel.runs;
    gate.onKill((e) => {
      const stopped = runs.list().filter((r) => e.scope === ALL_DEVICES || r.device === e.scope);
      const t = setTimeout(() => {
        // A gateway closed in the meantime has no runs (and no database) left.
        if (closed) return;
        for (const r of stopped) if (gate.kill.stops(r.device)) runs.end(r.device, r.id, "kill switch");
      }, KILL_TUNNEL_GRACE_MS);
      t.unref?.();
    });
  }
  const approverCallback = localApproverCallback(() => approvals.current().routes());
  const publicTls = role !== "all" ? undefined : await loadDashboardTls(policy.gateway);
  const publicTlsMode = policy.gateway.dashboardTls?.kind ?? "none";
  if (role === "all" && publicTlsMode === "acme") log.warn("dashboard_tls { acme } orders certificates in the dashboard role only; role all serves the CA-minted certificate");
  const publicServer = role !== "all" ? undefined : startPublicServer(policy.gateway.dashboardListen, {
    plugins: [
      ...(tunnel ? [onboardPublicRoutes(tunnel.onboard), deviceRunPublicRoutes(tunnel.runs, devices)] : []),
      downloadRoutes({
        dir: opts.downloadsDir ?? path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "dist"),
        publicUrl: () => policy.gateway.publicUrl,
        caCertPem: () => ca.certPem,
        tlsMode: () => publicTlsMode,
      }),
      // The operators' API: sessions or API tokens, roles, CSRF, audit.
      operatorApi({
        db,
        hub: approvals.hub,
        bus,
        devices: tunnel?.onboard ?? registryDeviceOps(devices, () => policy.profiles),
        ...(tunnel ? { onboarding: tunnel.onboard } : {}),
        policy: () => policy,
        reload,
        config: new ConfigEditor({ configPath: opts.configPath, env, reload }),
        now: Date.now,
        metrics: () => metrics.render(),
        kill: localKillOps(gate),
      }),
      // The operators' web dashboard at `/` (bundled in memory now).
      dashboardRoutes(),
    ],
    approverCallback,
  }, publicTls);

  let control: ControlServer | undefined;
  if (opts.control !== false) {
    try {
      control = await startControlServer(policy.gateway.controlSocket, {
        db,
        bus,
        reload,
        startedAt: Date.now(),
        approvals: approvals.hub,
        metrics: () => metrics.render(),
        plugins: [
          killControlRoutes(gate),
          ...(tunnel
          ? [
              onboardControlRoutes(tunnel.onboard),
              deviceRunControlRoutes(tunnel.runs),
              // The device routes the dashboard role forwards (with the client's address).
              onboardPublicRoutes(tunnel.onboard, { clientIp: forwardedClientIp, requestHost: forwardedClientHost }),
              deviceRunPublicRoutes(tunnel.runs, devices),
            ]
          : [deviceControlRoutes(registryDeviceOps(devices, () => policy.profiles))]),
        ] as AnyElysia[],
        approverCallback,
      });
    } catch (e) {
      watcher?.close();
      clearInterval(pruneTimer);
      clearInterval(gateSweep);
      await publicServer?.close();
      await tunnel?.close();
      await dnsVip?.close();
      await bus.close();
      removeLogRedactor();
      rateLimits.close();
      spend.close();
      db.close();
      throw e;
    }
  }

  // Capture modes last: nothing reaches a handler before everything it needs exists.
  const proxies: ProxyListener[] = [];
  const proxy = policy.gateway.proxy;
  if (proxy) try {
    const common = {
      identify,
      allowAnonymous: () => policy.defaults.profile !== undefined,
      admit: admitTcp,
      onFlow: (f: Flow) => void runFlow(f),
      // Refused at the proxy's door (405, 407, ...): no device is known, the client's address is.
      onRefusal: (r: ProxyRefusal) =>
        bus.publish({
          time: new Date().toISOString(),
          kind: "connection",
          flowId: newFlowId(),
          device: "unknown",
          profile: "",
          host: r.dst?.host ?? "",
          port: r.dst?.port ?? 0,
          ...(r.status !== undefined ? { status: r.status } : {}),
          bytesUp: 0,
          bytesDown: 0,
          durationMs: 0,
          verdict: "deny",
          reason: r.reason,
          detail: `explicit proxy client ${r.src.host}:${r.src.port}`,
        }),
    };
    proxies.push(await startProxyListener({ listen: proxy.listen, protocols: "both", ...common }));
    if (proxy.socks5Listen) {
      proxies.push(await startProxyListener({ listen: proxy.socks5Listen, protocols: "socks5", ...common }));
    }
  } catch (e) {
    await Promise.all(proxies.map((p) => p.close()));
    watcher?.close();
    await control?.close();
    await publicServer?.close();
    await tunnel?.close();
    await dnsVip?.close();
    clearInterval(pruneTimer);
    clearInterval(gateSweep);
    await bus.close();
    removeLogRedactor();
    rateLimits.close();
    spend.close();
    db.close();
    throw e;
  }


  let closed = false;
  return {
    policy: () => policy,
    ca,
    db,
    secrets,
    devices,
    bus,
    proxies,
    approvals,
    tunnel,
    get publicServer(): PublicServer {
      if (!publicServer) throw new Error("the gateway role serves no public API (the dashboard role does)");
      return publicServer;
    },
    dnsVip,
    handleFlow: onFlow,
    reload,
    async close() {
      if (closed) return;
      closed = true;
      watcher?.close();
      // Stop taking connections; let each flow finish its exchange (its event
      // published) and close; cut what is left; then the sinks flush below.
      const listenersClosed = Promise.all(proxies.map((p) => p.close()));
      shutdown.abort();
      const deadline = Date.now() + DRAIN_MS;
      while (flowsOpen > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      if (flowsOpen > 0) log.warn("stopping: flows still open after the drain, cut", { flows: flowsOpen });
      for (const c of flowConns) c.destroy();
      await listenersClosed;
      await control?.close();
      await publicServer?.close();
      await tunnel?.close();
      await dnsVip?.close();
      clearInterval(pruneTimer);
      clearInterval(gateSweep);
      pool.closeAll();
      connIndex.close();
      approvals.close();
      await bus.close();
      removeLogRedactor();
      rateLimits.close();
      spend.close();
      db.close();
    },
  };
}
