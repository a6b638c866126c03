// `clawpatrol join URL`: the device side of the gateway's device-code flow.
//
//   0. with --ca-sha256: fetch /ca.crt unverified, refuse unless its SHA-256
//      (of the DER) is the one the operator gave; every later request trusts
//      only that CA, and the CA the approval carries must be the same one;
//   1. make the device's WireGuard keypair (the gateway never sees the private key);
//   2. POST /api/onboard/start {name, public_key, profile?} -> code, approval URL;
//   3. show the code, the URL and the operator's command;
//   4. POST /api/onboard/poll (long-poll) until approved, denied or expired;
//   5. on approval, write the state (state.ts) in one swap, and the gateway
//      SSH CA's `@cert-authority` line for the ssh endpoint hosts the
//      profile sees into ~/.ssh/known_hosts (ssh-trust.ts; `run` keeps it
//      current).
import os from "node:os";
import { generateKeyPair } from "../app/net/wireguard/shell.ts";
import { certificateDer, certificateSha256Hex, formatFingerprint, parseFingerprint } from "../app/tls/fingerprint.ts";
import { pinnedFetch, saveState, type DeviceState } from "./state.ts";
import { sshTrustOf, trustSshCa, userKnownHosts } from "./ssh-trust.ts";

export class JoinError extends Error {}

export interface JoinOptions {
  url: string;
  name?: string;
  profile?: string;
  /** The gateway CA's SHA-256 fingerprint (`AB:CD:…` or hex) to pin at first contact. */
  caSha256?: string;
  dir: string;
  /** Whose ~/.ssh/known_hosts gets the gateway's SSH CA (default: this user's home). */
  home?: string;
  out?: (line: string) => void;
  fetch?: typeof fetch;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
}

interface StartResponse {
  code: string;
  device_code: string;
  approval_url: string;
  expires_in: number;
  poll_interval: number;
  approve_command?: string;
}

type PollResponse =
  | { status: "pending" | "denied" | "expired" | "claimed" }
  | ({ status: "approved" } & Pick<DeviceState, "device" | "gateway"> & { ca_cert: string; api_token: string; ssh_ca?: { public_key?: unknown; hosts?: unknown } });

/** "gw.example.com" -> "https://gw.example.com"; trailing slashes dropped. */
export function normalizeGatewayUrl(input: string): string {
  let s = input.trim();
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(s)) s = `https://${s}`;
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw new JoinError(`"${input}" is not a gateway URL (expected something like https://gateway.example.com)`);
  }
  if (u.protocol !== "https:" && u.protocol !== "http:") throw new JoinError(`the gateway URL must be http(s): ${input}`);
  return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, "")}`;
}

/** A device name the gateway accepts (1-64 of a-z A-Z 0-9 _ . -) from the host name. */
export function defaultDeviceName(hostname = os.hostname()): string {
  const n = hostname.split(".")[0]!.replace(/[^A-Za-z0-9_.-]/g, "-").replace(/^[^A-Za-z0-9]+/, "").slice(0, 64);
  return n || "device";
}

async function post<T>(f: typeof fetch, base: string, route: string, body: unknown, signal?: AbortSignal): Promise<{ status: number; json: T; retryAfter: string | null }> {
  let res: Response;
  try {
    res = await f(`${base}${route}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal,
    });
  } catch (e) {
    const msg = (e as Error).message;
    const hint = /certificate|self.signed|verify/i.test(msg)
      ? "the gateway's certificate is not trusted here; if it is signed by the gateway's own CA, join with --ca-sha256 FINGERPRINT (shown on the dashboard's Devices page and by clawpatrol-gateway ca show)"
      : "check the URL, that the gateway is running, and that this machine can reach it";
    throw new JoinError(`cannot reach the gateway at ${base}: ${msg}\n  ${hint}`);
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new JoinError(`${base}${route} answered ${res.status} with something that is not JSON: is ${base} a clawpatrol gateway?`);
  }
  return { status: res.status, json: json as T, retryAfter: res.headers.get("retry-after") };
}

function apiMessage(json: unknown, status: number): string {
  const e = (json as { error?: { code?: string; message?: string } })?.error;
  return e?.message ? `${e.message}${e.code ? ` (${e.code})` : ""}` : `HTTP ${status}`;
}

