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
