import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadPolicy, formatConfigError } from "../../../app/policy/load.ts";
import { vipHostnames } from "../../../app/dns/vip-hosts.ts";
import { DEFAULT_DNS_LISTEN, DEFAULT_VIP_RANGE } from "../../../app/dns/config.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "clawpatrol-dnscfg-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function load(gatewayBody: string, rest = "") {
  const file = path.join(dir, `${Math.random().toString(36).slice(2)}.hcl`);
  writeFileSync(file, `schema_version = 1\ngateway {\n  state_dir = "state"\n${gatewayBody}\n}\n${rest}`);
  return { file, r: await loadPolicy(file, { env: {} }) };
}

test("defaults, and hostnames normalised (lower case, no trailing dot, no duplicates)", async () => {
  const { r } = await load(`  dns {\n    vip_hosts = ["DB.Example.com.", "db.example.com", "ssh.corp"]\n  }`);
  if (!r.ok) throw new Error(r.errors.map(formatConfigError).join("\n"));
  expect(r.policy.gateway.dns).toEqual({ listen: DEFAULT_DNS_LISTEN, vipRange: DEFAULT_VIP_RANGE, vipHosts: ["db.example.com", "ssh.corp"] });
});

test("no dns block: no responder, no VIPs", async () => {
  const { r } = await load("");
  if (!r.ok) throw new Error("expected ok");
  expect(r.policy.gateway.dns).toBeUndefined();
  expect(vipHostnames(r.policy, () => true)).toEqual([]);
});

test("errors carry FILE:LINE of the attribute", async () => {
  const { file, r } = await load(
    `  dns {\n    listen = "localhost:53"\n    upstream = "8.8.8.8"\n    vip_range = "100.80.0.0/31"\n    vip_hosts = ["*.example.com"]\n    color = "blue"\n  }`,
  );
  expect(r.ok).toBe(false);
  if (r.ok) return;
  const lines = r.errors.map(formatConfigError);
  expect(lines).toContain(`${file}:5: gateway.dns: listen must be ip:port (an IP literal, e.g. "127.0.0.1:53"), not "localhost:53"`);
  expect(lines.some((l) => l.startsWith(`${file}:6: gateway.dns: upstream must be ip:port`))).toBe(true);
  expect(lines.some((l) => l.startsWith(`${file}:7: gateway.dns: vip_range must be`))).toBe(true);
  expect(lines.some((l) => l.startsWith(`${file}:8: gateway.dns: vip_hosts: "*.example.com" is not a hostname`))).toBe(true);
  expect(lines.some((l) => l.startsWith(`${file}:9:`) && l.includes("color"))).toBe(true);
});

test("endpoint types that require a VIP contribute their exact hosts (none does yet: https does not)", async () => {
  const { r } = await load(
    `  dns {\n    vip_hosts = ["op.example"]\n  }`,
    `endpoint "https" "db" {\n  hosts = ["db.example.com", "*.wild.example.com", "10.1.2.3"]\n}\n`,
  );
  if (!r.ok) throw new Error(r.errors.map(formatConfigError).join("\n"));
  expect(vipHostnames(r.policy)).toEqual(["op.example"]);
  expect(vipHostnames(r.policy, (t) => t === "https")).toEqual(["db.example.com", "op.example"]);
});
