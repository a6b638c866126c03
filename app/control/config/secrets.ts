// Secrets never leave the config editor: a literal string given to an
// attribute that holds one (a chat approver's `bot_token`, `signing_secret`,
// `webhook_secret`, or any `*_token`, `*_secret`, `password`, `passphrase`,
// `api_key`, `private_key`) is shown as `"<hidden N>"`. An edit that keeps
// the marker keeps the value on disk; a new literal replaces it. Credential
// references (`${...}`) and secret_file paths are not secrets and stay.
// Heredoc values are not recognised (write such a secret with `secret set`).

/** The marker text inside the quotes. */
export const hiddenMarker = (n: number): string => `<hidden ${n}>`;
const MARKER = /<hidden (\d+)>/g;

/** `name = "literal"` on one line, where name holds a secret; group 3 is the raw literal (escapes as written). */
const SECRET_ATTRIBUTE =
  /^(\s*)((?:[A-Za-z0-9_]*_)?(?:token|secret|password|passphrase|api_key|private_key))(\s*=\s*)"((?:[^"\\\n]|\\.)*)"/gm;

export interface Masked {
  /** The text as shown. */
  text: string;
  /** The raw literals hidden, marker N at index N-1. */
  hidden: string[];
}

export function maskSecrets(text: string): Masked {
  const hidden: string[] = [];
  const masked = text.replace(SECRET_ATTRIBUTE, (whole, indent: string, name: string, eq: string, raw: string) => {
    if (raw === "" || raw.startsWith("${") || /<hidden \d+>/.test(raw)) return whole;
    hidden.push(raw);
    return `${indent}${name}${eq}"${hiddenMarker(hidden.length)}"`;
  });
  return { text: masked, hidden };
}

export type Unmasked = { ok: true; text: string } | { ok: false; line: number; message: string };

/** Markers back to the literals they stand for; a marker this file never had is an error on its line. */
export function unmaskSecrets(text: string, hidden: readonly string[]): Unmasked {
  let bad: { line: number; n: number } | undefined;
  const out = text.replace(MARKER, (whole, n: string, offset: number) => {
    const v = hidden[Number(n) - 1];
    if (v !== undefined) return v;
    bad ??= { line: text.slice(0, offset).split("\n").length, n: Number(n) };
    return whole;
  });
  if (bad) return { ok: false, line: bad.line, message: `"${hiddenMarker(bad.n)}" stands for no hidden value of this file; write the value itself` };
  return { ok: true, text: out };
}

/** Any hidden value that appears in `s` (an error message) replaced by its marker. */
export function scrubHidden(s: string, hidden: readonly string[]): string {
  let out = s;
  hidden.forEach((v, i) => {
    if (v.length >= 4) out = out.split(v).join(hiddenMarker(i + 1));
  });
  return out;
}
