// The command gate's kill switch in the state database (migration 11): an
// engagement is written when it is turned on and deleted when released, so
// a gateway restart (or a crash) keeps the device stopped. Few rows, rare
// writes: each change is written at once.
import type { Database } from "bun:sqlite";
import type { Engagement } from "../gate/kill.ts";

export interface KillStore {
  load(): Engagement[];
  save(e: Engagement): void;
  remove(scope: string): void;
}

interface Row {
  scope: string;
  operator: string;
  reason: string;
  since: number;
}

export function sqliteKillStore(db: Database): KillStore {
  return {
    load: () =>
      (db.query("SELECT scope, operator, reason, since FROM gate_kills ORDER BY since").all() as Row[]).map((r) => ({
        scope: r.scope,
        operator: r.operator,
        reason: r.reason,
        since: r.since,
      })),
    save: (e) => {
      db.run("INSERT OR REPLACE INTO gate_kills (scope, operator, reason, since) VALUES (?, ?, ?, ?)", [e.scope, e.operator, e.reason, e.since]);
    },
    remove: (scope) => {
      db.run("DELETE FROM gate_kills WHERE scope = ?", [scope]);
    },
  };
}
