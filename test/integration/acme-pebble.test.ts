// dashboard_tls { acme {} } against the real pebble (Let's Encrypt's test
// CA) with validation on: pebble resolves the dashboard's name through
// challtestsrv to 127.0.0.1 and fetches the HTTP-01 answer from our :80
// listener (a free port here, pebble's httpPort).
//   - the dashboard role starts on the CA-minted certificate, orders one,
//     and serves pebble's chain for public_url's host without a restart
//   - :80 answers challenges only while pending, 301s the rest to public_url
//   - moving the clock past two thirds of the lifetime renews: a new
//     certificate (new serial) is served; keys on disk are 0600
//   - an unreachable directory, and a challenge pebble cannot reach, leave
//     the dashboard serving the minted certificate and log the problem's
//     type and detail
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import nodeTls from "node:tls";
import { startDashboard, type RunningDashboard } from "../../app/control/dashboard-role.ts";
import { setLogWriter } from "../../app/log.ts";
import { ACME_CERT_FILE, ACME_KEY_FILE, ACCOUNT_KEY_FILE, acmeDir } from "../../app/acme/store.ts";
import { x509 } from "../../app/tls/pki.ts";
import { tempDir } from "./support/gateway.ts";
import { pebbleInstalled, startPebble, type Pebble } from "./support/pebble.ts";
import { freePort } from "./support/role-process.ts";

if (!pebbleInstalled() && process.env.CI === "true") throw new Error("pebble is not installed (test/deps.sh installs it)");
const maybe = pebbleInstalled() ? describe : describe.skip;

const HOST = "dash.acme.test";
const logs: string[] = [];

/** The certificate the dashboard presents for `servername`, and whether `ca` verifies it. */
async function served(port: number, servername: string, ca?: string): Promise<{ cert: x509.X509Certificate; authorized: boolean; error?: string }> {
  return await new Promise((resolve, reject) => {
    const s = nodeTls.connect({ host: "127.0.0.1", port, servername, ...(ca ? { ca } : {}), rejectUnauthorized: false }, () => {
      const peer = s.getPeerCertificate();
      const cert = new x509.X509Certificate(peer.raw);
      const err = s.authorizationError;
      resolve({ cert, authorized: s.authorized, ...(err ? { error: String(err) } : {}) });
      s.end();
    });
    s.setTimeout(10_000, () => s.destroy(new Error("TLS handshake timed out")));
    s.on("error", reject);
  });
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms = 90_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms / 1000} s; log:\n${logs.slice(-20).join("\n")}`);
    await Bun.sleep(100);
  }
}

function writeConfig(dir: string, acme: string, publicUrl: string): string {
  const file = path.join(dir, "gateway.hcl");
  writeFileSync(file, `schema_version = 1
