// gateway { events { clickhouse {} } }: defaults, every setting, and bad
// values named with FILE:LINE (and never echoing a password).
import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { formatConfigError, loadPolicy } from "../../../app/policy/load.ts";
import { policyFrom, tempDir } from "../policy/helpers.ts";

const CRED = `
credential "clickhouse_password" "audit" {
  user = "auditor"
}
credential "postgres_password" "pg" {
  user = "app"
}
`;

async function errorsOf(hcl: string): Promise<string[]> {
  const file = join(tempDir(), "gateway.hcl");
  writeFileSync(file, hcl);
  const r = await loadPolicy(file, { env: {} });
  if (r.ok) throw new Error("expected the config to be rejected");
  return r.errors.map(formatConfigError).map((e) => e.replace(file, "FILE"));
}

test("defaults: only the url", async () => {
  const p = await policyFrom(`schema_version = 1
gateway {
  state_dir = "s"
  events {
    clickhouse {
      url = "http://127.0.0.1:8123"
    }
  }
}
`);
  const { source, ...settings } = p.gateway.eventsClickhouse!;
  expect(settings).toEqual({ url: "http://127.0.0.1:8123", database: "clawpatrol", table: "events", spoolMaxBytes: 256 * 1024 * 1024, batchSize: 1000, flushIntervalMs: 1000 });
  expect(source.line).toBe(5);
});

test("every setting", async () => {
  const p = await policyFrom(`schema_version = 1
gateway {
  state_dir = "s"
  events {
    jsonl = "events.jsonl"
    clickhouse {
      url = "https://ch.example:8443/"
      database = "audit_db"
      table = "gw_events"
      credential = clickhouse_password.audit
      gateway_name = "gw-eu-1"
      spool_max = "16MiB"
      batch_size = 500
      flush_interval = "5s"
    }
  }
}
${CRED}`);
  const { source: _source, ...settings } = p.gateway.eventsClickhouse!;
  expect(settings).toEqual({
    url: "https://ch.example:8443",
    database: "audit_db",
    table: "gw_events",
    credential: "clickhouse_password.audit",
    gatewayName: "gw-eu-1",
    spoolMaxBytes: 16 * 1024 * 1024,
    batchSize: 500,
    flushIntervalMs: 5000,
  });
});

test("bad values are reported at their line", async () => {
  const errors = await errorsOf(`schema_version = 1
gateway {
  state_dir = "s"
  events {
    clickhouse {
      url = "ftp://ch.example"
      database = "audit-db"
      table = "x; DROP TABLE y"
      credential = postgres_password.pg
      spool_max = "1KiB"
      batch_size = 0
      flush_interval = "1ms"
      compression = true
    }
  }
}
${CRED}`);
  expect(errors).toEqual([
    "FILE:6: gateway.events.clickhouse: url must be http:// or https://, not ftp://",
    'FILE:7: gateway.events.clickhouse: database must be a plain identifier (letters, digits, _), not "audit-db"',
    'FILE:8: gateway.events.clickhouse: table must be a plain identifier (letters, digits, _), not "x; DROP TABLE y"',
    "FILE:9: gateway.events.clickhouse: credential must be a clickhouse_password, not postgres_password.pg",
    'FILE:10: gateway.events.clickhouse: spool_max must be a size of at least 64KiB, like "256MiB"',
    "FILE:11: gateway.events.clickhouse: batch_size must be a whole number of at least 1, not 0",
    "FILE:12: gateway.events.clickhouse: flush_interval must be at least 100ms",
    'FILE:13: gateway.events.clickhouse: unknown attribute "compression"; expected one of: url, database, table, credential, gateway_name, spool_max, batch_size, flush_interval',
  ]);
});

test("a url is required; one with a password in it is refused without echoing the password", async () => {
  expect(await errorsOf(`schema_version = 1
gateway {
  events {
    clickhouse {}
  }
}
`)).toEqual(['FILE:4: gateway.events.clickhouse: missing required attribute "url"']);
  const errors = await errorsOf(`schema_version = 1
gateway {
  events {
    clickhouse {
      url = "https://auditor:hunter2-secret@ch.example"
    }
  }
}
`);
  expect(errors).toEqual(["FILE:5: gateway.events.clickhouse: url must not carry a user or password: name a clickhouse_password credential instead"]);
  expect(errors.join("\n")).not.toContain("hunter2");
});

test("an unknown credential and a second clickhouse block are errors", async () => {
  expect(await errorsOf(`schema_version = 1
gateway {
  events {
    clickhouse {
      url = "http://127.0.0.1:8123"
      credential = clickhouse_password.nope
    }
    clickhouse {
      url = "http://127.0.0.1:8124"
    }
  }
}
`)).toEqual([
    "FILE:6: gateway.events.clickhouse: credential: unknown credential clickhouse_password.nope",
    "FILE:8: gateway.events: duplicate clickhouse block",
  ]);
});
