// The approved poll answer carries the gateway's SSH CA and the ssh endpoint
// hosts the device's profile sees (for `clawpatrol join` to write into
// known_hosts), and nothing of it for a profile that sees no ssh endpoint.
import { afterEach, expect, test } from "bun:test";
import { harness, newKey, type Harness } from "./helpers.ts";
import { policyFrom } from "../policy/helpers.ts";
import { sshTrustForProfile } from "../../../app/endpoints/ssh/trust.ts";
import { gatewaySshCa } from "../../../app/endpoints/ssh/keys.ts";

const policy = await policyFrom(`
schema_version = 1
endpoint "ssh" "git" {
  hosts      = ["git.internal", "bastion.internal"]
  credential = ssh_key.deploy
}
endpoint "https" "github" {
  hosts = ["api.github.com"]
}
credential "ssh_key" "deploy" {
  user = "deploy"
}
profile "dev" {
  credentials = [ssh_key.deploy]
}
profile "ops" {
  endpoints = [https.github]
}
`);

let h: Harness | undefined;
afterEach(() => h?.close());

/** Start, approve into `profile`, and poll once: the approved answer. */
async function approvedAnswer(profile: string): Promise<Record<string, unknown>> {
  h = harness({}, { sshTrust: (db, dir) => (p) => sshTrustForProfile(policy, p, { db, stateDir: dir }, 1_000) });
  const started = await (await h.pub("/api/onboard/start", { name: `box-${profile}`, public_key: newKey() })).json();
  expect((await h.ctl("POST", `/api/onboard/${started.code}/approve`, { profile, operator: "cli:root" })).status).toBe(200);
  const poll = h.pub("/api/onboard/poll", { device_code: started.device_code });
  await h.clock.advance(30_000);
  const answer = await (await poll).json();
  expect(answer.status).toBe("approved");
  return answer;
}

test("a profile that sees an ssh endpoint gets the SSH CA's public key and the endpoint's hosts", async () => {
  const answer = await approvedAnswer("dev");
  const ca = gatewaySshCa(h!.db, h!.dir, 1_000).publicKey;
  expect(ca).toMatch(/^ssh-ed25519 [A-Za-z0-9+/]+=*$/);
  expect(answer.ssh_ca).toEqual({ public_key: ca, hosts: ["git.internal", "bastion.internal"] });
  // Public only: nothing of the CA's private key.
  expect(JSON.stringify(answer)).not.toContain("PRIVATE KEY");
});

test("a profile that sees no ssh endpoint gets no SSH CA", async () => {
  const answer = await approvedAnswer("ops");
  expect(answer).not.toHaveProperty("ssh_ca");
  expect(answer.api_token).toBeString();
});

test("a failing SSH CA never costs the device its approval", async () => {
  h = harness({}, { sshTrust: () => async () => Promise.reject(new Error("state unreadable")) });
  const started = await (await h.pub("/api/onboard/start", { name: "box", public_key: newKey() })).json();
  await h.ctl("POST", `/api/onboard/${started.code}/approve`, { profile: "dev", operator: "cli:root" });
  const poll = h.pub("/api/onboard/poll", { device_code: started.device_code });
  await h.clock.advance(30_000);
  const answer = await (await poll).json();
  expect(answer.status).toBe("approved");
  expect(answer).not.toHaveProperty("ssh_ca");
  expect(h.logs.some((l) => l.includes("SSH CA could not be given"))).toBe(true);
});
