// The UDP rows of the dispatch table.
import { describe, expect, test } from "bun:test";
import { dispatchUdp } from "../../../app/dispatch/udp.ts";

describe("dispatchUdp", () => {
  test.each([
    ["QUIC to any address is refused, whatever defaults.udp says", "203.0.113.7", 443, "relay", "refuse-quic"],
    ["QUIC over IPv6 too", "2001:db8::1", 443, "drop", "refuse-quic"],
    ["DNS to any address is the gateway's", "8.8.8.8", 53, "drop", "dns"],
    ["DNS to the tunnel address", "10.77.0.1", 53, "relay", "dns"],
    ["other UDP with udp = relay is relayed", "203.0.113.7", 123, "relay", "relay"],
    ["other UDP with udp = drop is dropped", "203.0.113.7", 123, "drop", "drop"],
  ] as const)("%s", (_name, _host, port, policy, want) => {
    expect(dispatchUdp(port, policy).kind).toBe(want);
  });

  test("DNS follows defaults.udp when the gateway runs no DNS of its own", () => {
    expect(dispatchUdp(53, "relay", false).kind).toBe("relay");
    expect(dispatchUdp(53, "drop", false).kind).toBe("drop");
  });
});
