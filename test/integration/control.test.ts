// The control socket and the CLI that talks to it: event history and a live
// tail from the running gateway, errors in the API's one JSON shape.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { makeTestPki } from "./support/pki.ts";
import { startUpstream, type TestUpstream } from "./support/upstream.ts";
import { curlVia, startTestGateway, tempDir, type TestGateway } from "./support/gateway.ts";
import { controlFetch } from "../../app/control/client.ts";
import { startGateway } from "../../app/gateway.ts";

let upstream: TestUpstream;
let t: TestGateway;
const BUN = "./node_modules/.bin/bun";

beforeAll(async () => {
  const pki = makeTestPki(tempDir("pki"), ["api.test"]);
  upstream = startUpstream(pki);
  t = await startTestGateway(`
defaults {
  verdict = "allow"
  profile = profile.p
}
endpoint "https" "api" {
  hosts = ["api.test"]
  ports = [${upstream.port}]
  ca_cert = "${pki.caCertPath}"
}
profile "p" {}
rule "no-deletes" {
  endpoint = https.api
  condition = "http.method == 'DELETE'"
  verdict = "deny"
}
`);
});

afterAll(async () => {
  await t?.stop();
  upstream?.stop();
});

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn([BUN, "app/main.ts", ...args, "--config", t.configPath], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

test("events history shows recorded requests, filtered", async () => {
  await curlVia(t, "api.test", upstream.port, "/echo?history=1");
  await curlVia(t, "api.test", upstream.port, "/echo?history=2", ["-X", "DELETE"]);
  // the sqlite sink batches (up to 200 ms, later under load): ask until both are stored
  let all = await cli("events", "history");
  for (let i = 0; i < 40 && !(all.out.includes("/echo?history=1") && all.out.includes("/echo?history=2")); i++) {
    await Bun.sleep(250);
    all = await cli("events", "history");
  }
  expect(all.code).toBe(0);
  expect(all.out).toContain("/echo?history=1");
  expect(all.out).toContain("/echo?history=2");
  const denied = await cli("events", "history", "--verdict", "deny");
  expect(denied.out).toContain("/echo?history=2");
  expect(denied.out).not.toContain("/echo?history=1");
});

test("events tail follows live events", async () => {
  const p = Bun.spawn([BUN, "app/main.ts", "events", "tail", "--config", t.configPath], { stdout: "pipe", stderr: "pipe" });
  try {
    const reader = (p.stdout as ReadableStream<Uint8Array>).getReader();
    let text = "";
    void (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        text += new TextDecoder().decode(value);
      }
    })();
    // The tail subscribes once its process is up (slow under load): request
    // until it shows a request made while it listens.
    const deadline = Date.now() + 20_000;
    while (!text.includes("/echo?tail=1") && Date.now() < deadline) {
      await curlVia(t, "api.test", upstream.port, "/echo?tail=1");
      await Bun.sleep(500);
    }
    expect(text).toContain("/echo?tail=1");
  } finally {
    p.kill();
  }
});

test("API errors have one JSON shape", async () => {
  const res = await controlFetch(t.gw.policy().gateway.controlSocket, "/api/events?limit=0");
  expect(res.status).toBe(400);
  expect(await res.json()).toEqual({ error: { code: "bad_limit", message: "limit must be 1..1000" } });
});

test("a second gateway on the same state refuses to start", async () => {
  await expect(startGateway({ configPath: t.configPath, stderrEvents: false })).rejects.toThrow(/another gateway is running/);
});

test("the CLI says clearly when the gateway is not running", async () => {
  const dir = tempDir("cfg");
  const cfg = `${dir}/gw.hcl`;
  await Bun.write(cfg, `schema_version = 1\ngateway {\n  state_dir = "state"\n}\n`);
  const p = Bun.spawn([BUN, "app/main.ts", "events", "history", "--config", cfg], { stdout: "pipe", stderr: "pipe" });
  const err = await new Response(p.stderr).text();
  expect(await p.exited).toBe(1);
  expect(err).toContain("the gateway is not running");
});
