// How an operator runs `clawpatrol-gateway` on this machine, for the commands
// the gateway prints (the `make run` banner, the join prompt's approve line).
// In a checkout the entry is not on PATH: print `./node_modules/.bin/bun
// app/main.ts`, which runs as printed from where the gateway was started.
import path from "node:path";

export interface CommandContext {
  /** process.argv: [runtime, script, ...args]. */
  argv: string[];
  cwd: string;
  /** Is `clawpatrol-gateway` on PATH? */
  onPath: boolean;
}

export function gatewayCommandFor(c: CommandContext): string {
  const script = c.argv[1] ?? "";
  // Installed (the appliance): the CLI finds /etc/clawpatrol's config by itself.
  // Anything else (a test runner, a compiled binary) has no command to show but the installed one.
  const fromCheckout = path.basename(script) === "main.ts" && path.basename(path.dirname(script)) === "app";
  if (c.onPath || !fromCheckout) return "clawpatrol-gateway";
  const root = path.dirname(path.dirname(script));
  const shown = (p: string) => {
    const rel = path.relative(c.cwd, p);
    return rel && !rel.startsWith("..") && !path.isAbsolute(rel) ? (rel.includes("/") ? rel : `./${rel}`) : p;
  };
  const bun = path.join(root, "node_modules", ".bin", "bun");
  const parts = [shown(bun).replace(/^(?!\.\/|\/)/, "./"), shown(script)];
  const config = configFlag(c.argv.slice(2));
  // The CLI's own default is the checkout's config/default.hcl; anything else must be named.
  if (config && path.resolve(c.cwd, config) !== path.join(root, "config", "default.hcl")) parts.push("--config", shell(path.resolve(c.cwd, config)));
  return parts.join(" ");
}

let cached: string | undefined;

/** The command for this process (computed once). */
export function gatewayCommand(): string {
  cached ??= gatewayCommandFor({ argv: process.argv, cwd: process.cwd(), onPath: Bun.which("clawpatrol-gateway") !== null });
  return cached;
}

function configFlag(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--config") return args[i + 1];
    if (a.startsWith("--config=")) return a.slice("--config=".length);
  }
  return undefined;
}

function shell(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`;
}
