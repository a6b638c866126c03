// Tail loss probe (RFC 8985 §7): when the last segments of a flight are
// lost no duplicate ACKs come back, and only the RTO (200 ms or more)
// would recover them. Two SRTTs after the last transmission or ACK, one
// probe goes out instead (new data if the peer's window allows, else the
// last segment again); its ACK either covers everything (a loss repaired,
// or none) or SACKs the probe above holes, and RACK's rule (RFC 8985 §6.2)
// then marks every un-SACKed segment sent before it lost, starting fast
// recovery at once.

/** RFC 8985 §7.2 WCDelAckT: the worst-case delayed-ACK timer a lone segment may wait for. */
export const TLP_DELAYED_ACK_MS = 200;
/** Floor on the PTO, as Linux's: a sub-millisecond SRTT must not make probes of reordering. */
export const TLP_MIN_PTO_MS = 10;

/** RFC 8985 §7.2: PTO = 2*SRTT (+ WCDelAckT with one segment in flight), never past the RTO. */
export function probeTimeout(srtt: number, flight: number, mss: number, rto: number): number {
  let pto = 2 * srtt;
  if (flight <= mss) pto += TLP_DELAYED_ACK_MS;
  return Math.min(Math.max(pto, TLP_MIN_PTO_MS), rto);
}
