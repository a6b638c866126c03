// Per-run WireGuard peers (`clawpatrol run`): registry, expiry, HTTP routes.
export { DeviceRuns, SWEEP_MS, type DeviceRunsDeps, type RunPlane, type RunStatus } from "./service.ts";
export { deviceRunPublicRoutes, deviceRunControlRoutes, runJson } from "./routes.ts";
export { DEFAULT_RUN_BOUNDS, RUN_HANDSHAKE_GRACE_MS, RUN_IDLE_MS, initialLiveness, judge, observe, type Liveness, type RunBounds } from "./liveness.ts";
