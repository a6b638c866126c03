// A state file replaced whole or not at all: written beside it under a
// unique name with its final mode, then renamed over it (a crash leaves the
// old file or the new one, never half of one).
import { randomBytes } from "node:crypto";
import { renameSync, unlinkSync, writeFileSync } from "node:fs";

export function writeAtomically(file: string, data: string, mode: number): void {
  const temp = `${file}.tmp-${process.pid}-${randomBytes(6).toString("hex")}`;
  try {
    writeFileSync(temp, data, { mode, flag: "wx" });
    renameSync(temp, file);
  } catch (e) {
    try {
      unlinkSync(temp);
    } catch {
      /* never written */
    }
    throw e;
  }
}
