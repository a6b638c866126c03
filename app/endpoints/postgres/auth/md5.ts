// PostgreSQL's md5 password response: "md5" + md5hex(md5hex(password + user) + salt).
import { createHash } from "node:crypto";

export function md5PasswordResponse(user: string, password: string, salt: Uint8Array): string {
  const inner = createHash("md5").update(password + user, "utf8").digest("hex");
  return "md5" + createHash("md5").update(Buffer.concat([Buffer.from(inner, "utf8"), salt])).digest("hex");
}
