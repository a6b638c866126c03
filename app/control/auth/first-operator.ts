// `make run`'s first start: with no operator in the state database, an admin
// named "admin" is made with a one-time password, printed once in the banner
// (as the appliance's firstboot does), so the dashboard can be signed in to.
// A database with any operator is left alone: a restart never resets a password.
import type { Database } from "bun:sqlite";
import { OperatorStore, type PasswordHashing } from "../../store/operators.ts";
import { writeAudit } from "../../store/audit.ts";

export const FIRST_OPERATOR = "admin";

export async function ensureFirstOperator(
  db: Database,
  opts: { now?: () => number; hashing?: PasswordHashing } = {},
): Promise<{ name: string; password: string } | undefined> {
  const now = opts.now ?? Date.now;
  const store = new OperatorStore(db, { now, ...(opts.hashing ? { hashing: opts.hashing } : {}) });
  if (store.list().length > 0) return undefined;
  const { password } = await store.add(FIRST_OPERATOR, "admin");
  writeAudit(db, { time: now(), operator: "gateway:first-start", action: "operator.add", target: FIRST_OPERATOR, source: "first-start", detail: { role: "admin" } });
  return { name: FIRST_OPERATOR, password };
}
