// Which congestion controller a connection gets.

import type { CongestionAlgorithm, CongestionController } from "./controller.ts";
import { Cubic } from "./cubic.ts";
import { NewReno } from "./newreno.ts";

export type { AckSample, CongestionAlgorithm, CongestionController } from "./controller.ts";
export { initialWindow, RFC6928_IW_SEGMENTS } from "./controller.ts";

/** `prr`: the window during SACK recovery follows RFC 6937 instead of RFC 6675's cwnd = ssthresh. */
export function createCongestionController(algorithm: CongestionAlgorithm, prr: boolean): CongestionController {
  switch (algorithm) {
    case "cubic":
      return new Cubic(prr);
    case "newreno":
      return new NewReno(prr);
  }
}
