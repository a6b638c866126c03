// bench-netstack's flow server, run inside the server namespace: answers
// each connection's first bytes with "ok\n" and holds it open.
import net from "node:net";

const [host, portText] = process.argv.slice(2);
const server = net.createServer((s) => {
  s.once("data", () => s.write("ok\n"));
  s.on("error", () => s.destroy());
});
server.maxConnections = 50_000;
server.listen(Number(portText), host, () => console.log("listening"));