/** A PEM holding exactly one certificate, re-encoded from its DER (nothing else of what was served is kept). */
function singleCertificatePem(text: string): string | null {
  if ((text.match(/-----BEGIN CERTIFICATE-----/g) ?? []).length !== 1) return null;
  try {
    const b64 = certificateDer(text).toString("base64");
    return `-----BEGIN CERTIFICATE-----\n${b64.match(/.{1,64}/g)!.join("\n")}\n-----END CERTIFICATE-----\n`;
  } catch {
    return null;
  }
}

/** Step 0: the gateway's CA, fetched without verification and accepted only with the pinned fingerprint. */
export async function fetchPinnedCa(f: typeof fetch, base: string, pin: string): Promise<string> {
  const want = parseFingerprint(pin);
  if (want === null) throw new JoinError(`--ca-sha256 must be a SHA-256 fingerprint (64 hex digits, colons allowed), not "${pin}"`);
  if (!base.startsWith("https:")) throw new JoinError(`--ca-sha256 pins the gateway's TLS certificate: use an https:// URL, not ${base}`);
  let res: Response;
  try {
    // Unverified on purpose: nothing from this answer is used unless it hashes to the pin.
    res = await f(`${base}/ca.crt`, { tls: { rejectUnauthorized: false } } as RequestInit);
  } catch (e) {
    throw new JoinError(`cannot reach the gateway at ${base}: ${(e as Error).message}\n  check the URL, that the gateway is running, and that this machine can reach it`);
  }
  const text = res.status === 200 ? await res.text() : (await res.body?.cancel(), "");
  const pem = singleCertificatePem(text);
  if (pem === null) throw new JoinError(`${base}/ca.crt did not answer with one CA certificate (HTTP ${res.status}): is ${base} a clawpatrol gateway?`);
  const got = certificateSha256Hex(pem);
  if (got !== want) {
    throw new JoinError(
      `the gateway at ${base} presented a CA with SHA-256 ${formatFingerprint(got)}, not the ${formatFingerprint(want)} given: not joining.\n` +
        `  Check the fingerprint with the operator (clawpatrol-gateway ca show); a different one means another server answered.`,
    );
  }
  return pem;
}

/** The approval's SSH CA into the user's known_hosts (a warning when it cannot be written; nothing when it is absent or malformed). */
function trustGatewaySsh(sshCa: { public_key?: unknown; hosts?: unknown } | undefined, home: string, out: (line: string) => void): void {
  if (!sshCa || typeof sshCa.public_key !== "string" || !Array.isArray(sshCa.hosts)) return;
  const hosts = sshCa.hosts.filter((h): h is string => typeof h === "string");
  const trust = sshTrustOf({ sshCa: sshCa.public_key, endpoints: [{ name: "", ref: "", type: "ssh", hosts, ports: [] }] });
  if (!trust || trust.hosts.length === 0) return;
  const file = userKnownHosts(home);
  try {
    trustSshCa(file, trust.ca, trust.hosts);
    out(`The gateway's SSH CA is trusted for ${trust.hosts.join(", ")} in ${file}.`);
  } catch (e) {
    out(`Warning: could not add the gateway's SSH CA to ${file} (${(e as Error).message}); ssh may ask about the host key.`);
  }
}

