// The endpoint types this gateway knows: one line each. A type's folder
// declares everything about it in its spec (app/endpoints/spec.ts).
import type { EndpointType } from "../policy/types.ts";
import type { EndpointSpec } from "./spec.ts";
import { httpsSpec } from "./https/spec.ts";
import { postgresSpec } from "./postgres/spec.ts";
import { kubernetesSpec } from "./kubernetes/spec.ts";
import { clickhouseNativeSpec } from "./clickhouse_native/spec.ts";
import { clickhouseHttpsSpec } from "./clickhouse_https/spec.ts";
import { sshSpec } from "./ssh/spec.ts";
import { execSpec } from "../gate/spec.ts";

export const ENDPOINT_SPECS: Readonly<Record<EndpointType, EndpointSpec>> = {
  https: httpsSpec,
  postgres: postgresSpec,
  kubernetes: kubernetesSpec,
  clickhouse_native: clickhouseNativeSpec,
  clickhouse_https: clickhouseHttpsSpec,
  ssh: sshSpec,
  exec: execSpec,
};

export function specOf(type: EndpointType): EndpointSpec {
  return ENDPOINT_SPECS[type];
}
