// clawpatrol-firstboot: runs once per appliance (marker in the state
// directory), before the gateway's first start. Creates what must be unique
// to this appliance and never ships in the image — the interception CA, the
// gateway's WireGuard key, the state database with a first operator — and
// prints, exactly once, to the serial console and the journal, how to reach
// the appliance and the first operator's one-time password.
//
// Installed as /opt/clawpatrol/image/libexec/firstboot.ts (the repository
// layout). clawpatrol-firstboot.service runs three steps, because the initial
// settings (settings.ts) cross a privilege line both ways:
//   1. firstboot-root.ts user-data (root, no capabilities): copy cloud-init
//      user data meant for clawpatrol (root-only readable) into the unit's
//      private /tmp.
//   2. this program (the service user): read the settings — the
//      `clawpatrol.settings` credential (readable only by the service user),
//      else that copy — make the CA, the WireGuard key, the first operator;
//      print the banner; leave the marker; hand a new public URL to step 3.
//   3. firstboot-root.ts apply-config (root, no capabilities): write that
//      public_url into /etc/clawpatrol/gateway.hcl (root's), checked first.
// Bad settings are reported in the banner and the defaults used: a typo
// never keeps the appliance from getting its CA. Nothing here imports
// app/main.ts: under the boot test's emulated CPU each module transpiled
// costs boot time.
import { existsSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadPolicy, formatConfigError } from "../../app/policy/load.ts";
import { loadOrCreateCA, CA_CERT_FILE } from "../../app/tls/ca.ts";
import { caFingerprint } from "../../app/tls/fingerprint.ts";
import type { GatewaySettings } from "../../app/policy/types.ts";
import { loadOrCreatePrivateKey } from "../../app/net/wireguard/keys.ts";
import { openStateDb } from "../../app/store/db.ts";
import { OperatorStore } from "../../app/store/operators.ts";
import { writeAudit } from "../../app/store/audit.ts";
import { APPLY_FILE, HANDOFF_ENV, USER_DATA_FILE, applianceConfigPath, findSettings, readHandoff, writeHandoff, type FoundSettings } from "./settings.ts";

const MARKER = ".firstboot-done";
const DEFAULT_OPERATOR = "admin";

function addresses(): { address: string; name: string }[] {
  const out: { address: string; name: string }[] = [];
  for (const [name, list] of Object.entries(os.networkInterfaces())) {
    for (const a of list ?? []) if (!a.internal && a.family === "IPv4") out.push({ address: a.address, name });
  }
  return out;
}

/**
 * Where an operator opens the dashboard: public_url, else the listen
 * address (for a wildcard, this machine's first address) with the scheme
 * dashboard_tls decides and the port when it is not the scheme's own.
 */
function dashboardUrl(g: GatewaySettings, publicUrl: string | undefined, firstAddress: string | undefined): string {
  if (publicUrl) return publicUrl;
  const scheme = g.dashboardTls ? "https" : "http";
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(g.dashboardListen);
  const host = m?.[1] ?? g.dashboardListen;
  const port = Number(m?.[2] ?? 0);
  const shown = host === "0.0.0.0" || host === "::" || host === "" ? (firstAddress ?? "THIS-MACHINE") : host;
  const bracketed = shown.includes(":") ? `[${shown}]` : shown;
  return `${scheme}://${bracketed}${port === (scheme === "https" ? 443 : 80) ? "" : `:${port}`}`;
}

interface FirstOperator {
  name: string;
  password?: string;
  /** Why none was made (one exists already: a restored database, or a run cut short). */
  note?: string;
}

/** The first operator, made only when the database has none: a re-run never resets a password. */
async function firstOperator(stateDir: string, name: string, source: string | undefined): Promise<FirstOperator> {
  const db = openStateDb(stateDir);
  try {
    const store = new OperatorStore(db);
    const existing = store.list();
    if (existing.length > 0) {
      return { name: existing.map((o) => o.name).join(", "), note: "already exist (none made; a new password: clawpatrol-gateway operator passwd NAME)" };
    }
    const { password } = await store.add(name, "admin");
    writeAudit(db, { time: Date.now(), operator: "firstboot", action: "operator.add", target: name, source: "firstboot", detail: { role: "admin", settings: source ?? "defaults" } });
    return { name, password };
  } finally {
    db.close();
  }
}

function settingsLine(found: FoundSettings): string {
  if (found.error) return `REJECTED, defaults used: ${found.error}`;
  if (!found.source) return "none (defaults; give a clawpatrol.settings credential or #clawpatrol-config user data)";
  return `from ${found.source}`;
}

