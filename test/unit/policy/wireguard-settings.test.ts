// gateway { wireguard {} }: defaults, and bad values named with their line.
import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { formatConfigError, loadPolicy } from "../../../app/policy/load.ts";
import { policyFrom, tempDir } from "./helpers.ts";

test("defaults", async () => {
  const p = await policyFrom(`schema_version = 1
gateway {
  state_dir = "s"
  wireguard {}
}
`);
  expect(p.gateway.wireguard).toEqual({ mode: "userspace", listen: "0.0.0.0:51820", subnetCidr: "10.77.0.0/16", interface: "wg0", tun: "cp0" });
});

test("every setting", async () => {
  const p = await policyFrom(`schema_version = 1
gateway {
  state_dir = "s"
  wireguard {
    mode = "kernel"
    listen = "0.0.0.0:51999"
    subnet_cidr = "10.9.0.0/24"
    endpoint = "gw.example.com:51999"
    interface = "wg7"
    tun = "cp7"
  }
}
`);
  expect(p.gateway.wireguard).toEqual({
    mode: "kernel",
    listen: "0.0.0.0:51999",
    subnetCidr: "10.9.0.0/24",
    endpoint: "gw.example.com:51999",
    interface: "wg7",
    tun: "cp7",
  });
});

test("bad values are reported with FILE:LINE", async () => {
  const dir = tempDir();
  const file = join(dir, "gw.hcl");
  writeFileSync(
    file,
    `schema_version = 1
gateway {
  state_dir = "s"
  wireguard {
    mode = "tunnel"
    listen = "51820"
    subnet_cidr = "10.1.2.3"
    colour = "blue"
  }
}
`,
  );
  const r = await loadPolicy(file, { env: {} });
  expect(r.ok).toBe(false);
  if (r.ok) return;
  const lines = r.errors.map(formatConfigError).map((l) => l.replace(dir + "/", ""));
  expect(lines.some((l) => l.startsWith("gw.hcl:5: ") && l.includes("mode"))).toBe(true);
  expect(lines.some((l) => l.startsWith("gw.hcl:6: ") && l.includes("listen must be host:port"))).toBe(true);
  expect(lines.some((l) => l.startsWith("gw.hcl:7: ") && l.includes("subnet_cidr"))).toBe(true);
  expect(lines.some((l) => l.startsWith("gw.hcl:8: ") && l.includes("colour"))).toBe(true);
});

test("subnet6_cidr: an IPv6 network with zero host bits, else FILE:LINE", async () => {
  const load = async (value: string) => {
    const dir = tempDir();
    const file = join(dir, "gw.hcl");
    writeFileSync(file, `schema_version = 1\ngateway {\n  state_dir = "s"\n  wireguard {\n    subnet6_cidr = "${value}"\n  }\n}\n`);
    const r = await loadPolicy(file, { env: {} });
    return { r, dir };
  };
  const good = await load("fd77:7a70::/64");
  expect(good.r.ok && good.r.policy.gateway.wireguard?.subnet6Cidr).toBe("fd77:7a70::/64");
  for (const bad of ["10.0.0.0/24", "fd77:7a70::1/64", "fd77::/124", "fd77::"]) {
    const { r, dir } = await load(bad);
    expect(r.ok).toBe(false);
    if (r.ok) continue;
    const lines = r.errors.map(formatConfigError).map((l) => l.replace(dir + "/", ""));
    expect(lines.some((l) => l.startsWith("gw.hcl:5: ") && l.includes("subnet6_cidr must be an IPv6 network"))).toBe(true);
  }
});

test("tun_offload: off unless set; true turns on the TUN's virtio header and offloads (kernel mode)", async () => {
  const dir = tempDir();
  const file = join(dir, "gw.hcl");
  writeFileSync(file, `schema_version = 1\ngateway {\n  state_dir = "s"\n  wireguard {\n    mode = "kernel"\n    tun_offload = true\n  }\n}\n`);
  const on = await loadPolicy(file, { env: {} });
  expect(on.ok && on.policy.gateway.wireguard?.tunOffload).toBe(true);
  writeFileSync(file, `schema_version = 1\ngateway {\n  state_dir = "s"\n  wireguard {\n    mode = "kernel"\n  }\n}\n`);
  const off = await loadPolicy(file, { env: {} });
  expect(off.ok && off.policy.gateway.wireguard?.tunOffload).toBeUndefined();
  writeFileSync(file, `schema_version = 1\ngateway {\n  state_dir = "s"\n  wireguard {\n    tun_offload = "yes"\n  }\n}\n`);
  const bad = await loadPolicy(file, { env: {} });
  expect(bad.ok).toBe(false);
  if (!bad.ok) expect(bad.errors.map(formatConfigError).join("\n")).toContain("gw.hcl:5: ");
});
