// A Telegram approver in webhook mode (the default) registers
// public_url + its route with setWebhook, so a config without
// `gateway { public_url }` is refused at load, with the file and line.
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { formatConfigError, loadPolicy } from "../../../app/policy/load.ts";
import { tempDir } from "../policy/helpers.ts";

const approver = (extra: string) => `
credential "bearer_token" "tg" {}
approver "human_approver" "oncall" {
  channel        = "telegram"
  chat_id        = "-100123"
  bot_token      = bearer_token.tg
  webhook_secret = "s3cret"
${extra}}
`;

async function load(text: string) {
  const file = join(tempDir(), "gateway.hcl");
  writeFileSync(file, `schema_version = 1\n${text}`);
  const r = await loadPolicy(file, { env: {} });
  return r.ok ? [] : r.errors.map((e) => formatConfigError(e).replace(`${file}:`, "gateway.hcl:"));
}

describe("telegram webhook mode needs public_url", () => {
  test("without it: an error at the approver block's line", async () => {
    expect(await load(approver(""))).toEqual([
      'gateway.hcl:4: approver human_approver.oncall: telegram webhook mode needs gateway { public_url } (Telegram posts callbacks to it); or set mode = "poll"',
    ]);
  });

  test("an explicit mode = \"webhook\" is blamed on its own line", async () => {
    expect((await load(approver('  mode = "webhook"\n')))[0]).toStartWith("gateway.hcl:9: ");
  });

  test("with public_url, or in poll mode, the config loads", async () => {
    expect(await load(`gateway { public_url = "https://gw.example.com" }\n${approver("")}`)).toEqual([]);
    expect(await load(approver('  mode = "poll"\n').replace('  webhook_secret = "s3cret"\n', ""))).toEqual([]);
  });
});
