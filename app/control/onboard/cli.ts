// Helpers for `clawpatrol-gateway devices …` (app/main.ts): tables and the
// operator's name for the audit trail.

/** A command that failed for a reason the operator can act on (exit 1, no usage hint). */
export class DevicesCommandFailed extends Error {}

export { cliOperator, formatTable, printTable, isoMinute } from "../cli.ts";
