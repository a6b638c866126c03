// How the gateway denies a statement: the server raises the error itself,
// so a denial fails the server's transaction exactly as the client is told
// (session.ts sends this in place of the denied message).

/** Raised by the server on the gateway's behalf. */
export const DENY_SQLSTATE = "42501";

/**
 * A statement that makes the server raise 42501 with `reason`: a DO block,
 * so it works in any transaction state the server accepts statements in.
 * The reason is quoted as a literal; `$` is dropped so it cannot close the
 * dollar quote.
 */
export function raiseStatement(reason: string): string {
  const message = `denied by clawpatrol: ${reason}`.replace(/\$/g, "").replace(/'/g, "''").replace(/\0/g, "");
  return `DO $clawpatrol$BEGIN RAISE EXCEPTION USING ERRCODE = '${DENY_SQLSTATE}', MESSAGE = '${message}'; END$clawpatrol$`;
}
