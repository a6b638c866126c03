// Feeds a Postgres framing parser (frontend or backend) chunk by chunk and
// collects every result until need-more or an error, for the wire tests.
import type { FramingParser, WireResult } from "../../../app/endpoints/postgres/wire/framing.ts";

export function feedParser<M, P extends FramingParser<M>>(parser: P, chunks: Uint8Array[]): { messages: M[]; last: WireResult<M>; parser: P } {
  const messages: M[] = [];
  let last: WireResult<M> = { kind: "need-more" };
  for (const c of chunks) {
    parser.push(c);
    for (;;) {
      last = parser.next();
      if (last.kind !== "message") break;
      messages.push(last.message);
    }
    if (last.kind === "error") break;
  }
  return { messages, last, parser };
}
