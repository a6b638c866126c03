// The http family: what CEL conditions see as `http.*` for an intercepted
// HTTP request (endpoint types https, and later kubernetes and clickhouse's
// HTTP interface).
import { createHash } from "node:crypto";
import type { HttpFacts } from "../policy/types.ts";
import type { Environment } from "@marcbachmann/cel-js";
import { astReadsFields, baseEnvironment } from "./cel-base.ts";
import type { FamilyDefinition } from "./types.ts";

/** Thrown when a condition reads a body that was cut at the inspection limit. */
export class BodyTruncatedError extends Error {
  constructor() {
    super("the request body was truncated past the inspection limit");
  }
}

/**
 * What `http` looks like to CEL. Field names are the CEL names. The body is
 * read through getters so that a truncated body fails closed only for a
 * condition that actually reaches it (`http.path == '/x' && http.body...`
 * short-circuits past it for other paths).
 */
export class HttpRequestValue {
  readonly #body: string;
  readonly #bodyJson: unknown;
  readonly #truncated: boolean;
  constructor(
    readonly method: string,
    readonly host: string,
    readonly path: string,
    readonly query: Record<string, string>,
    readonly headers: Record<string, string>,
    body: string,
    bodyJson: unknown,
    truncated: boolean,
    /** The path as sent (`path` is normalised: what the upstream acts on). */
    readonly raw_path: string = path,
    /** `https`, or `http` for plain HTTP. */
    readonly scheme: string = "https",
  ) {
    this.#body = body;
    this.#bodyJson = bodyJson;
    this.#truncated = truncated;
  }
  get body(): string {
    if (this.#truncated) throw new BodyTruncatedError();
    return this.#body;
  }
  get body_json(): unknown {
    if (this.#truncated) throw new BodyTruncatedError();
    return this.#bodyJson;
  }
}

/** The fields that only a read body gives. */
export const BODY_FIELDS: ReadonlySet<string> = new Set(["body", "body_json"]);

/** The CEL type of `http` (families over HTTP register it too). */
export const HTTP_REQUEST_TYPE = {
  ctor: HttpRequestValue,
  fields: {
    scheme: "string",
    method: "string",
    host: "string",
    path: "string",
    raw_path: "string",
    query: "map<string, string>",
    headers: "map<string, string>",
    body: "string",
    body_json: "dyn",
  },
};

/** `http` and its type in an environment (the http family's, and families over HTTP such as k8s). */
export function withHttpVariable(env: Environment): Environment {
  return env.registerType("HttpRequest", HTTP_REQUEST_TYPE).registerVariable("http", "HttpRequest");
}

const environment = withHttpVariable(baseEnvironment());

/** What CEL sees as `http` for these facts. */
export function httpCelValue(f: HttpFacts): HttpRequestValue {
  return new HttpRequestValue(f.method, f.host, f.path, f.query, f.headers, f.body, f.bodyJson, f.bodyTruncated, f.rawPath ?? f.path, f.scheme ?? "https");
}

/** Whether a condition reads the http body. */
export const readsHttpBody = (ast: Parameters<typeof astReadsFields>[0]): boolean => astReadsFields(ast, "http", BODY_FIELDS);

export const httpFamily: FamilyDefinition<HttpFacts> = {
  name: "http",
  variable: "http",
  environment,
  celValue: httpCelValue,
  readsDeferred: (ast) => astReadsFields(ast, "http", BODY_FIELDS),
  summary: (f) => `${f.method} ${f.host}${f.path}`,
  action: (f) => ({ method: f.method, host: f.host, path: f.path }),
  fingerprint: (f) =>
    createHash("sha256").update(`${f.method}\0${f.host}\0${f.path}\0${f.bodyTruncated ? "truncated" : "whole"}\0${f.body}`).digest("hex"),
};
