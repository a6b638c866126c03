// Onboarding (the device-code flow) and the device registry's API.
export {
  OnboardService,
  RateLimited,
  systemClock,
  type ApprovedResponse,
  type OnboardClock,
  type OnboardDeps,
  type OnboardHooks,
  type OnboardSettings,
  type OnboardState,
  type PendingRequest,
  type PollResponse,
  type StartResponse,
} from "./service.ts";
export { onboardPublicRoutes, onboardControlRoutes, deviceJson, MAX_PUBLIC_BODY, type PublicRouteOptions } from "./routes.ts";
export { formatUserCode, normalizeUserCode, validWireguardPublicKey, USER_CODE_ALPHABET } from "./codes.ts";
export { TokenBuckets, type RateLimit } from "./ratelimit.ts";
