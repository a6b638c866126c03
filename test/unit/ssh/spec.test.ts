// The ssh endpoint's HCL and how the dispatcher claims its flows: a VIP or a
// proxy's name on any port, an IP literal on its own port only, never the
// "only endpoint on this port" fallback; host_key lines checked at load.
import { describe, expect, test } from "bun:test";
import { routeDestination } from "../../../app/dispatch/dispatch.ts";
import { sshSettings, parsePublicKeyLine, upstreamFor } from "../../../app/endpoints/ssh/spec.ts";
import { hostKeyVerdict, fingerprintOf, publicKeyOfBlob } from "../../../app/endpoints/ssh/keys.ts";
import { policyFrom } from "../policy/helpers.ts";

const ED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM9wwuJv0h+dUiOhvRrD0cFqJaM4tqP3HgyIh1JxIx3R";

const policy = await policyFrom(`
schema_version = 1
endpoint "ssh" "git" {
  hosts      = ["git.internal", "bastion.internal:2222", "10.9.0.7"]
  host_key   = "${ED} comment"
  credential = ssh_key.deploy
}
credential "ssh_key" "deploy" {
  user            = "git"
  passphrase_file = "deploy.pass"
}
profile "default" { credentials = [ssh_key.deploy] }
`);
const dev = { name: "laptop", profile: "default" };

describe("ssh endpoint spec", () => {
  test("hosts carry their upstream ports; host_key is parsed", () => {
    const ep = policy.endpoints.get("ssh.git")!;
    expect(ep.family).toBe("ssh");
    expect(ep.hosts).toEqual(["git.internal", "bastion.internal", "10.9.0.7"]);
    const s = sshSettings(ep.settings);
    expect(s.upstreams).toEqual([
      { host: "git.internal", port: 22 },
      { host: "bastion.internal", port: 2222 },
      { host: "10.9.0.7", port: 22 },
    ]);
    expect(s.hostKey?.type).toBe("ssh-ed25519");
    expect(policy.credentials.get("ssh_key.deploy")?.settings).toEqual({ user: "git", passphrase_file: "deploy.pass" });
  });

  test("a VIP of an ssh host is served on any port; the upstream is the name", () => {
    const ctx = { vipHostname: (ip: string) => (ip === "10.78.0.3" ? "bastion.internal" : undefined) };
    for (const port of [22, 2222, 40022]) {
      const r = routeDestination(policy, { host: "10.78.0.3", port }, dev, ctx);
      expect(r).toMatchObject({ kind: "serve", via: "vip", upstream: { host: "bastion.internal" } });
    }
  });

  test("a proxy's name is served on any port; an IP literal only on the ports the block names", () => {
    expect(routeDestination(policy, { host: "git.internal", port: 2200 }, dev)).toMatchObject({ kind: "serve", via: "name" });
    expect(routeDestination(policy, { host: "10.9.0.7", port: 22 }, dev)).toMatchObject({ kind: "serve", via: "direct-ip" });
    expect(routeDestination(policy, { host: "10.9.0.7", port: 2200 }, dev).kind).toBe("relay");
  });

  test("a claimed flow is dialed on the port hosts gives its host, whatever port the agent used", () => {
    const s = sshSettings(policy.endpoints.get("ssh.git")!.settings);
    // An IP literal on another of the block's ports (2222 is bastion's): claimed, and dialed on its own port 22.
    expect(routeDestination(policy, { host: "10.9.0.7", port: 2222 }, dev)).toMatchObject({ kind: "serve", via: "direct-ip", upstream: { host: "10.9.0.7" } });
    expect(upstreamFor(s, { host: "10.9.0.7", port: 2222 })).toEqual({ host: "10.9.0.7", port: 22 });
    // A name (VIP or proxy) on any port: its configured port.
    expect(upstreamFor(s, { host: "bastion.internal", port: 22 })).toEqual({ host: "bastion.internal", port: 2222 });
    expect(upstreamFor(s, { host: "Git.Internal", port: 40022 })).toEqual({ host: "git.internal", port: 22 });
  });

  test("some other address on :22 is relayed, not handed to the only ssh endpoint", () => {
    expect(routeDestination(policy, { host: "140.82.112.3", port: 22 }, dev).kind).toBe("relay");
  });

  test("config errors name the attribute", async () => {
    const bad = (body: string) =>
      policyFrom(`schema_version = 1
endpoint "ssh" "x" {
${body}
}`).then(
        () => "",
        (e: Error) => e.message,
      );
    expect(await bad(`hosts = ["a.internal"]\n  host_key = "ssh-ed25519 not-base64!"`)).toContain("host_key must be a public key line");
    expect(await bad(`hosts = ["a.internal:99999"]`)).toContain('hosts: "a.internal:99999" is not HOST or HOST:PORT');
    expect(await bad(``)).toContain("missing hosts");
  });

  test("public key lines: the blob's own type must match", () => {
    expect(parsePublicKeyLine(ED)).toEqual({ type: "ssh-ed25519", blob: ED.split(" ")[1]! });
    expect(parsePublicKeyLine(ED.replace("ssh-ed25519", "ssh-rsa"))).toBeUndefined();
    expect(parsePublicKeyLine("ssh-ed25519 AAAA")).toBeUndefined();
    const key = parsePublicKeyLine(ED)!;
    expect(publicKeyOfBlob(Buffer.from(key.blob, "base64"))).toEqual(key);
    expect(fingerprintOf(key)).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  });

  test("upstream host key: pinned, first use, and a change refused", () => {
    const a = parsePublicKeyLine(ED)!;
    const b = { type: "ssh-ed25519", blob: Buffer.from("different").toString("base64") };
    expect(hostKeyVerdict(a, a, undefined).verdict).toBe("accept");
    expect(hostKeyVerdict(b, a, undefined)).toMatchObject({ verdict: "refuse", reason: expect.stringContaining("does not match host_key") });
    // A pin wins over what was recorded.
    expect(hostKeyVerdict(a, a, b).verdict).toBe("accept");
    expect(hostKeyVerdict(a, undefined, undefined).verdict).toBe("record");
    expect(hostKeyVerdict(a, undefined, a).verdict).toBe("accept");
    expect(hostKeyVerdict(b, undefined, a)).toMatchObject({ verdict: "refuse", reason: expect.stringContaining("host key changed") });
  });
});
