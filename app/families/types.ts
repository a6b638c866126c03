// A rule family: the CEL variable its conditions read, the facts behind it,
// and how a judged action is summarised for events and approvers. Every
// endpoint type belongs to one family (app/endpoints/registry.ts); every
// family is judged by the one engine (app/policy/engine.ts `judge`).
import type { ASTNode, Environment } from "@marcbachmann/cel-js";

export type FamilyName = "http" | "sql" | "k8s" | "clickhouse_http" | "ssh" | "exec";

export interface FamilyDefinition<Facts> {
  name: FamilyName;
  /** The CEL variable conditions of this family read (`http`, `sql`). */
  variable: string;
  /** This family's typed CEL environment (its variable and `device`). */
  environment: Environment;
  /** The value conditions see as `<variable>`; facts it cannot know throw when read, so rules reading them fail closed. */
  celValue(facts: Facts): object;
  /** Other families' variables this one's conditions also see (k8s over HTTP: `http`; clickhouse_http: `sql` beside `http`), with their values. */
  alsoSees?: { variables: readonly string[]; values(facts: Facts): Record<string, object> };
  /**
   * Whether a condition reads facts the handler gathers only on demand (the
   * http body; the parsed SQL statement). A handler skips that work when no
   * applicable rule needs it.
   */
  readsDeferred(ast: ASTNode): boolean;
  /** One line for the feed, approvers and the log: `GET api.github.com/user`, `delete public.users`. */
  summary(facts: Facts): string;
  /** The structured action recorded with the event (no secrets; bounded). */
  action(facts: Facts): Record<string, unknown>;
  /** Identical actions share it (approval `remember`, async retries). */
  fingerprint(facts: Facts): string;
}
