// Let's Encrypt's test CA, the real one: `pebble` with validation on
// (PEBBLE_VA_ALWAYS_VALID unset, so it really fetches our HTTP-01 answer),
// no artificial sleeps, and `pebble-challtestsrv` as its DNS server, which
// answers every A query with 127.0.0.1 (per-host answers can be changed
// through its management API). Every port is a free loopback port, so runs
// in parallel never collide; stop() kills both processes.
import { existsSync, writeFileSync } from "node:fs";
import path from "node:path";
import { makeTestPki } from "./pki.ts";
import { freePort } from "./role-process.ts";

export interface Pebble {
  /** The ACME directory URL. */
  directory: string;
  /** The CA that signed pebble's own HTTPS listener (for `ca_file`). */
  listenerCaPath: string;
  listenerCaPem: string;
  /** Where pebble connects for HTTP-01: the port our :80 listener must take. */
  httpPort: number;
  /** The root pebble issues under (fresh every start). */
  root(): Promise<string>;
  /** Points a name's A record elsewhere (challtestsrv). */
  setA(host: string, address: string): Promise<void>;
  stop(): void;
}

export const PEBBLE = "/usr/bin/pebble";
export const CHALLTESTSRV = "/usr/bin/pebble-challtestsrv";

export function pebbleInstalled(): boolean {
  return existsSync(PEBBLE) && existsSync(CHALLTESTSRV);
}

export async function startPebble(dir: string, opts: { validitySeconds: number }): Promise<Pebble> {
  const pki = makeTestPki(path.join(dir, "pebble-pki"), ["localhost", "127.0.0.1"]);
  const [acmePort, mgmtPort, httpPort, tlsPort, dnsPort, dnsMgmtPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort(), freePort()]);
  const config = path.join(dir, "pebble.json");
  writeFileSync(config, JSON.stringify({
    pebble: {
      listenAddress: `127.0.0.1:${acmePort}`,
      managementListenAddress: `127.0.0.1:${mgmtPort}`,
      certificate: path.join(pki.dir, "leaf.crt"),
      privateKey: path.join(pki.dir, "leaf.key"),
      httpPort,
      tlsPort,
      ocspResponderURL: "",
      externalAccountBindingRequired: false,
      certificateValidityPeriod: opts.validitySeconds,
    },
  }));
  const env: Record<string, string> = { PATH: process.env.PATH ?? "/usr/bin:/bin", PEBBLE_VA_NOSLEEP: "1" };
  const dns = Bun.spawn([CHALLTESTSRV, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dns01", `127.0.0.1:${dnsPort}`,
    "-http01", "", "-https01", "", "-tlsalpn01", "", "-management", `127.0.0.1:${dnsMgmtPort}`], { env, stdout: "ignore", stderr: "pipe" });
  const ca = Bun.spawn([PEBBLE, "-config", config, "-dnsserver", `127.0.0.1:${dnsPort}`], { env, stdout: "pipe", stderr: "pipe" });
  const stop = () => {
    ca.kill("SIGKILL");
    dns.kill("SIGKILL");
  };
  const tls = { ca: pki.caCertPem };
  const get = (url: string) => fetch(url, { tls, signal: AbortSignal.timeout(5000) } as RequestInit);
  try {
    await until(async () => (await get(`https://127.0.0.1:${acmePort}/dir`)).ok && (await fetch(`http://127.0.0.1:${dnsMgmtPort}/`).catch(() => undefined)) !== undefined, "pebble and challtestsrv up", [ca, dns]);
  } catch (e) {
    stop();
    throw e;
  }
  return {
    directory: `https://127.0.0.1:${acmePort}/dir`,
    listenerCaPath: pki.caCertPath,
    listenerCaPem: pki.caCertPem,
    httpPort,
    root: async () => await (await get(`https://127.0.0.1:${mgmtPort}/roots/0`)).text(),
    async setA(host, address) {
      const r = await fetch(`http://127.0.0.1:${dnsMgmtPort}/add-a`, { method: "POST", body: JSON.stringify({ host: host.endsWith(".") ? host : `${host}.`, addresses: [address] }) });
      if (!r.ok) throw new Error(`challtestsrv add-a: HTTP ${r.status}`);
    },
    stop,
  };
}

async function until(ok: () => Promise<boolean>, what: string, procs: { exitCode: number | null }[]): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (procs.some((p) => p.exitCode !== null)) throw new Error(`${what}: a process exited`);
    if (await ok().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what}: not within 30 s`);
    await Bun.sleep(100);
  }
}
