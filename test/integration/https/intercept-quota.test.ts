// What an interception holds for a device counts against its buffered-bytes
// quota (quota_buffered_bytes): request bodies read for an approval are
// held while the approval waits, so a device sending many of them at once
// would make the gateway hold them all. Under a 1 MiB quota the sessions
// of device A stop reading their bodies (backpressure): the gateway holds
// the quota plus at most one read of each connection's socket past it (a
// read cannot be undone), far from the 8 MiB A sends, and most of A's
// requests never reach their approval; the quota is recorded, and device
// B's requests go on; when A's requests end, what they held goes back.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { makeTestPki, type TestPki } from "../support/pki.ts";
import { startUpstream, type TestUpstream } from "../support/upstream.ts";
import { curlVia, startTestGateway, tempDir, type TestGateway } from "../support/gateway.ts";
import { controlFetch } from "../../../app/control/client.ts";

const QUOTA = 1024 * 1024;
const BODY = 1024 * 1024;
const REQUESTS = 8;
/** What one read of a connection may bring past the quota (Bun's TLS socket hands over up to a few hundred KiB at once). */
const READ_AHEAD = 384 * 1024;

let pki: TestPki;
let upstream: TestUpstream;
let t: TestGateway;

beforeAll(async () => {
  pki = makeTestPki(tempDir("pki"), ["api.test"]);
  upstream = startUpstream(pki);
  t = await startTestGateway(`
defaults {
  verdict = "allow"
  quota_buffered_bytes = "1MiB"
  # a session waiting for room this long ends (the agents here are killed while not read)
  idle_timeout = "3s"
}
endpoint "https" "api" {
  hosts = ["api.test"]
  ports = [${upstream.port}]
  ca_cert = "${pki.caCertPath}"
}
profile "p" {}
rule "posts-need-a-human" {
  endpoint = https.api
  condition = "http.method == 'POST'"
  approve = [dashboard]
}
`);
});

afterAll(async () => {
  await t?.stop();
  upstream?.stop();
});

const buffered = async (device: string): Promise<number> => {
  const text = await (await controlFetch(t.gw.policy().gateway.controlSocket, "/metrics")).text();
  const m = text.match(new RegExp(`clawpatrol_device_buffered_bytes\\{device="${device}"\\} (\\d+)`));
  return m ? Number(m[1]) : 0;
};

const waitFor = async (cond: () => Promise<boolean> | boolean, ms: number): Promise<boolean> => {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await Bun.sleep(50);
  }
  return false;
};

async function heldUnderQuota(http: "--http1.1" | "--http2", a: string, b: string): Promise<void> {
  const v = http === "--http2" ? "h2" : "h1";
  const aName = `held-a-${v}`;
  const bName = `held-b-${v}`;
  const body = path.join(t.dir, "body.bin");
  writeFileSync(body, Buffer.alloc(BODY, 0x61));
  // A's requests: each body is read for its approval, which nobody gives
  const posts = Array.from({ length: REQUESTS }, (_, i) =>
    Bun.spawn(
      ["curl", "-sS", "--max-time", "60", http, "--cacert", t.caPath, "-x", t.proxyUrl, "--proxy-user", `${aName}:${a}`,
        "--connect-to", `api.test:${upstream.port}:127.0.0.1:${upstream.port}`, "-X", "POST", "--data-binary", `@${body}`,
        `https://api.test:${upstream.port}/echo?held=${i}`],
      { stdout: "ignore", stderr: "ignore" },
    ),
  );
  try {
    // A's bodies fill its budget toward the quota and never past it
    let most = 0;
    const sample = async () => (most = Math.max(most, await buffered(aName)));
    expect(await waitFor(async () => (await sample()) > QUOTA / 2, 20_000)).toBe(true);
    expect(await waitFor(() => t.events.some((e) => e.device === aName && e.verdict === "deny" && e.reason.includes("quota buffered_bytes")), 10_000)).toBe(true);
    for (let i = 0; i < 10; i++) await sample();
    expect(most).toBeLessThanOrEqual(QUOTA + REQUESTS * READ_AHEAD); // half of what A sent at most
    // the sessions past the quota have not read their bodies: most of A's requests wait for room, not for an approval
    const pending = (await (await controlFetch(t.gw.policy().gateway.controlSocket, "/api/approvals")).json()) as { approvals: unknown[] };
    expect(pending.approvals.length).toBeLessThanOrEqual(3);
    // B is another device: its requests go on
    const r = await curlVia(t, "api.test", upstream.port, "/echo?from-b", ["--proxy-user", `${bName}:${b}`, http]);
    expect(r.status).toBe(200);
  } finally {
    for (const p of posts) p.kill("SIGKILL");
    await Promise.all(posts.map((p) => p.exited));
  }
  // A's connections ended (seen when read, or after idle_timeout waiting for room): what their sessions held goes back
  // (a request held for its approval keeps its body until decided: any still waiting is denied here)
  const socket = t.gw.policy().gateway.controlSocket;
  const denyPending = async () => {
    const left = (await (await controlFetch(socket, "/api/approvals")).json()) as { approvals: { id: string }[] };
    for (const { id } of left.approvals) {
      await controlFetch(socket, `/api/approvals/${id}/deny`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ operator: "cli:test", reason: "test over" }) });
    }
  };
  expect(await waitFor(async () => (await denyPending(), (await buffered(aName)) === 0), 30_000)).toBe(true);
}

test("HTTP/1.1: bodies held for approvals: device A's stay under its quota (the rest unread), recorded; B's requests go on; ended, they are given back", async () => {
  await heldUnderQuota("--http1.1", t.gw.devices.add("held-a-h1", "p").token, t.gw.devices.add("held-b-h1", "p").token);
});

test("HTTP/2: the same, stream by stream", async () => {
  await heldUnderQuota("--http2", t.gw.devices.add("held-a-h2", "p").token, t.gw.devices.add("held-b-h2", "p").token);
});