export async function join(o: JoinOptions): Promise<DeviceState> {
  const out = o.out ?? ((l: string) => process.stdout.write(l + "\n"));
  const base0 = normalizeGatewayUrl(o.url);
  const pinnedCa = o.caSha256 !== undefined ? await fetchPinnedCa(o.fetch ?? fetch, base0, o.caSha256) : undefined;
  const f = pinnedCa !== undefined ? pinnedFetch(pinnedCa, o.fetch ?? fetch) : (o.fetch ?? fetch);
  const sleep = o.sleep ?? Bun.sleep;
  const now = o.now ?? Date.now;
  const base = base0;
  const name = o.name ?? defaultDeviceName();
  if (pinnedCa !== undefined) out(`The gateway's CA matches the fingerprint given (${formatFingerprint(certificateSha256Hex(pinnedCa))}).`);
  const keys = generateKeyPair();

  const startBody: Record<string, string> = { name, public_key: keys.publicKey };
  if (o.profile) startBody.profile = o.profile;
  const st = await post<StartResponse>(f, base, "/api/onboard/start", startBody);
  if (st.status === 429) throw new JoinError(`the gateway is rate-limiting join requests; try again in ${st.retryAfter ?? "a few"} seconds`);
  if (st.status !== 200) throw new JoinError(`the gateway refused to start the join: ${apiMessage(st.json, st.status)}`);
  const started = st.json;
  const minutes = Math.max(1, Math.round(started.expires_in / 60));
  const approve = started.approve_command ?? `clawpatrol-gateway devices approve ${started.code} --profile PROFILE`;
  out(`Device "${name}" asks to join ${base}.`);
  out("");
  out(`  Code: ${started.code}   (expires in ${minutes} min)`);
  out("");
  out(`Ask the operator to approve it, either in the dashboard:`);
  out(`  ${started.approval_url}`);
  out(`or on the gateway:`);
  out(`  ${approve}`);
  out("");
  out("Waiting for approval...");

  const deadline = now() + started.expires_in * 1000 + 5000;
  const intervalMs = Math.max(1, started.poll_interval) * 1000;
  let failures = 0;
  for (;;) {
    if (now() > deadline) throw new JoinError(`the code ${started.code} expired before it was approved; run clawpatrol join again`);
    const asked = now();
    let r: Awaited<ReturnType<typeof post<PollResponse>>>;
    try {
      r = await post<PollResponse>(f, base, "/api/onboard/poll", { device_code: started.device_code });
    } catch (e) {
      // The gateway may restart while we wait: retry until the code expires.
      if (++failures >= 5 && now() > deadline) throw e;
      out(`  (gateway not answering: ${(e as Error).message.split("\n")[0]}; retrying)`);
      await sleep(Math.min(intervalMs * failures, 30_000));
      continue;
    }
    failures = 0;
    if (r.status === 429) {
      await sleep(Math.max(intervalMs, Number(r.retryAfter ?? 5) * 1000));
      continue;
    }
    if (r.status !== 200) throw new JoinError(`the gateway refused the poll: ${apiMessage(r.json, r.status)}`);
    const p = r.json;
    switch (p.status) {
      case "pending": {
        const waited = now() - asked;
        if (waited < intervalMs) await sleep(intervalMs - waited);
        continue;
      }
      case "denied":
        throw new JoinError(`the operator denied this device (code ${started.code})`);
      case "expired":
        throw new JoinError(`the code ${started.code} expired before it was approved; run clawpatrol join again`);
      case "claimed":
        throw new JoinError(`this approval was already collected by another process; run clawpatrol join again`);
      case "approved": {
        // The CA the device will trust for interception must be the one pinned.
        if (pinnedCa !== undefined && (singleCertificatePem(p.ca_cert ?? "") === null || certificateSha256Hex(p.ca_cert) !== certificateSha256Hex(pinnedCa))) {
          throw new JoinError(`the gateway approved this device but sent a CA other than the pinned one: not saved`);
        }
        const state: DeviceState = {
          version: 1,
          gateway_url: base,
          joined_at: new Date(now()).toISOString(),
          device: p.device,
          gateway: p.gateway,
          ...(pinnedCa !== undefined ? { ca_sha256: formatFingerprint(certificateSha256Hex(pinnedCa)) } : {}),
        };
        o.dir && saveState(o.dir, { state, privateKey: keys.privateKey, apiToken: p.api_token, caCert: pinnedCa ?? p.ca_cert });
        out(`Approved: "${p.device.name}" is in profile "${p.device.profile}" with address ${p.device.address}.`);
        trustGatewaySsh(p.ssh_ca, o.home ?? os.homedir(), out);
        out(`State saved in ${o.dir}. Run a command through the gateway with: clawpatrol run -- COMMAND`);
        return state;
      }
      default:
        throw new JoinError(`the gateway answered an unknown status ${JSON.stringify((p as { status: unknown }).status)}`);
    }
  }
}
