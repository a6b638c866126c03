// `clawpatrol join https://… --ca-sha256 FP` against a gateway whose public
// API serves a certificate minted from its own CA (dashboard_tls
// { mint_from_ca = true }). The client runs from source in this namespace
// (join needs no root): only HTTPS to the public API is exercised.
//   - the right fingerprint: joined; the state pins the CA, and a later API
//     call (registering a run peer) goes through that CA alone
//   - a wrong fingerprint: refused before anything is sent to the gateway
//   - no fingerprint: refused by TLS, with a hint naming --ca-sha256
//   - a server that copies the gateway's public CA to /ca.crt but holds
//     another certificate: the pin matches, the next request fails closed
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { startTestGateway, tempDir, type TestGateway } from "../support/gateway.ts";
import { approveCode, controlJson } from "../support/client-device.ts";
import { makeTestPki } from "../support/pki.ts";
import { caFingerprint } from "../../../app/tls/fingerprint.ts";
import { loadState } from "../../../client/state.ts";
import { registerRun } from "../../../client/run-peer.ts";

const ROOT = path.resolve(import.meta.dir, "../../..");
const BUN = path.join(ROOT, "node_modules/.bin/bun");
const WG_PORT = 30000 + (process.pid % 10000);

interface Joined {
  code: number;
  out: string;
  err: string;
  home: string;
  stateDir: string;
}

/** `clawpatrol join` from source with its own HOME; the operator approves (profile default) when the code shows. */
async function join(t: TestGateway, url: string, extra: string[]): Promise<Joined> {
  const home = tempDir("join-home");
  const p = Bun.spawn([BUN, path.join(ROOT, "client/main.ts"), "join", url, "--name", `dev-${path.basename(home).slice(-6)}`, ...extra], {
    env: { PATH: process.env.PATH!, HOME: home },
    stdout: "pipe",
    stderr: "pipe",
  });
  let out = "";
  let approving: Promise<void> | undefined;
  const reading = (async () => {
    for await (const c of p.stdout as unknown as AsyncIterable<Uint8Array>) {
      out += new TextDecoder().decode(c);
      const m = /Code: ([A-Z2-9]{4}-[A-Z2-9]{4})/.exec(out);
      if (m && !approving) approving = approveCode(t, m[1]!, "default");
    }
  })();
  const timer = setTimeout(() => p.kill("SIGKILL"), 60_000);
  const [err, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
  clearTimeout(timer);
  await reading;
  await approving;
  return { code, out, err, home, stateDir: path.join(home, ".config", "clawpatrol") };
}

describe("join --ca-sha256 over the gateway's own-CA certificate", () => {
  let t: TestGateway;
  let url = "";
  let caPem = "";
  let fp = "";

  beforeAll(async () => {
    t = await startTestGateway(
      `profile "default" {}\n`,
      {},
      {
        gateway: `
  dashboard_tls { mint_from_ca = true }
  wireguard {
    mode = "userspace"
    listen = "127.0.0.1:${WG_PORT}"
    subnet_cidr = "10.89.0.0/24"
  }`,
      },
    );
    url = `https://127.0.0.1:${t.gw.publicServer!.address.port}`;
    caPem = readFileSync(t.caPath, "utf8");
    fp = caFingerprint(caPem);
  });
  afterAll(async () => {
    await t?.stop();
  });

  const pending = async () => (await controlJson<{ pending: unknown[] }>(t, "/api/onboard/pending")).pending;

  test("the right fingerprint: joined, the CA pinned in the state, later API calls trust only it", async () => {
    const r = await join(t, url, ["--ca-sha256", fp]);
    expect(r.code, r.err + r.out).toBe(0);
    expect(r.out).toContain(`The gateway's CA matches the fingerprint given (${fp})`);
    const state = loadState(r.stateDir);
    expect(state.ca_sha256).toBe(fp);
    expect(caFingerprint(state.caCert)).toBe(fp);
    // A run peer is registered over https with the pinned CA (the default fetch would refuse this certificate).
    const unpinned = await registerRun(state, fetch);
    expect(unpinned.kind).toBe("device");
    const run = await registerRun(state);
    expect(run.kind).toBe("run");
    if (run.kind === "run") await run.lease.end();
  });

  test("lower-case hex without colons is the same fingerprint", async () => {
    const r = await join(t, url, ["--ca-sha256", fp.replace(/:/g, "").toLowerCase()]);
    expect(r.code, r.err).toBe(0);
  });

  test("a wrong fingerprint: refused before any join request, nothing saved", async () => {
    const before = (await pending()).length;
    const wrong = `${fp.slice(0, -2)}${fp.endsWith("00") ? "01" : "00"}`;
    const r = await join(t, url, ["--ca-sha256", wrong]);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`presented a CA with SHA-256 ${fp}, not the ${wrong} given: not joining`);
    expect(r.out).not.toContain("Code:");
    expect(existsSync(r.stateDir)).toBe(false);
    expect((await pending()).length).toBe(before);
  });

  test("malformed fingerprints and http URLs are usage mistakes, said plainly", async () => {
    const short = await join(t, url, ["--ca-sha256", "AB:CD"]);
    expect(short.code).toBe(1);
    expect(short.err).toContain("--ca-sha256 must be a SHA-256 fingerprint");
    const plain = await join(t, `http://127.0.0.1:${t.gw.publicServer!.address.port}`, ["--ca-sha256", fp]);
    expect(plain.code).toBe(1);
    expect(plain.err).toContain("use an https:// URL");
  });

  test("no fingerprint: TLS refuses the gateway's certificate, and the error says to pin it", async () => {
    const r = await join(t, url, []);
    expect(r.code).toBe(1);
    expect(r.err).toContain("--ca-sha256");
    expect(existsSync(r.stateDir)).toBe(false);
  });

  test("an impostor serving the real CA at /ca.crt with its own certificate: the pin matches, the next request fails closed", async () => {
    const pki = makeTestPki(tempDir("impostor"), ["127.0.0.1"]);
    const seen: string[] = [];
    const impostor = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      tls: { cert: pki.certPem, key: pki.keyPem },
      fetch(req) {
        const p = new URL(req.url).pathname;
        seen.push(p);
        if (p === "/ca.crt") return new Response(caPem);
        return Response.json({ code: "AAAA-BBBB", device_code: "x", approval_url: "x", expires_in: 60, poll_interval: 1 });
      },
    });
    try {
      const r = await join(t, `https://127.0.0.1:${impostor.port}`, ["--ca-sha256", fp]);
      expect(r.code).toBe(1);
      expect(r.err).toContain("cannot reach the gateway");
      expect(r.out).not.toContain("Code:");
      expect(seen).toEqual(["/ca.crt"]);
    } finally {
      impostor.stop(true);
    }
  });
});
