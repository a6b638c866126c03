// `clawpatrol kubeconfig NAME`: the kubeconfig built from a device's manifest
// (the real buildManifest over a loaded policy), read back by the real kubectl.
import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { policyFrom, tempDir } from "../policy/helpers.ts";
import { buildManifest } from "../../../app/endpoints/internal.ts";
import { kubeconfigFor, KubeconfigError } from "../../../client/kubeconfig.ts";
import { parseArgs } from "../../../client/main.ts";

const CA = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";

test("server, the gateway's CA and the credential's placeholder; kubectl reads it as written", async () => {
  const policy = await policyFrom(`schema_version = 1
endpoint "kubernetes" "prod" {
  server = "https://k8s.internal:6443"
  credential = bearer_token.prod
}
endpoint "kubernetes" "plain" {
  server = "https://10.0.0.9"
}
credential "bearer_token" "prod" {}
profile "agents" {
  credentials = [bearer_token.prod]
}
`);
  const manifest = buildManifest(policy, { name: "laptop", profile: "agents" } as never);
  const yaml = kubeconfigFor(manifest, "prod", CA);
  const file = join(tempDir(), "kubeconfig");
  writeFileSync(file, yaml);
  const r = Bun.spawnSync(["kubectl", "config", "view", "--kubeconfig", file, "--raw", "-o", "json"], { stderr: "pipe" });
  expect(r.stderr.toString()).toBe("");
  const view = JSON.parse(r.stdout.toString());
  expect(view["current-context"]).toBe("clawpatrol-prod");
  expect(view.clusters[0].cluster.server).toBe("https://k8s.internal:6443");
  expect(Buffer.from(view.clusters[0].cluster["certificate-authority-data"], "base64").toString()).toBe(CA);
  expect(view.users[0].user.token).toBe("clawpatrol-placeholder-prod");
  // By ref too; an endpoint without a credential gets a placeholder of its own name; port 443 is implied.
  expect(kubeconfigFor(manifest, "kubernetes.plain", CA)).toContain("server: https://10.0.0.9\n");
  expect(kubeconfigFor(manifest, "kubernetes.plain", CA)).toContain("token: clawpatrol-placeholder-plain\n");
  expect(() => kubeconfigFor(manifest, "staging", CA)).toThrow(new KubeconfigError('no kubernetes endpoint "staging" for this device (profile agents); it sees: prod, plain'));
});

test("the command line", () => {
  expect(parseArgs(["kubeconfig", "prod"]).command).toEqual({ cmd: "kubeconfig", name: "prod" });
  expect(() => parseArgs(["kubeconfig"])).toThrow("usage: clawpatrol kubeconfig NAME");
});
