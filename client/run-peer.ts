// A WireGuard peer of its own for one `clawpatrol run`: a keypair made in
// memory (never written anywhere), registered with the gateway under the
// device's API token (POST /api/device/runs), so concurrent runs are
// distinct peers with distinct addresses instead of one key roaming between
// UDP ports. The run deregisters on exit (DELETE); a killed run's peer is
// expired by the gateway.
//
// Older gateways (no route: 404) and an unreachable API fall back to the
// device's own key and address, as before, with a note. A refused token
// (revoked device) is an error: nothing runs.
import { readFileSync } from "node:fs";
import path from "node:path";
import { generateKeyPair } from "../app/net/wireguard/keys.ts";
import { RunError } from "./run.ts";
import { API_TOKEN_FILE, gatewayFetch, type LoadedState } from "./state.ts";

const REGISTER_TIMEOUT_MS = 10_000;
const DEREGISTER_TIMEOUT_MS = 3_000;

export interface RunPeerLease {
  id: string;
  privateKey: string;
  publicKey: string;
  address: string;
  address6?: string;
  /** Deregisters; never throws (the gateway expires what it misses). */
  end(): Promise<void>;
}

export type RunIdentity = { kind: "run"; lease: RunPeerLease } | { kind: "device"; note: string };

interface RegisterAnswer {
  run?: { id?: unknown; address?: unknown; address6?: unknown };
  error?: { code?: string; message?: string };
}

function readToken(dir: string): string | undefined {
  try {
    const t = readFileSync(path.join(dir, API_TOKEN_FILE), "utf8").trim();
    return t || undefined;
  } catch {
    return undefined;
  }
}

const SHARED = "concurrent runs of this device then share one peer and slow each other down";

/** Registers a run peer, or says why this run uses the device's key. */
export async function registerRun(state: LoadedState, f: typeof fetch = gatewayFetch(state)): Promise<RunIdentity> {
  const token = readToken(state.dir);
  if (!token) return { kind: "device", note: `no API token in ${state.dir}; this run uses the device's key (${SHARED}); run clawpatrol join again to get one` };
  const base = state.gateway_url.replace(/\/+$/, "");
  const keys = generateKeyPair();
  let res: Response;
  try {
    res = await f(`${base}/api/device/runs`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ public_key: keys.publicKey }),
      signal: AbortSignal.timeout(REGISTER_TIMEOUT_MS),
    });
  } catch (e) {
    return { kind: "device", note: `cannot reach the gateway's API at ${base} to register this run (${(e as Error).message}); using the device's key (${SHARED})` };
  }
  if (res.status === 404) {
    await res.body?.cancel();
    return { kind: "device", note: `the gateway at ${base} is older and has no per-run peers; using the device's key (${SHARED})` };
  }
  let body: RegisterAnswer = {};
  try {
    body = (await res.json()) as RegisterAnswer;
  } catch {
    /* not JSON: handled below */
  }
  if (res.status === 401 || res.status === 403) {
    throw new RunError(
      `the gateway does not answer to this device any more: it refused the device's API token (${body.error?.code ?? res.status}).\n` +
        `  The device (${state.device.name}) has probably been revoked; run clawpatrol join again.`,
    );
  }
  const run = body.run;
  if (res.status !== 201 || typeof run?.id !== "string" || typeof run.address !== "string") {
    const why = body.error?.message ? `${body.error.message} (${body.error.code ?? res.status})` : `HTTP ${res.status}`;
    throw new RunError(`the gateway refused to register this run: ${why}`);
  }
  const id = run.id;
  const lease: RunPeerLease = {
    id,
    privateKey: keys.privateKey,
    publicKey: keys.publicKey,
    address: run.address,
    async end() {
      try {
        const r = await f(`${base}/api/device/runs/${encodeURIComponent(id)}`, {
          method: "DELETE",
          headers: { authorization: `Bearer ${token}` },
          signal: AbortSignal.timeout(DEREGISTER_TIMEOUT_MS),
        });
        await r.body?.cancel();
      } catch {
        /* the gateway expires it */
      }
    },
  };
  if (typeof run.address6 === "string") lease.address6 = run.address6;
  return { kind: "run", lease };
}
