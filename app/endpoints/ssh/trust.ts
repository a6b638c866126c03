// What a device needs to trust the gateway's SSH host certificates without a
// prompt: the gateway SSH CA's public key and the ssh endpoint hosts its
// profile sees (the same endpoints its manifest lists). Given to `clawpatrol
// join` in the onboarding answer; `run` reads the same from the manifest.
import type { Database } from "bun:sqlite";
import type { Policy } from "../../policy/types.ts";
import { buildManifest } from "../internal.ts";

export interface SshTrust {
  /** `ssh-ed25519 AAAA...` of the gateway's SSH CA. */
  public_key: string;
  hosts: string[];
}

/** The CA and hosts for `profile`; undefined when the profile sees no ssh endpoint (the CA is then not made). */
export async function sshTrustForProfile(policy: Policy, profile: string, state: { db: Database; stateDir: string }, now: number): Promise<SshTrust | undefined> {
  const visible = buildManifest(policy, { name: "", profile }).endpoints;
  const hosts = [...new Set(visible.filter((e) => e.type === "ssh").flatMap((e) => e.hosts))];
  if (hosts.length === 0) return undefined;
  // The CA lives with the ssh endpoint's keys (and ssh2): loaded only when needed.
  const { gatewaySshCa } = await import("./keys.ts");
  return { public_key: gatewaySshCa(state.db, state.stateDir, now).publicKey, hosts };
}
