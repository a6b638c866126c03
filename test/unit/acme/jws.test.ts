// ACME's JWS (RFC 8555 §6.2) and key authorization (§8.1): signatures verify
// with the account's public key, the header carries jwk xor kid, and the
// thumbprint matches RFC 7638's canonical form.
import { expect, test } from "bun:test";
import { base64url, jwkThumbprint, keyAuthorization, publicJwk, signJws } from "../../../app/acme/jws.ts";
import { ECDSA_SHA256, P256_KEY_ALGORITHM } from "../../../app/tls/pki.ts";

async function signer() {
  const keys = await crypto.subtle.generateKey(P256_KEY_ALGORITHM, true, ["sign", "verify"]);
  return { keys, s: { privateKey: keys.privateKey, jwk: await publicJwk(keys.publicKey) } };
}
const decode = (b64: string) => JSON.parse(Buffer.from(b64, "base64url").toString("utf8"));

test("thumbprint of RFC 7517 A.1's EC key (sha-256 over the sorted required members)", async () => {
  const jwk = { kty: "EC" as const, crv: "P-256" as const, x: "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4", y: "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM" };
  expect(await jwkThumbprint(jwk)).toBe("cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s");
  expect(keyAuthorization("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", "cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s")).toBe(
    "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s",
  );
});

test("new-account form: ES256, the JWK in the header, no kid; the signature verifies over protected.payload", async () => {
  const { keys, s } = await signer();
  const jws = await signJws(s, { url: "https://ca/new-acct", nonce: "n1" }, { termsOfServiceAgreed: true });
  expect(decode(jws.protected)).toEqual({ alg: "ES256", nonce: "n1", url: "https://ca/new-acct", jwk: s.jwk });
  expect(decode(jws.payload)).toEqual({ termsOfServiceAgreed: true });
  const sig = Buffer.from(jws.signature, "base64url");
  expect(sig.length).toBe(64); // r||s, not DER (RFC 7518 §3.4)
  expect(await crypto.subtle.verify(ECDSA_SHA256, keys.publicKey, sig, Buffer.from(`${jws.protected}.${jws.payload}`))).toBe(true);
  // A changed payload does not verify.
  expect(await crypto.subtle.verify(ECDSA_SHA256, keys.publicKey, sig, Buffer.from(`${jws.protected}.${base64url("{}")}`))).toBe(false);
});

test("account form: kid and no jwk; POST-as-GET has the empty payload, not {}", async () => {
  const { s } = await signer();
  const jws = await signJws(s, { url: "https://ca/authz/1", nonce: "n2", kid: "https://ca/acct/7" }, undefined);
  const header = decode(jws.protected);
  expect(header).toEqual({ alg: "ES256", nonce: "n2", url: "https://ca/authz/1", kid: "https://ca/acct/7" });
  expect(jws.payload).toBe("");
  expect((await signJws(s, { url: "u", nonce: "n", kid: "k" }, {})).payload).toBe(base64url("{}"));
});

test("only P-256 keys are account keys", async () => {
  const rsa = await crypto.subtle.generateKey({ name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" }, true, ["sign", "verify"]);
  await expect(publicJwk(rsa.publicKey)).rejects.toThrow("P-256");
});
