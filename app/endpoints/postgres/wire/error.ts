// The one error value the wire parsers return (they never throw on input).

/**
 * Why a byte stream cannot be read as protocol messages:
 * - "malformed": a length below the minimum, a missing NUL, a truncated or
 *   trailing field, an unknown message type or request code;
 * - "too-large": a declared length over the parser's configured limit (seen
 *   from the length field alone, before any body is buffered);
 * - "unsupported": a well-formed request the gateway does not speak (a
 *   protocol major version other than 3, an unknown special request code).
 * `sqlstate` is what PostgreSQL itself answers in that case (08P01 protocol
 * violation; 0A000 feature not supported; 54000 program limit exceeded);
 * `reason` is for logs and may be shown to the peer: it never contains
 * message content, only positions, lengths and type bytes.
 */
export interface WireError {
  code: "malformed" | "too-large" | "unsupported";
  sqlstate: "08P01" | "0A000" | "54000";
  reason: string;
}

export function malformed(reason: string): WireError {
  return { code: "malformed", sqlstate: "08P01", reason };
}

export function tooLarge(reason: string): WireError {
  return { code: "too-large", sqlstate: "54000", reason };
}

export function unsupported(reason: string): WireError {
  return { code: "unsupported", sqlstate: "0A000", reason };
}

/** A printable description of a type byte for error reasons ('Q' or 0x00). */
export function describeByte(b: number): string {
  return b >= 0x21 && b <= 0x7e ? `'${String.fromCharCode(b)}'` : `0x${b.toString(16).padStart(2, "0")}`;
}
