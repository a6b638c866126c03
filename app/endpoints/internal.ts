// The gateway's own discovery service, answered inside the tunnel at
// https://clawpatrol.internal/ (NetStack resolves the name to the gateway's
// tunnel address; the dispatcher sends TLS for it here, terminated with a
// leaf the gateway CA signs):
//
//   GET /          a short text index
//   GET /ca.crt    the gateway CA certificate (PEM)
//   GET /manifest  the device's profile: the endpoints it sees and the
//                  credential placeholders it was given, as JSON (Accept:
//                  application/json, or ?format=json) or as a text table
//
// Everything served comes from the policy (names, hosts, ports, placeholder
// strings and where they go); no secret is ever read here. As a last line of
// defence the manifest bodies still pass through the gateway's redactor.
//
// Two layers: `respond` is pure (request head in, response bytes out), and
// `serveInternal` runs it over a connection with the sans-IO HTTP/1.1 parser.
import type { Duplex } from "node:stream";
import type { Credential, Endpoint, Policy } from "../policy/types.ts";
import type { DeviceIdentity } from "../dispatch/flow.ts";
import { pluginFor } from "../credentials/plugin.ts";
import { getHeader, type HeaderList } from "./http1/headers.ts";
import { Http1Parser, type RequestHead } from "./http1/parser.ts";
import { serializeResponseHead, simpleResponse } from "./http1/serialize.ts";
import { StreamPuller } from "./https/puller.ts";
import { INTERNAL_HOST, DEFAULT_HTTPS_PORT } from "../dispatch/dispatch.ts";
import type { GateService } from "../gate/service.ts";
import { gateRoute, MAX_GATE_BODY } from "../gate/routes.ts";

export interface InternalDeps {
  policy(): Policy;
  /** The gateway CA certificate; without it /ca.crt is 404. */
  caCertPem?: string;
  /** Masks configured secrets (the gateway's redactor). */
  redact?: (text: string) => string;
  /** The command gate's verdict API (/gate/...); without it those paths are 404. */
  gate?: GateService;
  /** The gateway's SSH CA public key (`ssh-ed25519 AAAA...`), asked for only when the device sees an ssh endpoint. */
  sshCa?: () => string;
}

/** A connection that sends nothing for this long is closed. */
export const INTERNAL_IDLE_MS = 30_000;

export interface ManifestEndpoint {
  name: string;
  ref: string;
  type: string;
  hosts: string[];
  ports: number[];
}

export interface ManifestCredential {
  ref: string;
  type: string;
  /** What the device puts in the slot; the gateway swaps in the real secret. */
  placeholder: string;
  /** Where the placeholder goes in a request. */
  slot: string;
  /** Endpoints that inject this credential by default. */
  endpoints: string[];
}

export interface Manifest {
  gateway: string;
  device: string;
  profile: string;
  endpoints: ManifestEndpoint[];
  credentials: ManifestCredential[];
  /** Commands the profile gates (`clawpatrol run` adds them to --gate). */
  gate: string[];
  /** The gateway's SSH CA (`ssh-ed25519 AAAA...`) when the device sees an ssh endpoint: it signs their host keys (`clawpatrol run` trusts it for their hosts). */
  sshCa?: string;
}

/** Where a credential type's placeholder goes, in words (settings are names, never secrets). */
export function slotDescription(cred: Credential, placeholder: string): string {
  const p = placeholder;
  switch (cred.type) {
    case "bearer_token":
    case "openai_api_key":
      return `Authorization: Bearer ${p}`;
    case "github_token":
      return `Authorization: Bearer ${p} (or: token ${p})`;
    case "anthropic_manual_key":
      return `x-api-key: ${p}`;
    case "gemini_api_key":
      return `x-goog-api-key: ${p} (or the ?key= query parameter)`;
    case "header_token":
      return `${cred.settings.header ?? "(header)"}: ${cred.settings.prefix ?? ""}${p}`;
    case "cookie_token":
      return `Cookie: ${cred.settings.cookie ?? "(cookie)"}=${p}`;
    case "basic_auth":
      return cred.settings.username === undefined
        ? `Authorization: Basic base64(${p}) (user:password)`
        : `Authorization: Basic base64(${cred.settings.username}:${p}) (password)`;
    case "passthrough":
      return "none: the agent's own credential is passed through";
    case "postgres_password":
      return `the PostgreSQL password (any user name): ${p}`;
    case "clickhouse_password":
      return `the ClickHouse password (any user name): ${p}`;
    case "k8s_client_cert":
      return `none: the gateway presents the client certificate (kubectl's token may be ${p})`;
    case "ssh_key":
    case "ssh_password":
      return "none: the gateway's SSH server accepts any key or password; the real one stays on the gateway";
  }
}

