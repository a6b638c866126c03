// `clawpatrol-gateway operator …`: operator accounts, written straight into
// the state database (shared with the running gateway, WAL; a change takes
// effect on the account's next request). Secrets (a generated password, a
// token) are printed once, alone on standard output; everything else goes
// to standard error. Each change is audited as `cli:<user>`.
import type { Database } from "bun:sqlite";
import { OperatorError, OperatorStore, ROLES, isRole, type PasswordHashing, type Role } from "../../store/operators.ts";
import { writeAudit } from "../../store/audit.ts";
import { formatTable, isoMinute } from "../cli.ts";

export const OPERATOR_USAGE = `  operator add NAME --role admin|approver|viewer   create an account; prints a one-time password once
  operator list                                    accounts, roles, tokens
  operator remove NAME                             delete an account (its sessions and tokens end)
  operator passwd NAME                             a new one-time password (its sessions end)
  operator role NAME admin|approver|viewer
  operator disable NAME | operator enable NAME
  operator token add NAME TOKEN-NAME --role R      an API token for NAME; printed once
  operator token remove NAME TOKEN-NAME`;

export class OperatorUsage extends Error {}

export interface OperatorCliIo {
  db: Database;
  /** Who acts, for the audit trail (`cli:<user>`). */
  actor: string;
  out(line: string): void;
  err(line: string): void;
  now?: () => number;
  hashing?: PasswordHashing;
}

/** Runs one `operator` command; returns the exit code. Throws OperatorUsage on bad arguments. */
export async function operatorCommand(rest: string[], flags: Map<string, string>, io: OperatorCliIo): Promise<number> {
  const now = io.now ?? Date.now;
  const store = new OperatorStore(io.db, { now, ...(io.hashing ? { hashing: io.hashing } : {}) });
  const record = (action: string, target: string, detail?: Record<string, unknown>) =>
    writeAudit(io.db, { time: now(), operator: io.actor, action, target, source: "cli", ...(detail ? { detail } : {}) });
  const role = (v: string | undefined): Role => {
    if (!isRole(v)) throw new OperatorUsage(`--role must be one of ${ROLES.join(", ")}`);
    return v;
  };
  const [sub, name, arg] = rest;
  try {
    switch (sub) {
      case "add": {
        if (!name) throw new OperatorUsage("operator add NAME --role admin|approver|viewer");
        const r = role(flags.get("role") ?? arg);
        const { password } = await store.add(name, r);
        record("operator.add", name, { role: r });
        io.err(`operator "${name}" (${r}) added. Its one-time password (shown once; change it after logging in):`);
        io.out(password);
        return 0;
      }
      case "list": {
        const ops = store.list();
        if (ops.length === 0) {
          io.err("no operators; add one with: clawpatrol-gateway operator add NAME --role admin");
          return 0;
        }
        const tokens = store.listTokens();
        io.out(
          formatTable(
            ["NAME", "ROLE", "STATE", "TOKENS", "CREATED"],
            ops.map((o) => [
              o.name,
              o.role,
              o.disabled ? "disabled" : o.passwordTemporary ? "one-time password" : "active",
              tokens.filter((t) => t.operator === o.name).map((t) => `${t.name}(${t.role})`).join(",") || "-",
              isoMinute(o.createdAt),
            ]),
          ),
        );
        return 0;
      }
      case "remove": {
        if (!name) throw new OperatorUsage("operator remove NAME");
        if (!store.remove(name)) return fail(io, `no operator named "${name}"`);
        record("operator.remove", name);
        io.err(`operator "${name}" removed`);
        return 0;
      }
      case "passwd": {
        if (!name) throw new OperatorUsage("operator passwd NAME");
        const password = await store.resetPassword(name);
        record("operator.passwd", name);
        io.err(`new one-time password for "${name}" (shown once; its sessions have ended):`);
        io.out(password);
        return 0;
      }
      case "role": {
        if (!name) throw new OperatorUsage("operator role NAME admin|approver|viewer");
        const r = role(arg ?? flags.get("role"));
        if (!store.setRole(name, r)) return fail(io, `no operator named "${name}"`);
        record("operator.role", name, { role: r });
        io.err(`"${name}" is now ${r}`);
        return 0;
      }
      case "disable":
      case "enable": {
        if (!name) throw new OperatorUsage(`operator ${sub} NAME`);
        if (!store.setDisabled(name, sub === "disable")) return fail(io, `no operator named "${name}"`);
        record(`operator.${sub}`, name);
        io.err(`"${name}" ${sub}d`);
        return 0;
      }
      case "token": {
        const [, action, opName, tokenName] = rest;
        if (action === "add" && opName) {
          const op = store.get(opName);
          if (!op) return fail(io, `no operator named "${opName}"`);
          const r = flags.has("role") ? role(flags.get("role")) : op.role;
          const tname = tokenName ?? flags.get("name") ?? `cli-${now()}`;
          const { token } = store.createToken(opName, tname, r);
          record("token.create", opName, { token: tname, role: r });
          io.err(`API token "${tname}" for "${opName}" (${r}); send it as "Authorization: Bearer …" (shown once):`);
          io.out(token);
          return 0;
        }
        if (action === "remove" && opName && tokenName) {
          if (!store.removeToken(opName, tokenName)) return fail(io, `"${opName}" has no token named "${tokenName}"`);
          record("token.revoke", opName, { token: tokenName });
          io.err(`token "${tokenName}" of "${opName}" removed`);
          return 0;
        }
        throw new OperatorUsage("operator token add NAME [TOKEN-NAME] --role R | operator token remove NAME TOKEN-NAME");
      }
      default:
        throw new OperatorUsage(`operator add|list|remove|passwd|role|disable|enable|token\n${OPERATOR_USAGE}`);
    }
  } catch (e) {
    if (e instanceof OperatorError) return fail(io, e.message);
    throw e;
  }
}

function fail(io: OperatorCliIo, message: string): number {
  io.err(`clawpatrol-gateway: ${message}`);
  return 1;
}
