// SASLprep (RFC 4013) exactly as PostgreSQL applies it to SCRAM passwords
// (src/common/saslprep.c, used by both the server and libpq), so a password
// with non-ASCII characters hashes to what the server stored:
//
//   1. a password of pure ASCII is used unchanged (even with control chars);
//   2. map: non-ASCII spaces (C.1.2) become U+0020; "commonly mapped to
//      nothing" characters (B.1) are removed; an empty result is prohibited;
//   3. normalize: NFKC (String.prototype.normalize; PostgreSQL uses its own
//      tables of a later Unicode version; NFKC is stable for the characters
//      that pass step 4, which only admits characters assigned in 3.2);
//   4. prohibit: any character of C.1.2, C.2.1-C.9 or unassigned in Unicode
//      3.2 (A.1) makes the password prohibited. PostgreSQL checks the mapped
//      characters from step 2, not the normalized ones, and so do we;
//   5. bidi: with any RandALCat character, no LCat character may appear and
//      the first and last must be RandALCat, else prohibited.
//
// A prohibited password is not an error: PostgreSQL (pg_be_scram_build_secret
// and libpq's pg_fe_scram) then uses the raw password bytes, and so does
// `saslprepPassword`, which returns the UTF-8 bytes to hash. A string with
// lone surrogates is not valid UTF-8; its bytes are taken from TextEncoder
// (U+FFFD for each), which PostgreSQL could not have received anyway.
//
// Tables: saslprep-tables.ts, generated from Python's `stringprep` module
// (RFC 3454 over Unicode 3.2.0):
//   python3 -c 'import stringprep' and a loop over range(0x110000) writing
//   inclusive ranges of in_table_c12, in_table_b1, the union of c12/c21/c22/
//   c3..c9, in_table_a1, in_table_d1 and in_table_d2.

import { L_CAT, MAPPED_TO_NOTHING, NON_ASCII_SPACE, PROHIBITED_OUTPUT, RAND_AL_CAT, UNASSIGNED } from "./saslprep-tables.ts";

function inTable(cp: number, table: readonly number[]): boolean {
  let lo = 0;
  let hi = table.length / 2 - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (cp < table[mid * 2]!) hi = mid - 1;
    else if (cp > table[mid * 2 + 1]!) lo = mid + 1;
    else return true;
  }
  return false;
}

export type SaslprepResult = { kind: "prepared"; text: string } | { kind: "prohibited" };

/** PostgreSQL's pg_saslprep on a JS string: the prepared text, or "prohibited". */
export function saslprep(input: string): SaslprepResult {
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(input)) return { kind: "prepared", text: input };
  const mapped: number[] = [];
  for (const ch of input) {
    const cp = ch.codePointAt(0)!;
    if (inTable(cp, NON_ASCII_SPACE)) mapped.push(0x20);
    else if (!inTable(cp, MAPPED_TO_NOTHING)) mapped.push(cp);
  }
  if (mapped.length === 0) return { kind: "prohibited" };
  for (const cp of mapped) {
    if (inTable(cp, PROHIBITED_OUTPUT) || inTable(cp, UNASSIGNED)) return { kind: "prohibited" };
  }
  if (mapped.some((cp) => inTable(cp, RAND_AL_CAT))) {
    if (mapped.some((cp) => inTable(cp, L_CAT))) return { kind: "prohibited" };
    if (!inTable(mapped[0]!, RAND_AL_CAT) || !inTable(mapped[mapped.length - 1]!, RAND_AL_CAT)) return { kind: "prohibited" };
  }
  return { kind: "prepared", text: String.fromCodePoint(...mapped).normalize("NFKC") };
}

/** The bytes SCRAM hashes for `password`: SASLprep'd, or raw when prohibited (as PostgreSQL does). */
export function saslprepPassword(password: string): Uint8Array {
  const r = saslprep(password);
  return new TextEncoder().encode(r.kind === "prepared" ? r.text : password);
}
