// The family registry: one line per family. Endpoint types name their family
// (app/endpoints/registry.ts); the rule engine compiles and judges through it.
import { httpFamily } from "./http.ts";
import { sqlFamily } from "./sql/family.ts";
import { execFamily } from "./exec.ts";
import type { FamilyDefinition, FamilyName } from "./types.ts";

export type { FamilyDefinition, FamilyName } from "./types.ts";

// Facts differ per family; the engine only passes them through, so the registry holds them untyped.
export const FAMILIES: Record<FamilyName, FamilyDefinition<never>> = {
  http: httpFamily as FamilyDefinition<never>,
  sql: sqlFamily as FamilyDefinition<never>,
  exec: execFamily as FamilyDefinition<never>,
};

export function familyOf(name: FamilyName): FamilyDefinition<unknown> {
  return FAMILIES[name] as FamilyDefinition<unknown>;
}

/** The CEL variables of every family, for "this condition reads another family" errors. */
export const FAMILY_VARIABLES: ReadonlyMap<string, FamilyName> = new Map(Object.values(FAMILIES).map((f) => [f.variable, f.name]));