/** Step 2 (the service user). */
async function main(configPath: string, env: Record<string, string | undefined>): Promise<number> {
  const handoff = env[HANDOFF_ENV];
  const r = await loadPolicy(configPath);
  if (!r.ok) {
    // The gateway will refuse the same config and say why; do not mark done.
    for (const e of r.errors) console.error(formatConfigError(e));
    return 1;
  }
  const stateDir = r.policy.gateway.stateDir;
  const marker = path.join(stateDir, MARKER);
  if (existsSync(marker)) return 0;

  const userData = handoff ? readHandoff(path.join(handoff, USER_DATA_FILE)) : undefined;
  const found = findSettings({
    ...(env.CREDENTIALS_DIRECTORY ? { credentialsDir: env.CREDENTIALS_DIRECTORY } : {}),
    ...(typeof userData?.source === "string" && typeof userData.text === "string" ? { userData: { source: userData.source, text: userData.text } } : {}),
  });
  if (found.error) console.error(`clawpatrol-firstboot: ${found.error}`);

  const ca = await loadOrCreateCA(stateDir);
  const wgSettings = r.policy.gateway.wireguard;
  const wg = wgSettings ? loadOrCreatePrivateKey(stateDir) : undefined;
  const op = await firstOperator(stateDir, found.settings.operator ?? DEFAULT_OPERATOR, found.source);

  const publicUrl = found.settings.publicUrl ?? r.policy.gateway.publicUrl;
  if (handoff && found.settings.publicUrl && found.settings.publicUrl !== r.policy.gateway.publicUrl) {
    writeHandoff(path.join(handoff, APPLY_FILE), { public_url: found.settings.publicUrl, source: found.source });
  }
  const proxy = r.policy.gateway.proxy;
  const ips = addresses();
  const dashboard = dashboardUrl(r.policy.gateway, publicUrl, ips[0]?.address);
  const loopbackOnly = !publicUrl && /^(127\.|\[?::1\]?:|localhost:)/.test(r.policy.gateway.dashboardListen);
  const fp = caFingerprint(ca.certPem);
  const pinned = r.policy.gateway.dashboardTls?.kind === "mint_from_ca" && dashboard.startsWith("https:");
  const listen = proxy?.listen ?? "(no proxy configured)";
  const lines = [
    "",
    "==================== clawpatrol appliance: first boot ====================",
    `  config:           ${configPath}`,
    `  settings:         ${settingsLine(found)}`,
    `  state:            ${stateDir}`,
    `  dashboard:        ${dashboard}/${loopbackOnly ? "   (loopback: set public_url, or reach it through an SSH tunnel)" : ""}`,
    ...(pinned ? ["                    (its certificate is signed by this appliance's CA: check the CA SHA-256 below)"] : []),
    ...(op.password
      ? [`  first operator:   ${op.name} (admin)`, `  one-time password: ${op.password}   (log in at the dashboard and change it)`]
      : [`  operators:        ${op.name} ${op.note ?? ""}`]),
    `  CA certificate:   ${path.join(stateDir, CA_CERT_FILE)}   (devices must trust it)`,
    `  CA SHA-256:       ${fp}`,
    ...(wgSettings && wg
      ? [
          `  wireguard:        ${wgSettings.interface} (${wgSettings.mode}) on ${wgSettings.listen}, devices in ${wgSettings.subnetCidr}`,
          `  wireguard key:    ${wg.publicKey}`,
          `  endpoint:         ${wgSettings.endpoint ?? "not set: devices are told the host of public_url, else the one they join through (port 51820)"}`,
          `  public API:       ${dashboard} (onboarding, /install.sh, /download/)`,
          `  enroll a device:  clawpatrol join ${dashboard}${pinned ? ` --ca-sha256 ${fp}` : ""}`,
          "                    (install line: the dashboard's Devices page), then approve the code there",
          "                    or: clawpatrol-gateway devices approve CODE --profile P",
        ]
      : []),
    `  proxy:            ${listen} (HTTP CONNECT and SOCKS5; ${r.policy.defaults.profile ? "clients without a token get the default profile" : "a device token is required"})`,
    `  addresses:        ${ips.length ? ips.map((a) => `${a.address} (${a.name})`).join(", ") : "none yet (DHCP pending)"}`,
    "  proxy client:     clawpatrol-gateway devices add NAME --profile default  (prints its token)",
    "  show the CA:      clawpatrol-gateway ca show",
    "===========================================================================",
    "",
  ];
  console.log(lines.join("\n"));
  writeFileSync(marker, `${new Date().toISOString()}\n`, { mode: 0o600 });
  return 0;
}

// A config argument: for trying it off the appliance.
main(process.argv[2] ?? applianceConfigPath(), process.env).then(
  (code) => process.exit(code),
  (e: Error) => {
    console.error(`clawpatrol-firstboot: ${e.message}`);
    process.exit(1);
  },
);
