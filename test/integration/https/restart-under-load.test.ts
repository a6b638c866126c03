// The gateway restarted (SIGTERM, then started again on the same state)
// while agents keep sending: requests in flight at the stop may fail (their
// connections end with the process), but every request the upstream served
// is recorded, once, in the state database and the JSON lines: none lost at
// the stop, none written twice.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, writeFileSync, rmSync } from "node:fs";
import path from "node:path";
import { Database } from "bun:sqlite";
import { makeTestPki, type TestPki } from "../support/pki.ts";
import { startUpstream, type TestUpstream } from "../support/upstream.ts";
import { tempDir } from "../support/gateway.ts";
import { KeepAliveClient } from "../support/keepalive-client.ts";
import { firstLine } from "../../bench/proc-stats.ts";

const SECRET = "sk-live-restart-0123456789abcdef";
const PLACEHOLDER = "clawpatrol-placeholder-restart";
const CLIENTS = 6;
const GATEWAY_PROC = path.join(import.meta.dir, "..", "..", "bench", "gateway-proc.ts");

let pki: TestPki;
let upstream: TestUpstream;
let dir: string;
const procs: Bun.Subprocess[] = [];

beforeAll(() => {
  dir = tempDir("restart");
  pki = makeTestPki(path.join(dir, "pki"), ["api.test"]);
  upstream = startUpstream(pki);
});

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill("SIGKILL");
  await Promise.all(procs.map((p) => p.exited));
  upstream?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function config(listen: string): string {
  return `schema_version = 1
gateway {
  state_dir = "state"
  dashboard_listen = "127.0.0.1:0"
  proxy { listen = "${listen}" }
  events { jsonl = "events.jsonl" }
}
defaults {
  verdict = "allow"
  unknown_host = "deny"
  profile = profile.agents
}
endpoint "https" "api" {
  hosts = ["api.test"]
  ports = [${upstream.port}]
  ca_cert = "${pki.caCertPath}"
  credential = bearer_token.api
}
credential "bearer_token" "api" {}
profile "agents" {
  credentials = [bearer_token.api]
}
`;
}

async function startGatewayProc(listen: string): Promise<{ proc: Bun.Subprocess; proxy: { host: string; port: number } }> {
  const configPath = path.join(dir, "gateway.hcl");
  writeFileSync(configPath, config(listen));
  const env: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("CLAWPATROL_")) env[k] = v;
  env.CLAWPATROL_SECRET_API = SECRET;
  const proc = Bun.spawn([process.execPath, GATEWAY_PROC, configPath], { env, stdout: "pipe", stderr: "inherit" });
  procs.push(proc);
  const ready = await firstLine(proc.stdout as ReadableStream<Uint8Array>, 60_000);
  if ("error" in ready) throw new Error(`the gateway did not start: ${ready.error}`);
  const [host, port] = (JSON.parse(ready.line) as { proxy: string }).proxy.split(":") as [string, string];
  return { proc, proxy: { host, port: Number(port) } };
}

test("a restart during traffic loses no event of a request the upstream served, and writes none twice", async () => {
  let gw = await startGatewayProc("127.0.0.1:0");
  const listen = `${gw.proxy.host}:${gw.proxy.port}`;
  const caPem = readFileSync(path.join(dir, "state", "ca.crt"), "utf8");
  const header = { Authorization: `Bearer ${PLACEHOLDER}` };
  let ok = 0;
  let failed = 0;
  let running = true;
  // Each agent sends one request after another and opens a new connection when its own ends.
  const agent = async () => {
    while (running) {
      let c: KeepAliveClient | undefined;
      try {
        c = await KeepAliveClient.open({ proxy: gw.proxy, host: "api.test", port: upstream.port, caPem, timeoutMs: 5_000 });
        while (running) {
          const r = await c.request("GET", "/echo", header, 10_000);
          if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${r.body}`);
          ok++;
        }
      } catch {
        failed++;
        await Bun.sleep(20);
      } finally {
        c?.close();
      }
    }
  };
  const agents = Array.from({ length: CLIENTS }, agent);
  const atLeast = async (n: number) => {
    while (ok < n) await Bun.sleep(5);
  };

  await atLeast(200);
  gw.proc.kill("SIGTERM");
  expect(await gw.proc.exited).toBe(0);
  const servedAtStop = upstream.seen.length;
  gw = await startGatewayProc(listen);
  await atLeast(ok + 200);
  running = false;
  await Promise.all(agents);
  gw.proc.kill("SIGTERM");
  expect(await gw.proc.exited).toBe(0);

  const served = upstream.seen.filter((r) => r.path === "/echo").length;
  const db = new Database(path.join(dir, "state", "state.db"), { readonly: true });
  const rows = (db.query("SELECT COUNT(*) AS n FROM actions WHERE kind = 'http' AND status = 200").get() as { n: number }).n;
  db.close();
  const lines = readFileSync(path.join(dir, "state", "events.jsonl"), "utf8").split("\n").filter(Boolean);
  const jsonl = lines.map((l) => JSON.parse(l) as { kind: string; status?: number; flowId: string; time: string });
  const http200 = jsonl.filter((e) => e.kind === "http" && e.status === 200);
  console.log(`restart under load: ${ok} answered, ${failed} connections ended by the restart, upstream served ${served} (${servedAtStop} before the stop); events: sqlite ${rows}, jsonl ${http200.length}`);
  expect(failed).toBeGreaterThan(0); // the restart did land during traffic
  expect(rows).toBe(served);
  expect(http200.length).toBe(served);
}, 180_000);
