// `clawpatrol kubeconfig NAME`: a kubeconfig for the gateway's kubernetes
// endpoint NAME, so kubectl works unmodified inside `clawpatrol run`:
//
//   server  the endpoint's address (https://HOST:PORT, as the operator wrote it)
//   CA      the gateway's CA (kubectl talks TLS to the gateway, which
//           terminates it and dials the real API server)
//   token   the placeholder of the endpoint's credential (the gateway swaps
//           in the real token, or presents the client certificate and drops it)
//
// The endpoint is read from the device's manifest at
// https://clawpatrol.internal/manifest, which only answers inside the
// tunnel: outside a run, the command runs itself inside one.
import { readFileSync } from "node:fs";
import path from "node:path";
import type { Manifest } from "../app/endpoints/internal.ts";
import { run, selfArgv } from "./run.ts";
import { CA_FILE, pinnedFetch } from "./state.ts";

export class KubeconfigError extends Error {}

/** The kubeconfig for endpoint `name` (its name or its ref) of the manifest, as YAML. */
export function kubeconfigFor(manifest: Manifest, name: string, gatewayCaPem: string): string {
  const kube = manifest.endpoints.filter((e) => e.type === "kubernetes");
  const e = kube.find((x) => x.name === name || x.ref === name);
  if (!e) {
    const known = kube.map((x) => x.name).join(", ");
    throw new KubeconfigError(`no kubernetes endpoint "${name}" for this device (profile ${manifest.profile}); ${known ? `it sees: ${known}` : "it sees none"}`);
  }
  const host = e.hosts[0]!.includes(":") ? `[${e.hosts[0]}]` : e.hosts[0]!;
  const port = e.ports[0] ?? 443;
  const server = `https://${host}${port === 443 ? "" : `:${port}`}`;
  const token = manifest.credentials.find((c) => c.endpoints.includes(e.ref))?.placeholder ?? `clawpatrol-placeholder-${e.name}`;
  const id = `clawpatrol-${e.name}`;
  const ca = Buffer.from(gatewayCaPem).toString("base64");
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    `- name: ${id}`,
    "  cluster:",
    `    server: ${server}`,
    `    certificate-authority-data: ${ca}`,
    "users:",
    `- name: ${id}`,
    "  user:",
    `    token: ${token}`,
    "contexts:",
    `- name: ${id}`,
    "  context:",
    `    cluster: ${id}`,
    `    user: ${id}`,
    `current-context: ${id}`,
    "",
  ].join("\n");
}

const MANIFEST_URL = "https://clawpatrol.internal/manifest?format=json";

/** Prints the kubeconfig; outside a run, runs itself inside one (the manifest answers only in the tunnel). */
export async function kubeconfig(o: { stateDir: string; name: string; out: (text: string) => void; env?: Record<string, string | undefined> }): Promise<number> {
  const env = o.env ?? process.env;
  if (env.CLAWPATROL_RUN !== "1") return run({ stateDir: o.stateDir, argv: [...selfArgv(), "kubeconfig", o.name] });
  // Inside a run the state dir holds only the gateway's CA.
  const caPem = readFileSync(path.join(o.stateDir, CA_FILE), "utf8");
  let manifest: Manifest;
  try {
    const res = await pinnedFetch(caPem)(MANIFEST_URL, { headers: { Accept: "application/json" } });
    if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
    manifest = (await res.json()) as Manifest;
  } catch (e) {
    throw new KubeconfigError(`cannot read this device's manifest from ${MANIFEST_URL}: ${(e as Error).message}`);
  }
  o.out(kubeconfigFor(manifest, o.name, caPem));
  return 0;
}
