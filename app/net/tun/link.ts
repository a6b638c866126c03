// The packet device boundary the stack talks to. Two implementations: the
// kernel TUN device (tun.ts) and its in-memory twin (memory-link.ts).

export interface PacketLink {
  /**
   * Called with batches of whole IP packets read from the link. The arrays
   * are borrowed: they are valid until the handler returns and the link may
   * reuse their memory afterwards, so copy what you keep. A later call
   * replaces the handler. Until a handler is set, packets wait in the
   * link's bounded queue (the kernel's for a TUN device).
   */
  onPackets(handler: (packets: Uint8Array[]) => void): void;
  /** Writes one IP packet; returns false when the link dropped it (full/closed). */
  write(packet: Uint8Array): boolean;
  close(): void;
  readonly name: string;
  readonly mtu: number;
}

/** Counters a link may expose (all monotonically increasing). */
export interface LinkStats {
  rxPackets: number;
  rxBytes: number;
  /** Handler calls (batches delivered). */
  rxBatches: number;
  /** Packets read but not delivered (malformed offload metadata, read errors). */
  rxDropped: number;
  txPackets: number;
  txBytes: number;
  /** write() calls that returned false. */
  txDropped: number;
}

export function emptyStats(): LinkStats {
  return { rxPackets: 0, rxBytes: 0, rxBatches: 0, rxDropped: 0, txPackets: 0, txBytes: 0, txDropped: 0 };
}
