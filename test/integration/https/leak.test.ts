// Secrets never leave the gateway toward a device and never reach a sink in
// clear: every byte curl receives, the JSON-lines file, the SQLite database
// (all of its bytes, not just the actions table), the stderr event lines and
// the log are scanned for every configured secret, in every revealing form.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { makeTestPki } from "../support/pki.ts";
import { startUpstream, type TestUpstream } from "../support/upstream.ts";
import { curlVia, startTestGateway, tempDir, type TestGateway } from "../support/gateway.ts";
import { setLogWriter, setLogLevel } from "../../../app/log.ts";

const SECRETS = {
  bearer: "sk-live-bearer-7f3a9c1e5d2b8046",
  header: "hdr-key-0c9e1f7a3b5d2e4f6a8b",
  basicPassword: "basic-pw-9d8c7b6a5f4e3d2c1b",
  stored: "stored-in-db-4e5f6a7b8c9d0e1f",
};
const FORMS = [
  ...Object.values(SECRETS),
  Buffer.from(`svc:${SECRETS.basicPassword}`).toString("base64"),
];

let upstream: TestUpstream;
let t: TestGateway;
const stderrLines: string[] = [];
const logLines: string[] = [];
const received: string[] = [];

beforeAll(async () => {
  const pki = makeTestPki(tempDir("pki"), ["api.test", "hdr.test", "basic.test", "db.test"]);
  upstream = startUpstream(pki);
  const ep = (name: string, host: string, cred: string) => `
endpoint "https" "${name}" {
  hosts = ["${host}"]
  ports = [${upstream.port}]
  ca_cert = "${pki.caCertPath}"
  credential = ${cred}
}`;
  setLogWriter((line) => logLines.push(line));
  setLogLevel("debug");
  t = await startTestGateway(
    `
defaults {
  verdict = "allow"
  profile = profile.agents
}
${ep("api", "api.test", "bearer_token.bearer")}
${ep("hdr", "hdr.test", "header_token.hdr")}
${ep("basic", "basic.test", "basic_auth.basic")}
${ep("db", "db.test", "bearer_token.stored")}
credential "bearer_token" "bearer" {}
credential "header_token" "hdr" {
  header = "X-Api-Key"
}
credential "basic_auth" "basic" {
  username = "svc"
}
credential "bearer_token" "stored" {}
profile "agents" {
  credentials = [bearer_token.bearer, header_token.hdr, basic_auth.basic, bearer_token.stored]
}
rule "evaluation-error" {
  endpoint = https.api
  condition = "http.path == '/broken' && http.headers['x-missing'] == 'y'"
  verdict = "deny"
}
`,
    {
      CLAWPATROL_SECRET_BEARER: SECRETS.bearer,
      CLAWPATROL_SECRET_HDR: SECRETS.header,
      CLAWPATROL_SECRET_BASIC: SECRETS.basicPassword,
    },
    { stderrWrite: (line) => stderrLines.push(line) },
  );
  t.gw.secrets.set("stored", SECRETS.stored);
});

afterAll(async () => {
  setLogWriter(undefined);
  setLogLevel("info");
  await t?.stop();
  upstream?.stop();
});

test("no configured secret reaches the agent or any sink", async () => {
  const hosts = ["api.test", "hdr.test", "basic.test", "db.test"];
  for (const host of hosts) {
    for (const p of ["/echo", "/echo-auth", "/sse?n=2&gap=10", "/missing"]) {
      const r = await curlVia(t, host, upstream.port, p, ["-H", "Authorization: Bearer placeholder", "-H", "X-Api-Key: placeholder"]);
      expect(r.exitCode).toBe(0);
      received.push(r.headers, r.body);
    }
  }
  // A rule that fails to evaluate: its detail goes to the log.
  const broken = await curlVia(t, "api.test", upstream.port, "/broken");
  expect(broken.status).toBe(403);
  received.push(broken.headers, broken.body);

  // The upstream really got every secret in its slot.
  const seen = JSON.stringify(upstream.seen);
  expect(seen).toContain(`Bearer ${SECRETS.bearer}`);
  expect(seen).toContain(SECRETS.header);
  expect(seen).toContain(`Basic ${Buffer.from(`svc:${SECRETS.basicPassword}`).toString("base64")}`);
  expect(seen).toContain(`Bearer ${SECRETS.stored}`);

  await t.gw.close(); // flushes the sinks
  const stateDir = t.gw.policy().gateway.stateDir;
  const files = readdirSync(stateDir).map((f) => path.join(stateDir, f));
  const sinks: [string, string][] = [
    ["agent", received.join("\n")],
    ["stderr events", stderrLines.join("")],
    ["log", logLines.join("\n")],
    ...files.map((f) => [f, readFileSync(f).toString("latin1")] as [string, string]),
  ];
  expect(stderrLines.length).toBeGreaterThan(10);
  expect(files.some((f) => f.endsWith("events.jsonl"))).toBe(true);
  for (const [where, text] of sinks) {
    for (const form of FORMS) {
      if (text.includes(form)) throw new Error(`a secret (${form.slice(0, 6)}…) leaked into ${where}`);
    }
  }
  // And the echoed secrets were visibly masked, not silently dropped.
  expect(received.join("\n")).toContain("you sent: ****");
});
