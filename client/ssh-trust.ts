// The gateway's SSH CA in the device's known_hosts: one
//   @cert-authority HOST,[HOST]:*,... ssh-ed25519 AAAA... clawpatrol-ssh-ca
// line for the hosts of the ssh endpoints the device's manifest lists, so
// OpenSSH accepts the host certificate the gateway presents for them
// (StrictHostKeyChecking=yes connects with no prompt). `join` writes it from
// the approval (the CA and the hosts the profile sees), `run` from the
// manifest it reads at start; the line is replaced when the hosts change, and
// a line of another gateway's CA is left alone.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Manifest } from "../app/endpoints/internal.ts";

/** The comment that marks the line as this program's. */
export const SSH_CA_COMMENT = "clawpatrol-ssh-ca";

/** The known_hosts host patterns for `hosts`: the name on port 22, and `[name]:*` for every other port. */
export function hostPatterns(hosts: string[]): string[] {
  const out: string[] = [];
  for (const h of hosts) {
    // known_hosts patterns are comma-separated and may not hold spaces; a host that cannot be written is skipped.
    if (!/^[A-Za-z0-9._:-]+$/.test(h)) continue;
    const name = h.toLowerCase();
    out.push(name, `[${name}]:*`);
  }
  return [...new Set(out)];
}

/** `existing` known_hosts text with this CA's line for `hosts` (none when `hosts` is empty). */
export function knownHostsWithCa(existing: string, caKey: string, hosts: string[]): string {
  const key = caKey.trim().split(/\s+/).slice(0, 2).join(" ");
  const ours = (line: string) => line.startsWith("@cert-authority ") && line.includes(` ${key}`) && line.trimEnd().endsWith(` ${SSH_CA_COMMENT}`);
  const kept = existing.split("\n").filter((l, i, all) => !ours(l) && !(i === all.length - 1 && l === ""));
  const patterns = hostPatterns(hosts);
  if (patterns.length > 0) kept.push(`@cert-authority ${patterns.join(",")} ${key} ${SSH_CA_COMMENT}`);
  return kept.length === 0 ? "" : kept.join("\n") + "\n";
}

/** The ssh endpoints' hosts and the CA from a manifest; undefined when it names no CA. */
export function sshTrustOf(m: Pick<Manifest, "endpoints" | "sshCa">): { ca: string; hosts: string[] } | undefined {
  if (typeof m.sshCa !== "string" || !/^ssh-ed25519 [A-Za-z0-9+/]+={0,2}$/.test(m.sshCa.trim())) return undefined;
  const hosts = (m.endpoints ?? []).filter((e) => e.type === "ssh").flatMap((e) => e.hosts);
  return { ca: m.sshCa.trim(), hosts };
}

/** Writes the CA's line into `file` (made 0600 in a 0700 directory if new); true when the file changed. */
export function trustSshCa(file: string, ca: string, hosts: string[]): boolean {
  const before = existsSync(file) ? readFileSync(file, "utf8") : "";
  const after = knownHostsWithCa(before, ca, hosts);
  if (after === before) return false;
  const dir = path.dirname(file);
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  // Written beside and renamed: an ssh reading it meanwhile sees the old file or the new one.
  const tmp = `${file}.clawpatrol-${process.pid}`;
  writeFileSync(tmp, after, { mode: 0o600 });
  renameSync(tmp, file);
  return true;
}

/** The user's known_hosts, as OpenSSH finds it by default. */
export function userKnownHosts(home: string): string {
  return path.join(home, ".ssh", "known_hosts");
}
