// Device operations over the registry alone, for a gateway without the
// WireGuard capture mode (proxy devices only). With it, OnboardService does
// the same and also removes the peer and cuts the device's flows.
import { ApiError } from "../errors.ts";
import type { DeviceRegistry } from "../../store/devices.ts";
import type { DeviceOps } from "./index.ts";

export function registryDeviceOps(registry: DeviceRegistry, profiles: () => { has(name: string): boolean }): DeviceOps {
  return {
    devices: () => registry.list(),
    async revoke(name) {
      if (!registry.revoke(name)) throw new ApiError(404, "no_such_device", `no active device named "${name}"`);
      return registry.get(name)!;
    },
    async setProfile(name, profile) {
      if (typeof profile !== "string" || !profiles().has(profile)) {
        throw new ApiError(400, "unknown_profile", `unknown profile ${JSON.stringify(profile)}`);
      }
      if (!registry.setProfile(name, profile)) throw new ApiError(404, "no_such_device", `no active device named "${name}"`);
      return registry.get(name)!;
    },
  };
}
