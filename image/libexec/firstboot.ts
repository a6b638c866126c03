// clawpatrol-firstboot: runs once per appliance (marker in the state
// directory), before the gateway's first start. Creates what must be unique
// to this appliance and never ships in the image — the interception CA —
// and prints, exactly once, to the serial console and the journal, how to
// reach the appliance.
//
// Installed as /opt/clawpatrol/image/libexec/firstboot.ts (the repository layout).
// Still to come (see issue 6): the gateway's WireGuard key (kernel mode),
// the first operator with a one-time password and the dashboard URL (once
// operator accounts and the dashboard role exist), initial settings from a
// systemd credential or cloud-init user data.
import { createHash } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { defaultConfigPath } from "../../app/main.ts";
import { loadPolicy, formatConfigError } from "../../app/policy/load.ts";
import { loadOrCreateCA, CA_CERT_FILE } from "../../app/tls/ca.ts";

const MARKER = ".firstboot-done";

function fingerprint(pem: string): string {
  const b64 = pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, "").replace(/\s+/g, "");
  const hex = createHash("sha256").update(Buffer.from(b64, "base64")).digest("hex").toUpperCase();
  return hex.match(/../g)!.join(":");
}

function addresses(): string[] {
  const out: string[] = [];
  for (const [name, list] of Object.entries(os.networkInterfaces())) {
    for (const a of list ?? []) if (!a.internal && a.family === "IPv4") out.push(`${a.address} (${name})`);
  }
  return out;
}

async function main(): Promise<number> {
  const configPath = defaultConfigPath();
  const r = await loadPolicy(configPath);
  if (!r.ok) {
    // The gateway will refuse the same config and say why; do not mark done.
    for (const e of r.errors) console.error(formatConfigError(e));
    return 1;
  }
  const stateDir = r.policy.gateway.stateDir;
  const marker = path.join(stateDir, MARKER);
  if (existsSync(marker)) return 0;

  const ca = await loadOrCreateCA(stateDir);
  const proxy = r.policy.gateway.proxy;
  const ips = addresses();
  const listen = proxy?.listen ?? "(no proxy configured)";
  const lines = [
    "",
    "==================== clawpatrol appliance: first boot ====================",
    `  config:           ${configPath}`,
    `  state:            ${stateDir}`,
    `  CA certificate:   ${path.join(stateDir, CA_CERT_FILE)}   (devices must trust it)`,
    `  CA SHA-256:       ${fingerprint(ca.certPem)}`,
    `  proxy:            ${listen} (HTTP CONNECT and SOCKS5; ${r.policy.defaults.profile ? "clients without a token get the default profile" : "a device token is required"})`,
    `  addresses:        ${ips.length ? ips.join(", ") : "none yet (DHCP pending)"}`,
    "  add a device:     clawpatrol-gateway devices add NAME --profile default",
    "  show the CA:      clawpatrol-gateway ca show",
    "  dashboard:        not in this build yet",
    "===========================================================================",
    "",
  ];
  console.log(lines.join("\n"));
  writeFileSync(marker, `${new Date().toISOString()}\n`, { mode: 0o600 });
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    console.error(`clawpatrol-firstboot: ${e.message}`);
    process.exit(1);
  },
);
