// The two root steps of clawpatrol-firstboot.service (see firstboot.ts).
// They run as root with only CAP_CHOWN (`!` skips only User=), inside the
// unit's sandbox, and touch only /etc/clawpatrol:
//   user-data     copy cloud-init user data meant for clawpatrol (cloud-init
//                 keeps it root-only) into the unit's private /tmp
//   apply-config  write the public_url step 2 handed over into the config
//                 file, only if the result still loads
// Both report problems and exit 0: settings never stop a first boot.
// Kept apart from firstboot.ts so that the user-data step loads almost nothing.
import { chmodSync, chownSync, existsSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { APPLY_FILE, HANDOFF_ENV, USER_DATA_FILE, applianceConfigPath, findUserData, parseSettings, readHandoff, setPublicUrl, writeHandoff } from "./settings.ts";

function copyUserData(handoff: string): void {
  const found = findUserData();
  if (found) writeHandoff(path.join(handoff, USER_DATA_FILE), found);
}

async function applyConfig(handoff: string, configPath: string): Promise<void> {
  const req = readHandoff(path.join(handoff, APPLY_FILE));
  if (!req) return;
  const source = typeof req.source === "string" ? req.source : "first boot";
  // Step 2 checked it; checked again here, in the step with the rights.
  const r = parseSettings(JSON.stringify({ public_url: req.public_url }), source);
  if (!r.ok || !r.settings.publicUrl) {
    console.error(`clawpatrol-firstboot: public_url not applied: ${r.ok ? "missing" : r.error}`);
    return;
  }
  const url = r.settings.publicUrl;
  const fail = (why: string) => console.error(`clawpatrol-firstboot: public_url ${url} not written to ${configPath}: ${why}; set it by hand`);
  if (!existsSync(configPath) || statSync(configPath).isDirectory()) return fail("not a single config file");
  const next = setPublicUrl(readFileSync(configPath, "utf8"), url, `set at first boot from ${source}`);
  if (next === undefined) return fail("no `gateway {` block");
  const tmp = path.join(path.dirname(configPath), `.${path.basename(configPath)}.firstboot`);
  try {
    writeFileSync(tmp, next);
    const was = statSync(configPath);
    chmodSync(tmp, was.mode & 0o777);
    // The owner stays (on the appliance the service user, whose dashboard edits the file).
    if (was.uid !== statSync(tmp).uid || was.gid !== statSync(tmp).gid) chownSync(tmp, was.uid, was.gid);
    // Loaded only here: the user-data step stays light.
    const { loadPolicy, formatConfigError } = await import("../../app/policy/load.ts");
    const loaded = await loadPolicy(tmp);
    if (!loaded.ok) return fail(loaded.errors.map(formatConfigError).join("; "));
    renameSync(tmp, configPath);
  } catch (e) {
    return fail((e as Error).message);
  } finally {
    rmSync(tmp, { force: true });
  }
  console.log(`clawpatrol-firstboot: public_url = "${url}" set in ${configPath} (from ${source})`);
}

async function run(argv: string[], env: Record<string, string | undefined>): Promise<void> {
  const handoff = env[HANDOFF_ENV];
  if (!handoff) return; // run by hand: nothing to hand over
  const [step, arg] = argv;
  if (step === "user-data") return copyUserData(handoff);
  if (step === "apply-config") return applyConfig(handoff, arg ?? applianceConfigPath());
  console.error(`clawpatrol-firstboot: unknown step ${JSON.stringify(step)} (user-data | apply-config)`);
}

run(process.argv.slice(2), process.env).then(
  () => process.exit(0),
  (e: Error) => {
    console.error(`clawpatrol-firstboot: ${e.message}`);
    process.exit(0);
  },
);
