// What the device does in the tunnel matrix, run inside its namespace:
//
//   bun device-probe.ts storm HOST PORT N [MS] N concurrent Bun.connect, each echoes its own line (each given MS, default 60 s)
//   bun device-probe.ts halfclose HOST PORT    send, shut the write side, read the reply to the end
//   bun device-probe.ts rst HOST PORT          send, then wait for the upstream's reset
//   bun device-probe.ts connect HOST PORT      connect and report what happens first (and when)
//   bun device-probe.ts dns SERVER NAME        one A query over UDP
//
// Prints one JSON line with the outcome; the test asserts on it.
import net from "node:net";
import dgram from "node:dgram";
import dnsPacket from "dns-packet";

const [cmd, host, portArg, extra, limitArg] = process.argv.slice(2);
const port = Number(portArg);
const out = (v: unknown) => console.log(JSON.stringify(v));

async function storm(n: number, limitMs: number): Promise<void> {
  const started = performance.now();
  let ok = 0;
  const failures: string[] = [];
  const one = (i: number) =>
    new Promise<void>((resolve) => {
      const line = `conn-${i}-${Math.random().toString(36).slice(2)}\n`;
      let got = "";
      let opened = false;
      const timer = setTimeout(() => {
        failures.push(`${i}: timeout ${opened ? "after connecting" : "connecting"}, got ${JSON.stringify(got)}`);
        resolve();
      }, limitMs);
      const done = (err?: string) => {
        clearTimeout(timer);
        if (err) failures.push(`${i}: ${err}`);
        else ok++;
        resolve();
      };
      Bun.connect({
        hostname: host!,
        port,
        socket: {
          open(s) {
            opened = true;
            s.write(line);
          },
          data(s, d) {
            got += d.toString();
            if (got.length >= line.length) {
              s.end();
              done(got === line ? undefined : `echoed ${JSON.stringify(got)}`);
            }
          },
          error(_s, e) {
            done(`error ${e.message}`);
          },
          connectError(_s, e) {
            done(`connect ${e.message}`);
          },
        },
      }).catch((e: Error) => done(`connect ${e.message}`));
    });
  await Promise.all(Array.from({ length: n }, (_, i) => one(i)));
  out({ ok, failed: failures.length, failures: failures.slice(0, 5), ms: Math.round(performance.now() - started) });
}

function halfclose(): void {
  const s = net.connect({ host: host!, port, allowHalfOpen: true });
  let reply = "";
  s.on("connect", () => {
    s.write("first part, ");
    s.end("and the rest");
  });
  s.on("data", (d) => (reply += d.toString()));
  s.on("end", () => {
    out({ reply });
    s.destroy();
  });
  s.on("error", (e: NodeJS.ErrnoException) => out({ error: e.code ?? e.message, reply }));
}

function rst(): void {
  const s = net.connect({ host: host!, port });
  const started = performance.now();
  let data = "";
  s.on("connect", () => s.write("please reset me\n"));
  s.on("data", (d) => (data += d.toString()));
  s.on("error", (e: NodeJS.ErrnoException) => out({ error: e.code ?? e.message, data, ms: Math.round(performance.now() - started) }));
  s.on("end", () => out({ end: true, data, ms: Math.round(performance.now() - started) }));
  s.setTimeout(10_000, () => {
    out({ timeout: true, data });
    s.destroy();
  });
}

function connect(): void {
  const started = performance.now();
  const s = net.connect({ host: host!, port });
  let connectedAt: number | null = null;
  const ms = () => Math.round(performance.now() - started);
  s.on("connect", () => {
    connectedAt = ms();
    // A terminating stack may accept first and reset once the upstream refuses.
    s.write("hello?\n");
  });
  s.on("error", (e: NodeJS.ErrnoException) => out({ error: e.code ?? e.message, connectedAt, ms: ms() }));
  s.on("end", () => out({ end: true, connectedAt, ms: ms() }));
  s.setTimeout(10_000, () => {
    out({ timeout: true, connectedAt });
    s.destroy();
  });
}

function dns(name: string): void {
  const sock = dgram.createSocket("udp4");
  const started = performance.now();
  const q = dnsPacket.encode({ type: "query", id: 4242, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: "A", name }] });
  const timer = setTimeout(() => {
    out({ timeout: true });
    sock.close();
  }, 5000);
  sock.on("message", (m) => {
    clearTimeout(timer);
    const a = dnsPacket.decode(m);
    out({ id: a.id, answers: (a.answers ?? []).map((x) => ({ name: x.name, type: x.type, data: "data" in x ? x.data : null })), ms: Math.round(performance.now() - started) });
    sock.close();
  });
  sock.send(q, port, host!);
}

switch (cmd) {
  case "storm":
    await storm(Number(extra ?? 1000), Number(limitArg ?? 60_000));
    process.exit(0); // connections that timed out would keep the process alive
    break;
  case "halfclose":
    halfclose();
    break;
  case "rst":
    rst();
    break;
  case "connect":
    connect();
    break;
  case "dns":
    dns(extra ?? "example.test");
    break;
  default:
    console.error(`unknown probe ${cmd}`);
    process.exit(2);
}
