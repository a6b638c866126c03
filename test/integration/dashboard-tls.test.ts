// The dashboard and public API over TLS (`gateway { dashboard_tls }`):
//   - mint_from_ca: the listener serves a certificate the gateway's CA signed
//     for its names; an operator logs in over https and gets a Secure
//     __Host- cookie; plain http to the port gets nothing
//   - /ca.crt, /join.json and install.sh: the one-liner checks the CA's
//     fingerprint, fetches install.sh trusting only that CA, and the script
//     downloads the client through the same CA; a wrong fingerprint stops it
//   - cert_file/key_file: an edited pair is served after the watcher's check,
//     a half-written one is refused and the old pair kept
//   - `clawpatrol-gateway ca show` prints the same fingerprint (stderr)
//   - the dashboard role (its own process) serves the minted certificate too
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { startTestGateway, tempDir, type TestGateway } from "./support/gateway.ts";
import { makeTestPki } from "./support/pki.ts";
import { freePort, startRole } from "./support/role-process.ts";
import { caFingerprint } from "../../app/tls/fingerprint.ts";
import { DASHBOARD_CERT_FILE } from "../../app/tls/dashboard-cert.ts";
import { startPublicServer } from "../../app/control/public.ts";
import { watchDashboardTls } from "../../app/tls/dashboard-tls.ts";
import type { GatewaySettings } from "../../app/policy/types.ts";

const BUN = path.resolve("node_modules/.bin/bun");
const body = "#!/bin/sh\necho clawpatrol test build\n";

