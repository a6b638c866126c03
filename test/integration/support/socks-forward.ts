// A local port that reaches one destination through the gateway's SOCKS5
// listener (like `ssh -L`): clients that cannot speak SOCKS themselves
// (psql, pgbench, libpq) connect to it, and every connection becomes a
// SOCKS5 CONNECT to `target`, as the device `auth` (or anonymous).
import net from "node:net";

export interface SocksForward {
  port: number;
  close(): void;
}

export async function socksForward(
  proxy: { host: string; port: number },
  target: { host: string; port: number },
  auth?: { user: string; password: string },
): Promise<SocksForward> {
  const server = net.createServer((client) => {
    client.pause();
    const up = net.connect(proxy.port, proxy.host);
    up.setNoDelay(true);
    client.setNoDelay(true);
    const fail = () => {
      client.destroy();
      up.destroy();
    };
    client.on("error", fail);
    up.on("error", fail);
    let stage: "greeting" | "auth" | "connect" = "greeting";
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (stage === "greeting") {
        if (buf.length < 2) return;
        if (buf[0] !== 5 || buf[1] === 0xff) return fail();
        const method = buf[1];
        buf = buf.subarray(2);
        if (method === 2 && auth) {
          stage = "auth";
          const u = Buffer.from(auth.user);
          const p = Buffer.from(auth.password);
          up.write(Buffer.concat([Buffer.from([1, u.length]), u, Buffer.from([p.length]), p]));
        } else {
          stage = "connect";
          up.write(connectRequest(target));
        }
      }
      if (stage === "auth") {
        if (buf.length < 2) return;
        if (buf[1] !== 0) return fail();
        buf = buf.subarray(2);
        stage = "connect";
        up.write(connectRequest(target));
      }
      if (stage === "connect") {
        if (buf.length < 10) return;
        if (buf[1] !== 0) return fail();
        up.off("data", onData);
        const rest = buf.subarray(10);
        if (rest.length > 0) client.write(rest);
        client.pipe(up);
        up.pipe(client);
        client.resume();
      }
    };
    up.on("data", onData);
    up.on("connect", () => up.write(Buffer.from(auth ? [5, 1, 2] : [5, 1, 0])));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}

function connectRequest(target: { host: string; port: number }): Buffer {
  const v4 = net.isIPv4(target.host);
  const addr = v4 ? Buffer.from(target.host.split(".").map(Number)) : Buffer.concat([Buffer.from([target.host.length]), Buffer.from(target.host)]);
  return Buffer.concat([Buffer.from([5, 1, 0, v4 ? 1 : 3]), addr, Buffer.from([target.port >> 8, target.port & 255])]);
}
