// A UDP relay for the WireGuard underlay that delays every datagram by a
// random time in [minMs, maxMs] (this kernel has no netem). Independent
// random delays reorder packets whose gaps are shorter than the jitter.
//
//   bun test/integration/support/udp-relay.ts LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT MIN_MS MAX_MS
//
// Datagrams from the target go back to the last client that sent one (one
// device per relay, as in the tests). Prints "ready" once bound, and a line
// of counters on SIGTERM.
import dgram from "node:dgram";

const [listenHost, listenPort, targetHost, targetPort, minMs, maxMs] = process.argv.slice(2);
const lo = Number(minMs ?? 5);
const hi = Number(maxMs ?? 20);
const sock = dgram.createSocket({ type: "udp4", recvBufferSize: 8 << 20, sendBufferSize: 8 << 20 });
let client: { address: string; port: number } | null = null;
const counters = { toTarget: 0, toClient: 0, reordered: 0 };
let lastDue = 0;

sock.on("message", (msg, rinfo) => {
  const fromTarget = rinfo.address === targetHost && rinfo.port === Number(targetPort);
  if (!fromTarget) client = { address: rinfo.address, port: rinfo.port };
  const to = fromTarget ? client : { address: targetHost!, port: Number(targetPort) };
  if (to === null) return;
  const delay = lo + Math.random() * (hi - lo);
  const due = performance.now() + delay;
  if (due < lastDue) counters.reordered++;
  lastDue = Math.max(lastDue, due);
  setTimeout(() => {
    sock.send(msg, to.port, to.address);
    if (fromTarget) counters.toClient++;
    else counters.toTarget++;
  }, delay);
});

sock.bind(Number(listenPort), listenHost, () => console.log("ready"));
process.on("SIGTERM", () => {
  console.log(JSON.stringify(counters));
  process.exit(0);
});