/** The device's view of the policy: its profile's endpoints and credential placeholders. */
export function buildManifest(policy: Policy, device: DeviceIdentity, sshCa?: () => string): Manifest {
  const profile = policy.profiles.get(device.profile);
  const visible = profile?.endpoints === undefined ? undefined : new Set(profile.endpoints);
  const endpoints: Endpoint[] = profile ? [...policy.endpoints.values()].filter((e) => visible === undefined || visible.has(e.ref)) : [];
  const credentials: ManifestCredential[] = [];
  for (const ref of profile?.credentials ?? []) {
    const cred = policy.credentials.get(ref);
    if (!cred) continue;
    const placeholder = pluginFor(cred.type).placeholder(cred);
    credentials.push({
      ref: cred.ref,
      type: cred.type,
      placeholder,
      slot: slotDescription(cred, placeholder),
      endpoints: endpoints.filter((e) => e.credential === cred.ref).map((e) => e.ref),
    });
  }
  return {
    gateway: INTERNAL_HOST,
    device: device.name,
    profile: device.profile,
    endpoints: endpoints.map((e) => ({ name: e.name, ref: e.ref, type: e.type, hosts: [...e.hosts], ports: e.ports ?? [DEFAULT_HTTPS_PORT] })),
    credentials,
    gate: [...(profile?.gate ?? [])],
    ...(sshCa && endpoints.some((e) => e.type === "ssh") ? { sshCa: sshCa() } : {}),
  };
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

/** The manifest as a readable text table. */
export function manifestText(m: Manifest): string {
  const parts = [
    `clawpatrol: what this device sees through the gateway`,
    ``,
    `device:   ${m.device}`,
    `profile:  ${m.profile}`,
    ``,
    `ENDPOINTS (HTTPS to these is inspected by the gateway)`,
    m.endpoints.length === 0
      ? "  (none)"
      : table(["NAME", "HOSTS", "PORTS"], m.endpoints.map((e) => [e.ref, e.hosts.join(", "), e.ports.join(", ")])),
    ``,
    `CREDENTIALS (send the placeholder; the gateway injects the real secret)`,
    m.credentials.length === 0
      ? "  (none)"
      : table(["REF", "TYPE", "PLACEHOLDER", "SLOT"], m.credentials.map((c) => [c.ref, c.type, c.placeholder || "-", c.slot])),
    ``,
    `JSON: https://${m.gateway}/manifest?format=json`,
  ];
  return parts.join("\n") + "\n";
}

function indexText(device: DeviceIdentity): string {
  return [
    `clawpatrol gateway (device ${device.name}, profile ${device.profile})`,
    ``,
    `  /ca.crt                 the gateway CA certificate (PEM)`,
    `  /manifest               your profile's endpoints and credential placeholders (text)`,
    `  /manifest?format=json   the same as JSON (or send Accept: application/json)`,
    ``,
  ].join("\n");
}

function wantsJson(query: URLSearchParams, headers: HeaderList): boolean {
  const format = query.get("format");
  if (format !== null) return format.toLowerCase() === "json";
  const accept = getHeader(headers, "accept") ?? "";
  return /\bapplication\/json\b/i.test(accept);
}

export interface InternalResponse {
  status: number;
  headers: HeaderList;
  body: string;
}

/** The answer to one request (pure). */
export function route(method: string, target: string, headers: HeaderList, device: DeviceIdentity, deps: InternalDeps): InternalResponse {
  const common: HeaderList = [["Cache-Control", "no-store"]];
  const text = (status: number, body: string): InternalResponse => ({
    status,
    headers: [["Content-Type", "text/plain; charset=utf-8"], ...common],
    body,
  });
  if (method !== "GET" && method !== "HEAD") {
    const r = text(405, "method not allowed\n");
    r.headers.push(["Allow", "GET, HEAD"]);
    return r;
  }
  let url: URL;
  try {
    url = new URL(target.startsWith("/") ? target : "/", `https://${INTERNAL_HOST}`);
  } catch {
    return text(400, "bad request target\n");
  }
  const redact = deps.redact ?? ((s: string) => s);
  switch (url.pathname) {
    case "/":
      return text(200, indexText(device));
    case "/ca.crt":
      if (!deps.caCertPem) return text(404, "no CA certificate configured\n");
      return { status: 200, headers: [["Content-Type", "application/x-pem-file"], ...common], body: deps.caCertPem };
    case "/manifest":
    case "/manifest.json": {
      const m = buildManifest(deps.policy(), device, deps.sshCa);
      if (url.pathname === "/manifest.json" || wantsJson(url.searchParams, headers)) {
        return { status: 200, headers: [["Content-Type", "application/json"], ...common], body: redact(JSON.stringify(m, null, 2) + "\n") };
      }
      return text(200, redact(manifestText(m)));
    }
    default:
      return text(404, "not found (see /)\n");
  }
}

/** The complete response bytes for one request head. */
export function respond(head: Pick<RequestHead, "method" | "target" | "headers">, device: DeviceIdentity, deps: InternalDeps, close: boolean): Uint8Array {
  const r = route(head.method, head.target, head.headers, device, deps);
  if (close) r.headers.push(["Connection", "close"]);
  if (head.method === "HEAD") {
    r.headers.push(["Content-Length", String(Buffer.byteLength(r.body, "utf8"))]);
    return serializeResponseHead({ status: r.status, headers: r.headers });
  }
  return simpleResponse(r.status, r.headers, r.body);
}

function write(conn: Duplex, bytes: Uint8Array): Promise<void> {
  return new Promise((resolve) => {
    if (conn.destroyed || conn.writableEnded) return resolve();
    if (conn.write(bytes)) resolve();
    else {
      const done = () => {
        conn.off("drain", done);
        conn.off("close", done);
        resolve();
      };
      conn.on("drain", done);
      conn.on("close", done);
    }
  });
}

/** Serve HTTP/1.1 requests on `conn` (the TLS-terminated agent side) until it closes. */
export async function serveInternal(conn: Duplex, device: DeviceIdentity, deps: InternalDeps, idleMs = INTERNAL_IDLE_MS): Promise<void> {
  const parser = new Http1Parser("request", { maxHeadBytes: 16 * 1024, maxHeaders: 100 });
  const puller = new StreamPuller(conn);
  const timer = setTimeout(() => conn.destroy(), idleMs);
  timer.unref?.();
  let head: RequestHead | undefined;
  let body: Uint8Array[] = [];
  let bodyBytes = 0;
  try {
    for (;;) {
      const chunk = await puller.next();
      if (!chunk) return;
      timer.refresh();
      for (const ev of parser.push(chunk)) {
        if (ev.type === "head") {
          head = ev.head;
          body = [];
          bodyBytes = 0;
        } else if (ev.type === "body") {
          bodyBytes += ev.data.length;
          if (bodyBytes > MAX_GATE_BODY) {
            await write(conn, simpleResponse(413, [["Content-Type", "text/plain; charset=utf-8"], ["Connection", "close"]], "request body too large\n"));
            conn.end();
            return;
          }
          body.push(ev.data.slice());
        } else if (ev.type === "end" && head && deps.gate && head.target.startsWith("/gate/")) {
          const close = !head.keepAlive || head.upgrade !== undefined;
          const url = new URL(head.target, `https://${INTERNAL_HOST}`);
          const r = await gateRoute(deps.gate, head.method, url, head.headers, Buffer.concat(body), device);
          timer.refresh();
          if (close) r.headers.push(["Connection", "close"]);
          await write(conn, simpleResponse(r.status, r.headers, r.body));
          head = undefined;
          if (close) {
            conn.end();
            return;
          }
        } else if (ev.type === "error") {
          await write(conn, simpleResponse(ev.code, [["Content-Type", "text/plain; charset=utf-8"], ["Connection", "close"]], ev.message + "\n"));
          conn.end();
          return;
        } else if (ev.type === "end" && head) {
          // Upgrades and CONNECT are not offered: answer and close.
          const close = !head.keepAlive || head.upgrade !== undefined || head.method === "CONNECT";
          await write(conn, respond(head, device, deps, close));
          head = undefined;
          if (close) {
            conn.end();
            return;
          }
        }
      }
    }
  } catch {
    /* a connection error ends the service; the caller closes the connection */
  } finally {
    clearTimeout(timer);
  }
}
