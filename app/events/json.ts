// An event's JSON text, made once however many sinks write it: the bus hands
// the same (redacted) object to each, and the JSON-lines file and the state
// database's writer both want its JSON (about 3 µs a stringify; one SQL
// statement through the Postgres endpoint makes one event).
import type { GatewayEvent } from "./types.ts";

const texts = new WeakMap<GatewayEvent, string>();

/** JSON.stringify(event), remembered for the object's life; throws as JSON.stringify does. */
export function eventJson(event: GatewayEvent): string {
  let text = texts.get(event);
  if (text === undefined) {
    text = JSON.stringify(event);
    texts.set(event, text);
  }
  return text;
}
