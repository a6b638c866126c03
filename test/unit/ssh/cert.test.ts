// The gateway's SSH CA: host certificates built here and read by OpenSSH's
// own ssh-keygen (which checks the CA's signature), the key exchange reply
// renamed for a certificate, the manifest's CA, and the known_hosts line
// `clawpatrol run` writes from it.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import ssh2 from "ssh2";
import { ED25519, ED25519_CERT, hostCertificate, readStrings, sshString } from "../../../app/endpoints/ssh/cert.ts";
import { fixKexReply } from "../../../app/endpoints/ssh/host-cert.ts";
import { hostCertFor } from "../../../app/endpoints/ssh/keys.ts";
import { buildManifest } from "../../../app/endpoints/internal.ts";
import { hostPatterns, knownHostsWithCa, sshTrustOf } from "../../../client/ssh-trust.ts";
import { policyFrom } from "../policy/helpers.ts";

const dir = mkdtempSync(path.join(tmpdir(), "clawpatrol-ssh-cert-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const pair = () => {
  const p = ssh2.utils.generateKeyPairSync("ed25519");
  return { privateKey: p.private, publicKey: p.public.trim().split(/\s+/).slice(0, 2).join(" ") };
};
const ca = pair();
const host = pair();

/** ssh-keygen's reading of a file: its stdout, or undefined when it refuses it. */
function keygen(args: string[], text: string): string | undefined {
  const file = path.join(dir, `k-${Math.random().toString(36).slice(2)}.pub`);
  writeFileSync(file, text);
  const r = Bun.spawnSync(["ssh-keygen", ...args, "-f", file], { stdout: "pipe", stderr: "pipe" });
  return r.exitCode === 0 ? r.stdout.toString() : undefined;
}

describe("host certificates", () => {
  const now = Date.UTC(2026, 0, 15, 12, 0, 0);
  const cert = hostCertFor(host, ca, "ssh.git", ["git.internal", "10.9.0.7"], now);
  const certText = `${ED25519_CERT} ${cert.toString("base64")}\n`;

  test("OpenSSH reads it as a host certificate of the endpoint's key for its hosts, signed by the CA", () => {
    const shown = keygen(["-L"], certText)!;
    expect(shown).toContain("ssh-ed25519-cert-v01@openssh.com host certificate");
    expect(shown).toContain('Key ID: "clawpatrol ssh.git"');
    expect(shown).toMatch(/Principals:\s+git\.internal\s+10\.9\.0\.7\s/);
    expect(shown).toContain("Valid: from 2026-01-14T12:00:00 to 2027-01-15T12:00:00");
    expect(shown).toContain("Critical Options: (none)");
    const caFingerprint = keygen(["-l"], `${ca.publicKey}\n`)!.split(" ")[1]!;
    const hostFingerprint = keygen(["-l"], `${host.publicKey}\n`)!.split(" ")[1]!;
    expect(shown).toContain(`Signing CA: ED25519 ${caFingerprint} (using ssh-ed25519)`);
    expect(shown).toContain(`Public key: ED25519-CERT ${hostFingerprint}`);
  });

  test("a certificate changed after signing is refused by OpenSSH (the signature covers it)", () => {
    const tampered = Buffer.from(cert);
    const at = tampered.indexOf(Buffer.from("git.internal"));
    tampered[at] = "h".charCodeAt(0);
    expect(keygen(["-L"], `${ED25519_CERT} ${tampered.toString("base64")}\n`)).toBeUndefined();
  });

  test("only ed25519 keys are certified", () => {
    const rsaLike = Buffer.concat([sshString("ssh-rsa"), sshString(Buffer.alloc(32))]);
    expect(() => hostCertificate({ hostKey: rsaLike, caKey: rsaLike, sign: () => new Uint8Array(64), principals: [], keyId: "", validAfter: 0, validBefore: 1 })).toThrow(
      /not an ssh-ed25519/,
    );
  });
});

describe("the key exchange reply for a certificate", () => {
  const cert = Buffer.from("pretend-certificate-blob");
  const reply = (k: Buffer, sigName: string, msg = 31) =>
    Buffer.concat([Buffer.from([msg]), sshString(k), sshString(Buffer.alloc(32, 7)), sshString(Buffer.concat([sshString(sigName), sshString(Buffer.alloc(64, 9))]))]);

  test("the signature is renamed ssh-ed25519; the rest is kept byte for byte", () => {
    const fixed = fixKexReply(reply(cert, ED25519_CERT), cert)!;
    expect(fixed.equals(reply(cert, ED25519))).toBe(true);
    // A group-exchange reply too.
    expect(fixKexReply(reply(cert, ED25519_CERT, 33), cert)!.equals(reply(cert, ED25519, 33))).toBe(true);
  });

  test("anything else is left alone: another message, another host key, a plain signature, a cut-off packet", () => {
    expect(fixKexReply(reply(cert, ED25519_CERT, 20), cert)).toBeUndefined();
    expect(fixKexReply(reply(Buffer.from("other"), ED25519_CERT), cert)).toBeUndefined();
    expect(fixKexReply(reply(cert, ED25519), cert)).toBeUndefined();
    const whole = reply(cert, ED25519_CERT);
    for (const n of [0, 1, 5, 40, whole.length - 1]) expect(fixKexReply(whole.subarray(0, n), cert)).toBeUndefined();
    expect(readStrings(Buffer.from([0, 0, 0, 9, 1]), 1)).toBeUndefined();
  });
});

describe("the CA in the manifest and in known_hosts", () => {
  const CA = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM9wwuJv0h+dUiOhvRrD0cFqJaM4tqP3HgyIh1JxIx3R";
  const OTHER = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAgquaExtQP8661V3o2XdcYEjXT42ysoRKq0mDnOMHRB";

  test("the manifest names the CA only for a device that sees an ssh endpoint", async () => {
    const policy = await policyFrom(`
schema_version = 1
endpoint "ssh" "git" {
  hosts = ["git.internal", "bastion.internal:2222"]
}
endpoint "https" "api" {
  hosts = ["api.example.com"]
}
profile "ops" {}
profile "web" {
  endpoints = [https.api]
}
`);
    let asked = 0;
    const sshCa = () => {
      asked++;
      return CA;
    };
    const ops = buildManifest(policy, { name: "a", profile: "ops" } as never, sshCa);
    expect(ops.sshCa).toBe(CA);
    expect(sshTrustOf(ops)).toEqual({ ca: CA, hosts: ["git.internal", "bastion.internal"] });
    const web = buildManifest(policy, { name: "b", profile: "web" } as never, sshCa);
    expect(web.sshCa).toBeUndefined();
    expect(sshTrustOf(web)).toBeUndefined();
    expect(asked).toBe(1);
    expect(sshTrustOf({ endpoints: [], sshCa: "ssh-ed25519 not base64!" })).toBeUndefined();
  });

  test("one @cert-authority line for the hosts, on port 22 and any other; replaced, never duplicated; other lines kept", () => {
    const existing = `github.com ssh-ed25519 AAAA\n@cert-authority *.corp ${OTHER} clawpatrol-ssh-ca\n`;
    const once = knownHostsWithCa(existing, `${CA} some comment`, ["git.internal", "10.9.0.7"]);
    expect(once).toBe(`${existing}@cert-authority git.internal,[git.internal]:*,10.9.0.7,[10.9.0.7]:* ${CA} clawpatrol-ssh-ca\n`);
    expect(knownHostsWithCa(once, CA, ["git.internal", "10.9.0.7"])).toBe(once);
    const changed = knownHostsWithCa(once, CA, ["Bastion.Internal"]);
    expect(changed).toBe(`${existing}@cert-authority bastion.internal,[bastion.internal]:* ${CA} clawpatrol-ssh-ca\n`);
    // No ssh endpoint any more: the line goes, the rest stays.
    expect(knownHostsWithCa(changed, CA, [])).toBe(existing);
    expect(knownHostsWithCa("", CA, [])).toBe("");
    // A host that cannot be a known_hosts pattern is left out.
    expect(hostPatterns(["ok.internal", "bad host", "x,y", "fe80::1"])).toEqual(["ok.internal", "[ok.internal]:*", "fe80::1", "[fe80::1]:*"]);
  });

  test("OpenSSH's ssh-keygen finds the line for the endpoint's host on any port", () => {
    const file = path.join(dir, "known_hosts");
    writeFileSync(file, knownHostsWithCa("", CA, ["git.internal"]));
    for (const h of ["git.internal", "[git.internal]:2222"]) {
      const r = Bun.spawnSync(["ssh-keygen", "-F", h, "-f", file], { stdout: "pipe" });
      expect(r.stdout.toString()).toContain(`@cert-authority`);
    }
    expect(Bun.spawnSync(["ssh-keygen", "-F", "other.internal", "-f", file], { stdout: "pipe" }).stdout.toString()).toBe("");
  });
});
