// The device's state on disk, in $XDG_CONFIG_HOME/clawpatrol (else
// ~/.config/clawpatrol), directory 0700:
//
//   device.json   gateway URL, device name/address/profile, the gateway's
//                 public key, endpoint, DNS and keepalive; ca_sha256 when
//                 the join pinned the CA, and then the gateway's API is
//                 trusted through ca.crt alone (0600)
//   private.key   the device's WireGuard private key (0600)
//   api-token     the device's API token (0600)
//   ca.crt        the gateway's CA certificate (0644)
//
// A join writes everything into a sibling temp directory and swaps it in
// only once complete, so a failed or interrupted re-join leaves the old
// state (and its CA) as it was.
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

export const DEVICE_FILE = "device.json";
export const PRIVATE_KEY_FILE = "private.key";
export const API_TOKEN_FILE = "api-token";
export const CA_FILE = "ca.crt";

export interface DeviceState {
  version: 1;
  gateway_url: string;
  joined_at: string;
  /** Set by `join --ca-sha256`: the pinned CA (ca.crt); API requests trust only it. */
  ca_sha256?: string;
  device: { name: string; profile: string; address: string; address6?: string; addresses: string[] };
  gateway: {
    public_key: string;
    endpoint: string;
    allowed_ips: string[];
    dns: string;
    address: string;
    persistent_keepalive: number;
  };
}

export interface LoadedState extends DeviceState {
  dir: string;
  privateKey: string;
  caCert: string;
}

/** fetch that trusts only `caPem` for https (the CA pinned at join). */
export function pinnedFetch(caPem: string, f: typeof fetch = fetch): typeof fetch {
  const wrapped = (input: string | URL | Request, init?: RequestInit) => f(input, { ...init, tls: { ca: caPem } } as RequestInit);
  return Object.assign(wrapped, { preconnect: fetch.preconnect }) as typeof fetch;
}

/** fetch for the gateway's API as this device joined it: through the pinned CA, else the usual roots. */
export function gatewayFetch(state: Pick<LoadedState, "ca_sha256" | "caCert">, f: typeof fetch = fetch): typeof fetch {
  return state.ca_sha256 ? pinnedFetch(state.caCert, f) : f;
}

export function stateDir(env: Record<string, string | undefined> = process.env): string {
  const xdg = env.XDG_CONFIG_HOME;
  if (xdg && path.isAbsolute(xdg)) return path.join(xdg, "clawpatrol");
  const home = env.HOME || os.homedir();
  return path.join(home, ".config", "clawpatrol");
}

export class NotJoined extends Error {
  constructor(readonly dir: string) {
    super(`this device has not joined a gateway (no ${path.join(dir, DEVICE_FILE)}); run: clawpatrol join https://GATEWAY`);
  }
}

export function loadState(dir: string): LoadedState {
  const file = path.join(dir, DEVICE_FILE);
  if (!existsSync(file)) throw new NotJoined(dir);
  let s: DeviceState;
  try {
    s = JSON.parse(readFileSync(file, "utf8")) as DeviceState;
  } catch (e) {
    throw new Error(`${file} is not valid JSON (${(e as Error).message}); run clawpatrol join again`);
  }
  if (s.version !== 1 || !s.device?.address || !s.gateway?.public_key || !s.gateway?.endpoint) {
    throw new Error(`${file} is incomplete; run clawpatrol join again`);
  }
  const read = (f: string) => {
    try {
      return readFileSync(path.join(dir, f), "utf8");
    } catch (e) {
      throw new Error(`cannot read ${path.join(dir, f)} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); run clawpatrol join again`);
    }
  };
  return { ...s, dir, privateKey: read(PRIVATE_KEY_FILE).trim(), caCert: read(CA_FILE) };
}

export interface NewState {
  state: DeviceState;
  privateKey: string;
  apiToken: string;
  caCert: string;
}

/** Writes the complete state next to `dir`, then swaps it in. */
export function saveState(dir: string, s: NewState): void {
  const parent = path.dirname(dir);
  mkdirSync(parent, { recursive: true, mode: 0o700 });
  const tmp = mkdtempSync(path.join(parent, `.${path.basename(dir)}.new-`));
  try {
    chmodSync(tmp, 0o700);
    writeFileSync(path.join(tmp, PRIVATE_KEY_FILE), s.privateKey + "\n", { mode: 0o600 });
    writeFileSync(path.join(tmp, API_TOKEN_FILE), s.apiToken + "\n", { mode: 0o600 });
    writeFileSync(path.join(tmp, CA_FILE), s.caCert.endsWith("\n") ? s.caCert : s.caCert + "\n", { mode: 0o644 });
    writeFileSync(path.join(tmp, DEVICE_FILE), JSON.stringify(s.state, null, 2) + "\n", { mode: 0o600 });
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  let old: string | undefined;
  if (existsSync(dir)) {
    old = `${tmp}.old`;
    renameSync(dir, old);
  }
  try {
    renameSync(tmp, dir);
  } catch (e) {
    if (old) renameSync(old, dir);
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  if (old) rmSync(old, { recursive: true, force: true });
}

export function removeState(dir: string): boolean {
  if (!existsSync(dir)) return false;
  rmSync(dir, { recursive: true, force: true });
  return true;
}