gateway {
  state_dir = "state"
  dashboard_listen = "127.0.0.1:0"
  public_url = "${publicUrl}"
  dashboard_tls {
    acme {
${acme}
    }
  }
}
`);
  return file;
}

let pebble: Pebble;
let pebbleDir = "";
beforeAll(async () => {
  if (!pebbleInstalled()) return;
  setLogWriter((line) => void logs.push(line));
  pebbleDir = tempDir("pebble");
  pebble = await startPebble(pebbleDir, { validitySeconds: 3600 });
});
afterAll(() => {
  setLogWriter(undefined);
  pebble?.stop();
  if (pebbleDir) rmSync(pebbleDir, { recursive: true, force: true });
});

maybe("issuance and renewal over HTTP-01", () => {
  let dir = "";
  let d: RunningDashboard;
  let offset = 0;
  let port = 0;
  let root = "";

  beforeAll(async () => {
    dir = tempDir("acme");
    const config = writeConfig(dir, `      directory   = "${pebble.directory}"
      email       = "ops@example.com"
      http_listen = "127.0.0.1:${pebble.httpPort}"
      ca_file     = "${pebble.listenerCaPath}"`, `https://${HOST}`);
    d = await startDashboard({ configPath: config, watch: false, now: () => Date.now() + offset });
    port = d.server.address.port;
    root = await pebble.root();
  });
  afterAll(async () => {
    await d?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("the dashboard serves pebble's certificate for public_url's host, verified up to pebble's root", async () => {
    const got = await waitFor("pebble's certificate served", async () => {
      const s = await served(port, HOST, root);
      return s.cert.issuer.includes("Pebble Intermediate CA") ? s : undefined;
    });
    expect(got.authorized, got.error).toBe(true);
    const san = got.cert.getExtension(x509.SubjectAlternativeNameExtension)!;
    expect(san.names.items.map((n) => n.value)).toEqual([HOST]);
    expect(got.cert.notAfter.getTime() - got.cert.notBefore.getTime()).toBeLessThanOrEqual(3600_000 + 1000);
    expect(logs.some((l) => l.includes("ACME certificate issued for the dashboard") && l.includes(HOST))).toBe(true);
    // Secrets on disk as the CA key is: 0600.
    for (const f of [ACCOUNT_KEY_FILE, ACME_KEY_FILE]) expect(statSync(path.join(acmeDir(path.join(dir, "state")), f)).mode & 0o777).toBe(0o600);
    expect(readFileSync(path.join(acmeDir(path.join(dir, "state")), ACME_CERT_FILE), "utf8")).toContain("-----BEGIN CERTIFICATE-----");
  });

  test(":80 redirects to public_url and answers no challenge that is not pending", async () => {
    const base = `http://127.0.0.1:${pebble.httpPort}`;
    const r = await fetch(`${base}/login?next=%2Fdevices`, { redirect: "manual" });
    expect(r.status).toBe(301);
    expect(r.headers.get("location")).toBe(`https://${HOST}/login?next=%2Fdevices`);
    const c = await fetch(`${base}/.well-known/acme-challenge/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA`, { redirect: "manual" });
    expect(c.status).toBe(404);
  });

  test("past two thirds of the lifetime (clock moved 45 of 60 minutes) a new certificate is ordered and served", async () => {
    const before = await served(port, HOST);
    expect(before.cert.issuer).toContain("Pebble Intermediate CA");
    offset = 45 * 60 * 1000;
    expect(await d.acme!.check()).toBe("issued");
    const after = await waitFor("the renewed certificate served", async () => {
      const s = await served(port, HOST, root);
      return s.cert.serialNumber !== before.cert.serialNumber ? s : undefined;
    });
    expect(after.authorized, after.error).toBe(true);
    expect(after.cert.notAfter.getTime()).toBeGreaterThan(before.cert.notAfter.getTime());
    // And the next check finds it current: no third order.
    expect(await d.acme!.check()).toBe("current");
  });
});

maybe("ACME failures leave the dashboard serving", () => {
  const dashboards: { d: RunningDashboard; dir: string }[] = [];
  afterAll(async () => {
    for (const { d, dir } of dashboards) {
      await d.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  async function start(host: string, directory: string, httpPort: number): Promise<RunningDashboard> {
    const dir = tempDir("acme-fail");
    const config = writeConfig(dir, `      directory   = "${directory}"
      email       = "ops@example.com"
      http_listen = "127.0.0.1:${httpPort}"
      ca_file     = "${pebble.listenerCaPath}"`, `https://${host}`);
    const d = await startDashboard({ configPath: config, watch: false });
    dashboards.push({ d, dir });
    return d;
  }

  async function servesMinted(d: RunningDashboard, host: string) {
    const s = await served(d.server.address.port, host);
    expect(s.cert.issuer).not.toContain("Pebble");
    const res = await fetch(`https://127.0.0.1:${d.server.address.port}/health`, { tls: { rejectUnauthorized: false } } as RequestInit);
    expect(await res.text()).toBe('{"ok":true}');
  }

  test("an unreachable directory: the problem is logged, the CA-minted certificate keeps serving", async () => {
    const dead = await freePort();
    const d = await start("down.acme.test", `https://127.0.0.1:${dead}/dir`, await freePort());
    await waitFor("the failure logged", async () => (logs.some((l) => l.includes("ACME: no certificate issued") && l.includes("clawpatrol:acme:unreachable") && l.includes(`127.0.0.1:${dead}`)) ? true : undefined));
    await servesMinted(d, "down.acme.test");
  });

  test("a challenge pebble cannot reach: its connection problem is logged, the dashboard keeps serving", async () => {
    // The name resolves to 127.0.0.2, where nothing listens on pebble's httpPort: validation fails for real.
    await pebble.setA("unreachable.acme.test", "127.0.0.2");
    const d = await start("unreachable.acme.test", pebble.directory, await freePort());
    const line = await waitFor("the failure logged", async () => logs.find((l) => l.includes("ACME: no certificate issued") && l.includes("urn:ietf:params:acme:error:")));
    expect(line).toMatch(/type=urn:ietf:params:acme:error:(connection|unauthorized)/);
    expect(line).toContain("detail=");
    expect(line).toContain("retry_in_s=");
    await servesMinted(d, "unreachable.acme.test");
  });
});
