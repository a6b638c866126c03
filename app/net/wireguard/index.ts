/** Userspace WireGuard: the sans-IO engine and its pieces. */
export { WireGuardDevice, paddedLength } from "./device.ts";
export { endpointBytes } from "./peer.ts";
export type { DeviceOptions, DropReason, Endpoint, Output, PeerConfig, PeerEventName, PeerStatus } from "./device.ts";
export { NodeNobleCrypto, getDefaultCrypto, setDefaultCrypto, toBase64, fromBase64Key } from "./crypto.ts";
export type { WgAead, WgCrypto } from "./crypto.ts";
export { loadSodiumCrypto, SodiumCrypto } from "./crypto-sodium.ts";
export { AllowedIps, parseIp, parsePrefix, formatIp, innerAddresses } from "./allowedips.ts";
export { ReplayFilter, REPLAY_WINDOW_SIZE } from "./replay.ts";
