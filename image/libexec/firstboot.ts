// clawpatrol-firstboot: runs once per appliance (marker in the state
// directory), before the gateway's first start. Creates what must be unique
// to this appliance and never ships in the image — the interception CA —
// and prints, exactly once, to the serial console and the journal, how to
// reach the appliance.
//
// Installed as /opt/clawpatrol/image/libexec/firstboot.ts (the repository layout).
// Also the gateway's WireGuard key (wg.key, the one kernel mode keys wg0
// with), so its public key is in the banner.
// Still to come (see issue 6): the first operator with a one-time password and the dashboard URL (once
// operator accounts and the dashboard role exist), initial settings from a
// systemd credential or cloud-init user data.
import { createHash } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { defaultConfigPath } from "../../app/main.ts";
import { loadPolicy, formatConfigError } from "../../app/policy/load.ts";
import { loadOrCreateCA, CA_CERT_FILE } from "../../app/tls/ca.ts";
import { loadOrCreatePrivateKey } from "../../app/net/wireguard/keys.ts";

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
  const configPath = process.argv[2] ?? defaultConfigPath(); // an argument: for trying it off the appliance
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
  const wgSettings = r.policy.gateway.wireguard;
  const wg = wgSettings ? loadOrCreatePrivateKey(stateDir) : undefined;
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
    ...(wgSettings && wg
      ? [
          `  wireguard:        ${wgSettings.interface} (${wgSettings.mode}) on ${wgSettings.listen}, devices in ${wgSettings.subnetCidr}`,
          `  wireguard key:    ${wg.publicKey}`,
          `  endpoint:         ${wgSettings.endpoint ?? "not set: set gateway.wireguard.endpoint (or public_url) to this appliance's public address"}`,
          `  public API:       http://${r.policy.gateway.dashboardListen} (onboarding, /install.sh, /download/)`,
          "  enroll a device:  clawpatrol join URL on the device, then clawpatrol-gateway devices approve CODE --profile P",
        ]
      : []),
    `  proxy:            ${listen} (HTTP CONNECT and SOCKS5; ${r.policy.defaults.profile ? "clients without a token get the default profile" : "a device token is required"})`,
    `  addresses:        ${ips.length ? ips.join(", ") : "none yet (DHCP pending)"}`,
    "  proxy client:     clawpatrol-gateway devices add NAME --profile default  (prints its token)",
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
