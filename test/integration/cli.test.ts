// The operator CLI as an operator meets it: `bun app/main.ts …` as a child
// process, each scenario in its own temp dir with a config whose state_dir
// points into it. Scenarios are independent, so they are started together
// (beforeAll) and each test checks its own; commands inside one scenario
// run in order. Exit codes: 0 ok, 1 drift / nothing to act on, 2 usage or
// config error.
import { beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../..");
const BUN = join(ROOT, "node_modules/.bin/bun");
const MAIN = join(ROOT, "app/main.ts");

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** A clean environment: no state-dir override and no CLAWPATROL_SECRET_* leaking in from the runner. */
function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("CLAWPATROL_")) env[k] = v;
  return env;
}

async function cli(args: string[], opts: { stdin?: string; cwd?: string } = {}): Promise<Run> {
  const proc = Bun.spawn([BUN, MAIN, ...args], {
    cwd: opts.cwd ?? ROOT,
    env: cleanEnv(),
    stdin: opts.stdin === undefined ? "ignore" : new TextEncoder().encode(opts.stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "clawpatrol-cli-"));
}

const POLICY = (stateDir: string) => `schema_version = 1

gateway {
  state_dir = "${stateDir}"
}

defaults {
  verdict = "allow"
  unknown_host = "passthrough"
}

endpoint "https" "github" {
  hosts      = ["api.github.com"]
  credential = github_token.gh
}

credential "github_token" "gh" {}

profile "default" {
  credentials = [github_token.gh]
}

profile "ci" {
  credentials = [github_token.gh]
}

rule "no-deletes" {
  endpoint  = https.github
  condition = "http.method == 'DELETE'"
  verdict   = "deny"
  reason    = "deleting needs a human"
}
`;

/** A temp dir with gateway.hcl (state under DIR/state); returns both paths. */
function scenario(): { dir: string; config: string; state: string } {
  const dir = tempDir();
  const state = join(dir, "state");
  const config = join(dir, "gateway.hcl");
  writeFileSync(config, POLICY(state));
  return { dir, config, state };
}

/** Every regular file under dir, recursively. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const s = statSync(p);
    if (s.isDirectory()) out.push(...filesUnder(p));
    else if (s.isFile()) out.push(p);
  }
  return out;
}

/** Files whose bytes contain the needle, in clear, hex or base64. */
function filesHolding(dir: string, needle: string): string[] {
  const forms = [Buffer.from(needle), Buffer.from(Buffer.from(needle).toString("hex")), Buffer.from(Buffer.from(needle).toString("base64"))];
  return filesUnder(dir).filter((f) => {
    const bytes = readFileSync(f);
    return forms.some((n) => bytes.includes(n));
  });
}

// ------------------------------------------------------------ scenarios

const BROKEN = `schema_version = 1

endpoint "https" "gh" {
  hosts  = ["api.github.com"]
  colour = "blue"
}

rule "r" {
  endpoint = https.nope
  verdict  = "deny"
}
`;

const FIXTURES_OK = [
  { name: "delete is denied", request: { method: "DELETE", url: "https://api.github.com/repos/o/r" }, expect: { verdict: "deny", rule: "no-deletes" } },
  { name: "get is allowed with the token", request: { method: "GET", url: "https://api.github.com/user" }, expect: { verdict: "allow", rule: null, credential: "github_token.gh" } },
  { name: "unknown host passes through", request: { url: "https://example.org/" }, expect: { verdict: "passthrough" } },
];
const FIXTURES_DRIFT = [
  FIXTURES_OK[0],
  { name: "expects get denied", request: { method: "GET", url: "https://api.github.com/user" }, expect: { verdict: "deny", rule: "no-deletes" } },
];

// A value with no chance of appearing anywhere by accident.
const SECRET = `ghp_${crypto.randomUUID().replaceAll("-", "")}Zq9`;

type Results = Record<string, Run | Run[]>;
let r: Results = {};
const paths = {
  broken: "",
  fixturesDir: "",
  secretState: "",
  devicesState: "",
};

beforeAll(async () => {
  const broken = tempDir();
  paths.broken = join(broken, "broken.hcl");
  writeFileSync(paths.broken, BROKEN);

  const fx = scenario();
  paths.fixturesDir = fx.dir;
  writeFileSync(join(fx.dir, "ok.json"), JSON.stringify(FIXTURES_OK));
  writeFileSync(join(fx.dir, "drift.json"), JSON.stringify(FIXTURES_DRIFT));

  const sec = scenario();
  paths.secretState = sec.state;
  const devs = scenario();
  paths.devicesState = devs.state;
  const ca = scenario();
  const badProfile = scenario();

  const inOrder = async (...steps: (() => Promise<Run>)[]) => {
    const out: Run[] = [];
    for (const s of steps) out.push(await s());
    return out;
  };

  const jobs: Record<string, Promise<Run | Run[]>> = {
    validateExample: cli(["validate", join(ROOT, "config/example.hcl")]),
    validateDefault: cli(["validate", join(ROOT, "config/default.hcl")]),
    validateBroken: cli(["validate", paths.broken]),
    fixturesOk: cli(["test", fx.config, join(fx.dir, "ok.json")]),
    fixturesDrift: cli(["test", fx.config, join(fx.dir, "drift.json")]),
    fixturesMissing: cli(["test", fx.config, join(fx.dir, "no-such-fixtures.json")]),
    unknownCommand: cli(["frobnicate", "--config", fx.config]),
    help: cli(["--help"]),
    badProfile: cli(["devices", "add", "laptop", "--profile", "nope", "--config", badProfile.config]),
    ca: inOrder(
      () => cli(["ca", "show", "--config", ca.config]),
      () => cli(["ca", "show", "--config", ca.config]),
      () => cli(["ca", "bundle", "--config", ca.config]),
    ),
    secret: inOrder(
      () => cli(["secret", "set", "gh", "--config", sec.config], { stdin: `${SECRET}\n` }),
      () => cli(["secret", "list", "--config", sec.config]),
    ),
    devices: inOrder(
      () => cli(["devices", "add", "laptop", "--profile", "ci", "--config", devs.config]),
      () => cli(["devices", "revoke", "laptop", "--config", devs.config]),
      () => cli(["devices", "list", "--config", devs.config]),
      () => cli(["devices", "revoke", "laptop", "--config", devs.config]),
    ),
  };
  const entries = await Promise.all(Object.entries(jobs).map(async ([k, p]) => [k, await p] as const));
  r = Object.fromEntries(entries);
}, 60_000);

const one = (k: string) => r[k] as Run;
const many = (k: string) => r[k] as Run[];

describe("validate", () => {
  test.each(["validateExample", "validateDefault"])("%s: exit 0 with a one-line summary on stdout", (k) => {
    const run = one(k);
    expect(run.stderr).toBe("");
    expect(run.stdout).toMatch(/: ok \(\d+ endpoints, \d+ credentials, \d+ profiles, \d+ rules\)\n$/);
    expect(run.code).toBe(0);
  });

  test("a broken config: exit 2, every error as FILE:LINE: message, then the count", () => {
    const run = one("validateBroken");
    expect(run.code).toBe(2);
    expect(run.stdout).toBe("");
    const lines = run.stderr.trimEnd().split("\n");
    expect(lines).toEqual([
      expect.stringMatching(new RegExp(`^${escape(paths.broken)}:5: .*unknown attribute "colour"`)),
      expect.stringMatching(new RegExp(`^${escape(paths.broken)}:9: .*unknown endpoint https\\.nope`)),
      "2 errors",
    ]);
  });
});

describe("test CONFIG FIXTURES", () => {
  test("all cases match: exit 0, a line per case and the tally", () => {
    const run = one("fixturesOk");
    expect(run.stdout.trimEnd()).toBe("ok    delete is denied\nok    get is allowed with the token\nok    unknown host passes through\n3 passed, 0 failed");
    expect(run.code).toBe(0);
  });

  test("drift: exit 1, the report shows expected vs got", () => {
    const run = one("fixturesDrift");
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("ok    delete is denied");
    expect(run.stderr).toContain("FAIL  expects get denied");
    expect(run.stderr).toContain('      expected: deny by rule "no-deletes"');
    expect(run.stderr).toContain("      got:      allow, no rule matched (default allow), credential github_token.gh");
    expect(run.stderr).toContain("1 passed, 1 failed");
  });

  test("unreadable fixtures: exit 2 naming the path", () => {
    const run = one("fixturesMissing");
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("no-such-fixtures.json: cannot read fixtures");
  });
});

describe("secret", () => {
  test("set reads stdin and never prints the value", () => {
    const [set] = many("secret");
    expect(set!.code).toBe(0);
    expect(set!.stderr).toContain('secret "gh" stored');
    expect(set!.stdout + set!.stderr).not.toContain(SECRET);
  });

  test("the value is not in any state-dir file in clear (nor hex, nor base64)", () => {
    expect(filesUnder(paths.secretState).length).toBeGreaterThan(0);
    expect(filesHolding(paths.secretState, SECRET)).toEqual([]);
  });

  test("list shows names only", () => {
    const [, list] = many("secret");
    expect(list!.code).toBe(0);
    expect(list!.stdout).toBe("gh\n");
    expect(list!.stdout + list!.stderr).not.toContain(SECRET);
  });
});

describe("devices", () => {
  test("add prints exactly one cpd_ token on stdout, and only there", () => {
    const [add] = many("devices");
    expect(add!.code).toBe(0);
    expect(add!.stdout).toMatch(/^cpd_[A-Za-z0-9_-]{16,}\n$/);
    const token = add!.stdout.trim();
    expect(add!.stderr).toContain('device "laptop" added');
    expect(add!.stderr).not.toContain(token);
    expect(filesHolding(paths.devicesState, token)).toEqual([]);
  });

  test("revoke an active device: exit 0; list shows it revoked, with its profile and no token", () => {
    const [add, revoke, list] = many("devices");
    expect(revoke!.code).toBe(0);
    expect(list!.code).toBe(0);
    expect(list!.stdout).toMatch(/^NAME +KIND +PROFILE .*\nlaptop +proxy +ci +- +revoked +never +\d{4}-\d\d-\d\d \d\d:\d\d\n$/);
    expect(list!.stdout).not.toContain(add!.stdout.trim());
  });

  test("revoke again: exit 1, nothing to revoke", () => {
    const [, , , again] = many("devices");
    expect(again!.code).toBe(1);
    expect(again!.stderr).toContain('no active device named "laptop"');
  });

  test("add with an unknown profile: exit 2, names the profile and the configured ones", () => {
    const run = one("badProfile");
    expect(run.code).toBe(2);
    expect(run.stdout).toBe("");
    expect(run.stderr).toContain('unknown profile "nope" (configured: default, ci)');
  });
});

describe("ca show", () => {
  test("prints one PEM certificate, the same twice", () => {
    const [a, b] = many("ca");
    expect(a!.code).toBe(0);
    expect(b!.code).toBe(0);
    expect(a!.stdout).toMatch(/^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n?$/);
    expect(b!.stdout).toBe(a!.stdout);
  });

  // `ca show >> /usr/local/share/ca-certificates/bundle.pem` must not glue
  // the next certificate's BEGIN line onto this one's END line.
  test("the PEM ends with a newline, so it can be appended to a trust bundle", () => {
    const [a] = many("ca");
    expect(a!.stdout).toEndWith("-----END CERTIFICATE-----\n");
  });

  test("openssl x509 parses it", () => {
    const [a] = many("ca");
    const out = Bun.spawnSync(["openssl", "x509", "-noout", "-subject"], { stdin: new TextEncoder().encode(a!.stdout) });
    expect(out.exitCode).toBe(0);
    expect(out.stdout.toString()).toMatch(/^subject=.+/);
  });
});

describe("ca bundle", () => {
  const certs = (pem: string) => pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g) ?? [];

  test("prints the system store's roots, then the gateway CA that `ca show` prints", () => {
    const [show, , bundle] = many("ca");
    expect(bundle!.code).toBe(0);
    const printed = certs(bundle!.stdout);
    expect(printed.join("")).toBe(bundle!.stdout);
    expect(printed.at(-1)).toBe(show!.stdout);
    const system = certs(readFileSync("/etc/ssl/certs/ca-certificates.crt", "utf8").replace(/\r/g, "").replace(/-----END CERTIFICATE-----\n?/g, "-----END CERTIFICATE-----\n"));
    expect(system.length).toBeGreaterThan(0);
    expect(printed.length).toBe(system.length + 1);
    expect(bundle!.stderr).toContain(`${system.length} system roots and the gateway CA`);
  });

  test("openssl verifies the gateway CA against the bundle", () => {
    const [show, , bundle] = many("ca");
    const dir = tempDir();
    writeFileSync(join(dir, "bundle.pem"), bundle!.stdout);
    writeFileSync(join(dir, "ca.pem"), show!.stdout);
    const out = Bun.spawnSync(["openssl", "verify", "-CAfile", join(dir, "bundle.pem"), join(dir, "ca.pem")]);
    expect(out.stdout.toString()).toContain(": OK");
  });
});

describe("usage", () => {
  test("an unknown command: exit 2, says which and where to look", () => {
    const run = one("unknownCommand");
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('unknown command "frobnicate"');
    expect(run.stderr).toContain("--help");
  });

  test("--help: exit 0 with the usage on stdout", () => {
    const run = one("help");
    expect(run.code).toBe(0);
    expect(run.stdout).toStartWith("usage: clawpatrol-gateway <command>");
    for (const cmd of ["validate", "test CONFIG FIXTURES", "ca show", "ca bundle", "secret set NAME", "devices add NAME --profile P"]) {
      expect(run.stdout).toContain(cmd);
    }
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
