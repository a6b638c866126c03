// bench-netstack's flow holder, run inside the device namespace: opens N
// TCP connections to host:port (a hundred connects at a time), writes a
// line on each, reads the server's reply, prints "ready N" and keeps them
// all open until SIGTERM. Exits 1 on any failure.
import net from "node:net";

const [host, portText, countText] = process.argv.slice(2);
const port = Number(portText);
const count = Number(countText);
const sockets: net.Socket[] = [];

function open(): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: host!, port }, () => s.write("hello\n"));
    s.once("data", () => resolve());
    s.once("error", reject);
    sockets.push(s);
  });
}

try {
  for (let i = 0; i < count; i += 100) {
    await Promise.all(Array.from({ length: Math.min(100, count - i) }, open));
  }
  console.log(`ready ${sockets.length}`);
} catch (e) {
  console.error(`flows-client: ${(e as Error).message} after ${sockets.length}`);
  process.exit(1);
}
process.on("SIGTERM", () => {
  for (const s of sockets) s.destroy();
  process.exit(0);
});
setInterval(() => {}, 1 << 30);