async function run(cmd: string[], opts: { cwd?: string; env?: Record<string, string> } = {}) {
  const p = Bun.spawn(cmd, { cwd: opts.cwd, env: opts.env ?? (process.env as Record<string, string>), stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, code };
}

/** curl -sS with the given CA; returns exit code, HTTP status and body. */
async function curl(url: string, args: string[] = []) {
  const r = await run(["curl", "-sS", "--max-time", "20", "-w", "\n%{http_code}", ...args, url]);
  const nl = r.stdout.lastIndexOf("\n");
  return { code: r.code, status: Number(r.stdout.slice(nl + 1)), body: r.stdout.slice(0, nl), stderr: r.stderr };
}

describe("mint_from_ca, in the gateway process (role all)", () => {
  let t: TestGateway;
  let base = "";
  let caPem = "";
  let downloads = "";

  beforeAll(async () => {
    downloads = tempDir("dist");
    for (const name of ["clawpatrol-linux-x64", "clawpatrol-linux-arm64"]) {
      writeFileSync(path.join(downloads, name), body);
      writeFileSync(path.join(downloads, `${name}.sha256`), `${createHash("sha256").update(body).digest("hex")}  ${name}\n`);
    }
    t = await startTestGateway("", {}, { gateway: "  dashboard_tls { mint_from_ca = true }", downloadsDir: downloads });
    base = `https://127.0.0.1:${t.gw.publicServer!.address.port}`;
    caPem = readFileSync(t.caPath, "utf8");
  });
  afterAll(async () => {
    await t?.stop();
  });

  test("the certificate verifies with the gateway CA for 127.0.0.1 and localhost; plain http gets no answer", async () => {
    expect(t.gw.publicServer!.scheme).toBe("https");
    const ip = await curl(`${base}/health`, ["--cacert", t.caPath]);
    expect(ip.code, ip.stderr).toBe(0);
    expect(ip.body).toBe('{"ok":true}');
    const named = await curl(`https://localhost:${t.gw.publicServer!.address.port}/health`, ["--cacert", t.caPath]);
    expect(named.code, named.stderr).toBe(0);
    // Without the CA, curl refuses (exit 60: peer certificate cannot be authenticated).
    expect((await curl(`${base}/health`)).code).toBe(60);
    const plain = await curl(`http://127.0.0.1:${t.gw.publicServer!.address.port}/health`);
    expect(plain.status).not.toBe(200);
    // The minted pair lives in the state dir.
    expect(existsSync(path.join(t.gw.policy().gateway.stateDir, DASHBOARD_CERT_FILE))).toBe(true);
  });

  test("an operator logs in over https: Secure __Host- session cookie, and it works", async () => {
    const add = await run([BUN, "app/main.ts", "operator", "add", "alice", "--role", "admin", "--config", t.configPath], {
      env: { ...(process.env as Record<string, string>), CLAWPATROL_STATE_DIR: "" },
    });
    expect(add.code, add.stderr).toBe(0);
    const password = add.stdout.trim().split("\n").at(-1)!.trim();
    const tls = { ca: caPem };
    const res = await fetch(`${base}/api/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "alice", password }),
      tls,
    } as RequestInit);
    expect(res.status).toBe(200);
    const setCookie = res.headers.get("set-cookie") ?? "";
    expect(setCookie).toStartWith("__Host-clawpatrol_session=");
    expect(setCookie).toContain("Secure");
    const me = await fetch(`${base}/api/auth/me`, { headers: { cookie: setCookie.split(";")[0]! }, tls } as RequestInit);
    expect(me.status).toBe(200);
    expect(((await me.json()) as { operator: string }).operator).toBe("alice");
  });

  test("/ca.crt is the gateway CA; /join.json gives its fingerprint and pinned lines", async () => {
    const ca = await curl(`${base}/ca.crt`, ["--cacert", t.caPath]);
    expect(ca.body).toBe(`${caPem.trim()}\n`);
    const info = (await (await fetch(`${base}/join.json`, { tls: { ca: caPem } } as RequestInit)).json()) as Record<string, string>;
    const fp = caFingerprint(caPem);
    expect(info).toMatchObject({ url: base, mode: "mint_from_ca", ca_sha256: fp, join: `clawpatrol join ${base} --ca-sha256 ${fp}` });
    expect(info.install).toContain(fp.replace(/:/g, "").toLowerCase());
    expect(info.install).toContain(`--cacert clawpatrol-ca.crt ${base}/install.sh`);
  });

  test("`ca show` prints the same fingerprint, the same as openssl's", async () => {
    const r = await run([BUN, "app/main.ts", "ca", "show", "--config", t.configPath], { env: { ...(process.env as Record<string, string>), CLAWPATROL_STATE_DIR: "" } });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(caPem.trim());
    const fp = /SHA-256 fingerprint: ([0-9A-F:]+)/.exec(r.stderr)?.[1];
    expect(fp).toBe(caFingerprint(caPem));
    const o = await run(["openssl", "x509", "-in", t.caPath, "-noout", "-fingerprint", "-sha256"]);
    expect(o.stdout.trim()).toBe(`sha256 Fingerprint=${fp}`);
  });

  /** The install one-liner as a device runs it: in its own directory, as nobody when we are root. */
  async function installOneLiner(line: string) {
    const home = tempDir("home");
    chmodSync(home, 0o777);
    const asNobody = process.getuid?.() === 0 ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"] : [];
    const r = await run([...asNobody, "sh", "-c", line], { cwd: home, env: { PATH: process.env.PATH!, HOME: home } });
    return { ...r, home, installed: path.join(home, ".local/bin/clawpatrol") };
  }

  test("the install one-liner checks the fingerprint, then installs over TLS trusting only that CA", async () => {
    const info = (await (await fetch(`${base}/join.json`, { tls: { ca: caPem } } as RequestInit)).json()) as Record<string, string>;
    const r = await installOneLiner(info.install!);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(readFileSync(r.installed, "utf8")).toBe(body);
    expect(r.stdout).toContain(`next: clawpatrol join ${base} --ca-sha256 ${caFingerprint(caPem)}`);
  });

  test("the served install.sh carries the CA and uses it for every download", async () => {
    const script = (await curl(`${base}/install.sh`, ["--cacert", t.caPath])).body;
    expect(script).toContain(caPem.trim());
    expect(script.match(/--cacert "\$tmp\/ca.crt"/g)?.length).toBe(2);
    expect(script).not.toContain(" -k");
    const posix = await run(["sh", "-n", "-c", script]);
    expect(posix.code, posix.stderr).toBe(0);
  });

  test("a wrong fingerprint in the one-liner: nothing is fetched beyond ca.crt, nothing installed", async () => {
    const info = (await (await fetch(`${base}/join.json`, { tls: { ca: caPem } } as RequestInit)).json()) as Record<string, string>;
    const hex = caFingerprint(caPem).replace(/:/g, "").toLowerCase();
    const r = await installOneLiner(info.install!.replace(hex, "0".repeat(64)));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("CA fingerprint mismatch, not installing");
    expect(existsSync(r.installed)).toBe(false);
  });
});

describe("cert_file and key_file", () => {
  test("served as given; an edited pair is served after the check; a mismatched pair is refused and the old one kept", async () => {
    const dir = tempDir("tlsfiles");
    const a = makeTestPki(path.join(dir, "a"), ["127.0.0.1"]);
    const b = makeTestPki(path.join(dir, "b"), ["127.0.0.1"]);
    const certFile = path.join(dir, "d.crt");
    const keyFile = path.join(dir, "d.key");
    writeFileSync(certFile, a.certPem);
    writeFileSync(keyFile, a.keyPem);
    const settings = { dashboardTls: { kind: "files", certFile, keyFile }, dashboardListen: "127.0.0.1:0", stateDir: dir } as GatewaySettings;
    const server = startPublicServer("127.0.0.1:0", { plugins: [] }, { certPem: a.certPem, keyPem: a.keyPem });
    const watcher = watchDashboardTls(() => settings, { certPem: a.certPem, keyPem: a.keyPem }, (next) => server.replaceTls(next), { intervalMs: 3_600_000 });
    const url = `https://127.0.0.1:${server.address.port}/health`;
    try {
      expect((await curl(url, ["--cacert", a.caCertPath])).code).toBe(0);
      expect(await watcher.check()).toBe(false);

      // Half an edit: b's certificate with a's key. Refused; a still served.
      writeFileSync(certFile, b.certPem);
      expect(await watcher.check()).toBe(false);
      expect((await curl(url, ["--cacert", a.caCertPath])).code).toBe(0);

      writeFileSync(keyFile, b.keyPem);
      expect(await watcher.check()).toBe(true);
      expect((await curl(url, ["--cacert", b.caCertPath])).code).toBe(0);
      expect((await curl(url, ["--cacert", a.caCertPath])).code).toBe(60);
    } finally {
      watcher.close();
      await server.close();
    }
  });
});

describe("the dashboard role (its own process, as on the appliance)", () => {
  test("serves https with the minted certificate and the gateway's CA at /ca.crt", async () => {
    const dir = tempDir("dashtls");
    const port = await freePort();
    const configPath = path.join(dir, "gateway.hcl");
    writeFileSync(
      configPath,
      `schema_version = 1
gateway {
  state_dir        = "state"
  control_socket   = "control.sock"
  dashboard_listen = "127.0.0.1:${port}"
  dashboard_tls { mint_from_ca = true }
}
`,
    );
    const gateway = startRole("gateway", configPath);
    try {
      await gateway.waitFor("clawpatrol gateway running");
      const dashboard = startRole("dashboard", configPath);
      try {
        await dashboard.waitFor("clawpatrol dashboard on");
        expect(dashboard.stderr()).toContain(`https://127.0.0.1:${port}`);
        const caPath = path.join(dir, "state", "ca.crt");
        const health = await curl(`https://127.0.0.1:${port}/health`, ["--cacert", caPath]);
        expect(health.code, health.stderr).toBe(0);
        expect((await curl(`https://127.0.0.1:${port}/ca.crt`, ["--cacert", caPath])).body.trim()).toBe(readFileSync(caPath, "utf8").trim());
      } finally {
        await dashboard.stop();
      }
    } finally {
      await gateway.stop();
    }
  }, 60_000);
});
