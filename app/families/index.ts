// The family registry: one line per family. Endpoint types name their family
// (app/endpoints/registry.ts); the rule engine compiles and judges through it.
import { httpFamily } from "./http.ts";
import { k8sFamily } from "./k8s.ts";
import { sqlFamily } from "./sql/family.ts";
import { clickhouseHttpFamily } from "./clickhouse_http.ts";
import { sshFamily } from "./ssh.ts";
import { execFamily } from "./exec.ts";
import type { FamilyDefinition, FamilyName } from "./types.ts";

export type { FamilyDefinition, FamilyName } from "./types.ts";

// Facts differ per family; the engine only passes them through, so the registry holds them untyped.
export const FAMILIES: Record<FamilyName, FamilyDefinition<never>> = {
  http: httpFamily as FamilyDefinition<never>,
  sql: sqlFamily as FamilyDefinition<never>,
  k8s: k8sFamily as FamilyDefinition<never>,
  clickhouse_http: clickhouseHttpFamily as FamilyDefinition<never>,
  ssh: sshFamily as FamilyDefinition<never>,
  exec: execFamily as FamilyDefinition<never>,
};

export function familyOf(name: FamilyName): FamilyDefinition<unknown> {
  return FAMILIES[name] as FamilyDefinition<unknown>;
}

/**
 * The CEL variables of every family, for "this condition reads another
 * family" errors: each variable's first owner (a family over another one,
 * such as clickhouse_http over http, names that family's variable too).
 */
export const FAMILY_VARIABLES: ReadonlyMap<string, FamilyName> = (() => {
  const owners = new Map<string, FamilyName>();
  for (const f of Object.values(FAMILIES)) if (!owners.has(f.variable)) owners.set(f.variable, f.name);
  return owners;
})();
