// The offline demo's echo server and `trust_gateway_ca`: its certificate,
// issued by the gateway's own CA, verifies only for an endpoint that asks for
// that CA; the keyword is read by the loader and refused when not a bool.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { loadOrCreateCA, type CertificateAuthority } from "../../../app/tls/ca.ts";
import { TrustStore } from "../../../app/tls/trust.ts";
import { UpstreamPool } from "../../../app/endpoints/https/upstream.ts";
import { parseDemoListen, startDemoEcho, type DemoEcho } from "../../../app/demo/echo.ts";
import { loadPolicy } from "../../../app/policy/load.ts";
import type { Endpoint } from "../../../app/policy/types.ts";

let dir: string;
let ca: CertificateAuthority;
let echo: DemoEcho;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "cp-demo-echo-"));
  ca = await loadOrCreateCA(path.join(dir, "state"));
  echo = await startDemoEcho(ca, { host: "127.0.0.1", port: 0 });
});

afterAll(() => {
  echo?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const endpoint = (settings?: Record<string, unknown>): Endpoint =>
  ({ type: "https", name: "demo", ref: "https.demo", family: "http", hosts: ["localhost"], source: "test", ...(settings ? { settings } : {}) }) as unknown as Endpoint;

async function dial(trust: TrustStore, e: Endpoint): Promise<true | string> {
  const pool = new UpstreamPool(10_000, trust);
  try {
    const conn = await pool.dial({ host: "127.0.0.1", port: echo.port, sni: "localhost", endpoint: e });
    conn.destroy();
    return true;
  } catch (err) {
    return (err as Error).message;
  }
}

describe("the demo echo server", () => {
  test("its certificate verifies for an endpoint with trust_gateway_ca, and for no other", async () => {
    const empty = path.join(dir, "empty.crt");
    writeFileSync(empty, "");
    const trust = new TrustStore({ systemStorePath: empty, env: {} });
    trust.setOwnCaPem(ca.certPem);
    expect(await dial(trust, endpoint({ trustGatewayCa: true }))).toBe(true);
    const refused = await dial(trust, endpoint());
    expect(refused).not.toBe(true);
    expect(String(refused)).toMatch(/certificate|issuer|verify/i);
    // The gateway's CA is not among the roots every upstream gets.
    const line = ca.certPem.split("\n")[1]!;
    expect(trust.roots().some((r) => r.includes(line))).toBe(false);
  });

  test("answers /headers as httpbin does and echoes any other request", async () => {
    const url = `https://localhost:${echo.port}`;
    const tlsOpts = { tls: { ca: ca.certPem, checkServerIdentity: () => undefined } } as RequestInit;
    const h = await fetch(`${url}/headers`, { ...tlsOpts, headers: { authorization: "Bearer x" } });
    expect(((await h.json()) as { headers: Record<string, string> }).headers.authorization).toBe("Bearer x");
    const d = await fetch(`${url}/anything?a=1`, { ...tlsOpts, method: "POST", body: "hello" });
    expect(await d.json()).toMatchObject({ method: "POST", path: "/anything?a=1", body: "hello" });
  });

  test("--demo-upstream takes HOST:PORT only", () => {
    expect(parseDemoListen("127.0.0.1:8443")).toEqual({ host: "127.0.0.1", port: 8443 });
    expect(parseDemoListen("127.0.0.1")).toBeUndefined();
    expect(parseDemoListen("nonsense:99999")).toBeUndefined();
  });
});

describe("trust_gateway_ca in the config", () => {
  const load = (attr: string) => {
    const file = path.join(dir, `gw-${Math.random().toString(36).slice(2)}.hcl`);
    writeFileSync(file, `schema_version = 1\ngateway {\n  state_dir = "state"\n}\nendpoint "https" "demo" {\n  hosts = ["localhost"]\n  ${attr}\n}\n`);
    return loadPolicy(file, { env: {} });
  };

  test("true reaches the endpoint's settings; absent, it is off", async () => {
    const on = await load("trust_gateway_ca = true");
    expect(on.ok && on.policy.endpoints.get("https.demo")?.settings?.["trustGatewayCa"]).toBe(true);
    const off = await load("");
    expect(off.ok && off.policy.endpoints.get("https.demo")?.settings?.["trustGatewayCa"]).toBeFalsy();
  });

  test("anything but a bool is a FILE:LINE error", async () => {
    const r = await load(`trust_gateway_ca = "yes"`);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors.map((e) => `${e.line}: ${e.message}`).join("\n")).toMatch(/^7: endpoint https.demo: trust_gateway_ca must be true or false/m);
  });
});
