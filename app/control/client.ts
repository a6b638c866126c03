// The operator CLI's side of the control socket.
import { existsSync } from "node:fs";

export class ControlUnavailable extends Error {}

export async function controlFetch(socketPath: string, pathAndQuery: string, init: RequestInit = {}): Promise<Response> {
  if (!existsSync(socketPath)) {
    throw new ControlUnavailable(`the gateway is not running (no control socket at ${socketPath})`);
  }
  try {
    return await fetch(`http://clawpatrol${pathAndQuery}`, { ...init, unix: socketPath } as RequestInit);
  } catch (e) {
    throw new ControlUnavailable(`cannot reach the gateway at ${socketPath}: ${(e as Error).message}`);
  }
}

/** Reads a Server-Sent Events stream, calling `onEvent` with each event's name and parsed data. */
export async function readSse(res: Response, onEvent: (name: string, data: unknown) => void): Promise<void> {
  if (!res.body) return;
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let sep: number;
    while ((sep = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, sep);
      buf = buf.slice(sep + 2);
      let name = "message";
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length > 0) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}
