// The :80 listener's whole decision: a pending token's key authorization, a
// 404 for any other challenge path, a 301 to public_url for the rest.
import { expect, test } from "bun:test";
import { answerHttp } from "../../../app/acme/http01.ts";

const tokens = new Map([["tok_ABCDEFGHIJKLMNOP", "tok_ABCDEFGHIJKLMNOP.thumb"]]);

test.each([
  ["GET", "/.well-known/acme-challenge/tok_ABCDEFGHIJKLMNOP", 200, "tok_ABCDEFGHIJKLMNOP.thumb"],
  ["HEAD", "/.well-known/acme-challenge/tok_ABCDEFGHIJKLMNOP", 200, "tok_ABCDEFGHIJKLMNOP.thumb"],
  ["GET", "/.well-known/acme-challenge/tok_ABCDEFGHIJKLMNOP?x=1", 200, "tok_ABCDEFGHIJKLMNOP.thumb"],
  ["POST", "/.well-known/acme-challenge/tok_ABCDEFGHIJKLMNOP", 404, "no such challenge\n"],
  ["GET", "/.well-known/acme-challenge/other", 404, "no such challenge\n"],
  ["GET", "/.well-known/acme-challenge/", 404, "no such challenge\n"],
] as const)("%s %s -> %d", (method, path, status, body) => {
  const a = answerHttp(method, path, tokens, "https://gw.example.com");
  expect(a.status).toBe(status);
  expect(a.body).toBe(body);
  expect(a.headers.location).toBeUndefined();
});

test.each([
  ["/", "https://gw.example.com/"],
  ["/login?next=%2Fdevices", "https://gw.example.com/login?next=%2Fdevices"],
  ["/.well-known/other", "https://gw.example.com/.well-known/other"],
])("everything else: 301 %s -> %s", (path, location) => {
  for (const base of ["https://gw.example.com", "https://gw.example.com/"]) {
    const a = answerHttp("GET", path, tokens, base);
    expect(a.status).toBe(301);
    expect(a.headers.location).toBe(location);
  }
});
