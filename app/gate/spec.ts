// endpoint "exec" "NAME" {}
// The command gate's endpoint: rules for commands name it (`endpoint =
// exec.NAME`) as network rules name theirs, and a profile sees it or not
// like any endpoint. It claims no host and no port: commands reach it through
// the gate's verdict API (app/gate/routes.ts), never as a flow.
import type { EndpointSpec } from "../endpoints/spec.ts";

export const execSpec: EndpointSpec = {
  type: "exec",
  family: "exec",
  defaultPorts: [],
  claim: "address",
  serverSpeaksFirst: false,
  requiresVip: false,
  credentialTypes: [],
  attributes: [],
  build: () => ({ hosts: [], ports: [] }),
};
