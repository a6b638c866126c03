// The facts a recorded action of the ssh and exec families still has, for
// replay: what the family's `action()` kept (app/families/ssh.ts, exec.ts).
// Environment values were never kept (they may be secrets), only their
// names, which come back with empty values; ssh's stdin was never kept, so a
// rule reading it fails closed, in both configs alike.
import type { SshFacts, SshVerb } from "../families/ssh.ts";
import type { ExecFacts } from "../families/exec.ts";

const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []);
const text = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
const namesOnly = (v: unknown): Record<string, string> => Object.fromEntries(strings(v).map((k) => [k, ""]));

export function sshFactsFromAction(a: Record<string, unknown>, host: string): SshFacts | undefined {
  const verb = text(a.verb);
  if (verb === undefined) return undefined;
  const facts: SshFacts = { verb: verb as SshVerb, host: text(a.host) ?? host, user: text(a.user) ?? "", env: namesOnly(a.env), stdinUnknown: "stdin is not recorded" };
  const command = text(a.command);
  if (command !== undefined) facts.command = command;
  const subsystem = text(a.subsystem);
  if (subsystem !== undefined) facts.subsystem = subsystem;
  const forwardHost = text(a.forward_host);
  if (forwardHost !== undefined) {
    facts.forwardHost = forwardHost;
    facts.forwardPort = typeof a.forward_port === "number" ? a.forward_port : 0;
  }
  return facts;
}

export function execFactsFromAction(a: Record<string, unknown>): ExecFacts | undefined {
  const command = text(a.command);
  if (command === undefined) return undefined;
  return {
    command,
    path: text(a.path) ?? "",
    argv: strings(a.argv),
    cwd: text(a.cwd) ?? "",
    env: namesOnly(a.env),
    paths: strings(a.paths),
    tty: a.tty === true,
    uid: typeof a.uid === "number" ? a.uid : -1,
  };
}
