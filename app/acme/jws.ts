// JSON Web Signatures as ACME wants them (RFC 8555 §6.2): flattened JSON,
// ES256 over an account key on P-256 (RFC 7518 §3.4: the signature is r||s,
// which is what WebCrypto's ECDSA gives), the protected header carrying the
// nonce and the URL, and either the account's JWK (new-account) or its URL.
import { ECDSA_SHA256 } from "../tls/pki.ts";

export interface EcPublicJwk {
  kty: "EC";
  crv: "P-256";
  x: string;
  y: string;
}

export interface FlattenedJws {
  protected: string;
  payload: string;
  signature: string;
}

export function base64url(data: Uint8Array | ArrayBuffer | string): string {
  const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : Buffer.from(data instanceof ArrayBuffer ? new Uint8Array(data) : data);
  return bytes.toString("base64url");
}

/** The public half as the JWK ACME servers key accounts by (only the members RFC 7638 hashes). */
export async function publicJwk(publicKey: CryptoKey): Promise<EcPublicJwk> {
  const jwk = await crypto.subtle.exportKey("jwk", publicKey);
  if (jwk.kty !== "EC" || jwk.crv !== "P-256" || !jwk.x || !jwk.y) throw new TypeError("the ACME account key must be ECDSA P-256");
  return { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y };
}

/** RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order, no whitespace. */
export async function jwkThumbprint(jwk: EcPublicJwk): Promise<string> {
  const canonical = `{"crv":"${jwk.crv}","kty":"${jwk.kty}","x":"${jwk.x}","y":"${jwk.y}"}`;
  return base64url(await crypto.subtle.digest("SHA-256", Buffer.from(canonical, "utf8")));
}

/** RFC 8555 §8.1: what the HTTP-01 resource (and the TLS-ALPN-01 digest) holds for a token. */
export function keyAuthorization(token: string, thumbprint: string): string {
  return `${token}.${thumbprint}`;
}

export type JwsSigner = { privateKey: CryptoKey; jwk: EcPublicJwk };

/**
 * One signed request body. `kid`: the account URL once the account exists;
 * without it the JWK goes in the header (new-account). `payload` undefined is
 * POST-as-GET (§6.3): the empty string, not "{}".
 */
export async function signJws(
  signer: JwsSigner,
  header: { url: string; nonce: string; kid?: string },
  payload: unknown | undefined,
): Promise<FlattenedJws> {
  const prot = { alg: "ES256", nonce: header.nonce, url: header.url, ...(header.kid !== undefined ? { kid: header.kid } : { jwk: signer.jwk }) };
  const protectedB64 = base64url(JSON.stringify(prot));
  const payloadB64 = payload === undefined ? "" : base64url(JSON.stringify(payload));
  const signature = await crypto.subtle.sign(ECDSA_SHA256, signer.privateKey, Buffer.from(`${protectedB64}.${payloadB64}`, "ascii"));
  return { protected: protectedB64, payload: payloadB64, signature: base64url(signature) };
}
