// make run's first start makes an admin with a one-time password when the
// database has no operator, and never again.
import { afterEach, beforeEach, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { openStateDb } from "../../../app/store/db.ts";
import { OperatorStore } from "../../../app/store/operators.ts";
import { queryAudit } from "../../../app/store/audit.ts";
import { ensureFirstOperator } from "../../../app/control/auth/first-operator.ts";
import { tempDir } from "../events/fixtures.ts";
import { HASHING } from "../api/harness.ts";

let t: ReturnType<typeof tempDir>;
let db: Database;
beforeEach(() => {
  t = tempDir();
  db = openStateDb(t.dir);
});
afterEach(() => {
  db.close();
  t.cleanup();
});

test("an empty database gets admin (admin) whose one-time password signs in, and must be changed", async () => {
  const made = await ensureFirstOperator(db, { hashing: HASHING });
  expect(made?.name).toBe("admin");
  const store = new OperatorStore(db, { hashing: HASHING });
  const op = await store.verify("admin", made!.password);
  expect(op?.role).toBe("admin");
  expect(op?.passwordTemporary).toBe(true);
  expect(await store.verify("admin", "wrong")).toBeUndefined();
  expect(JSON.stringify(queryAudit(db, { operator: "gateway:first-start", limit: 10 }))).toContain("gateway:first-start");
});

test("a second start, or a database with any operator, makes none and resets nothing", async () => {
  const made = await ensureFirstOperator(db, { hashing: HASHING });
  expect(await ensureFirstOperator(db, { hashing: HASHING })).toBeUndefined();
  const store = new OperatorStore(db, { hashing: HASHING });
  expect(await store.verify("admin", made!.password)).toBeDefined();
  expect(store.list()).toHaveLength(1);
});
