// The dispatcher's UDP rows, as a pure function of the datagram's
// destination port and the policy's `defaults.udp` (the TCP rows are in
// dispatch.ts; UDP rows do not depend on the address). The packet plane
// carries the decision out.
//
//   :443 (QUIC)      -> refuse with ICMP port unreachable: clients fall back to TCP,
//                       where the flow can be intercepted
//   :53 (DNS)        -> the gateway's own DNS when it runs one (clawpatrol.internal,
//                       the DNS-VIP responder, else the forwarder); without
//                       one, like any other datagram
//   anything else    -> defaults.udp: relay (the destination policy and the
//                       device's quota still apply) or drop
export const QUIC_PORT = 443;
export const DNS_PORT = 53;

export type UdpDecision =
  | { kind: "refuse-quic"; reason: string }
  | { kind: "dns"; reason: string }
  | { kind: "relay"; reason: string }
  | { kind: "drop"; reason: string };

export function dispatchUdp(dstPort: number, udpPolicy: "relay" | "drop", gatewayDns = true): UdpDecision {
  if (dstPort === QUIC_PORT) return { kind: "refuse-quic", reason: "QUIC is refused so clients fall back to TCP" };
  if (dstPort === DNS_PORT && gatewayDns) return { kind: "dns", reason: "device DNS goes to the gateway" };
  return udpPolicy === "relay" ? { kind: "relay", reason: "defaults.udp = relay" } : { kind: "drop", reason: "defaults.udp = drop" };
}
