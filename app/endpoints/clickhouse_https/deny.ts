// A refusal on ClickHouse's HTTP interface in ClickHouse's own error text
// form, so its clients (@clickhouse/client, clickhouse-client over HTTP)
// report it as a server exception: `Code: 497. DB::Exception: ... (ACCESS_DENIED)`.
import type { HeaderList } from "../http1/headers.ts";
import { simpleResponse } from "../http1/serialize.ts";

export const ACCESS_DENIED = 497;

export function clickhouseDenyResponse(status: number, rule: string | undefined, reason: string, close: boolean): Uint8Array {
  const by = rule !== undefined ? ` by rule "${rule}"` : "";
  const body = `Code: ${ACCESS_DENIED}. DB::Exception: clawpatrol: access denied${by}: ${reason}. (ACCESS_DENIED)\n`;
  const headers: HeaderList = [
    ["Content-Type", "text/plain; charset=UTF-8"],
    ["X-ClickHouse-Exception-Code", String(ACCESS_DENIED)],
  ];
  if (close) headers.push(["Connection", "close"]);
  return simpleResponse(status, headers, body);
}
