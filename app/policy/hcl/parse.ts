// HCL file -> a tree of blocks and attributes, each with its line and value.
//   1. hcl2json parses and validates the syntax (its errors carry file:line).
//   2. scan.ts finds declaration order and lines, which hcl2json drops.
//   3. The two are joined: the k-th scanned block with a given type and
//      labels is the k-th entry of hcl2json's array under those keys.
import { parse as hclToJson } from "@cdktf/hcl2json";
import type { ConfigError } from "../types.ts";
import { scanHcl, type ScannedBlock, type ScannedBody } from "./scan.ts";

export interface HclAttribute {
  name: string;
  line: number;
  /** The value as hcl2json gives it: references and expressions are `${...}` strings. */
  value: unknown;
}

export interface HclBlock {
  file: string;
  type: string;
  labels: string[];
  line: number;
  attributes: HclAttribute[];
  blocks: HclBlock[];
  /** The block's raw body from hcl2json (for blocks stored as free-form settings). */
  raw: Record<string, unknown>;
}

export interface HclFile {
  file: string;
  attributes: HclAttribute[];
  blocks: HclBlock[];
}

export type HclParseResult = { ok: true; hcl: HclFile } | { ok: false; errors: ConfigError[] };

export async function parseHclFile(file: string, text: string): Promise<HclParseResult> {
  let json: Record<string, unknown>;
  try {
    json = await hclToJson(file, text);
  } catch (e) {
    return { ok: false, errors: syntaxErrors(file, String(e instanceof Error ? e.message : e)) };
  }
  const scanned = scanHcl(text);
  const body = joinBody(file, scanned, json);
  return { ok: true, hcl: { file, attributes: body.attributes, blocks: body.blocks } };
}

function joinBody(file: string, scanned: ScannedBody, json: Record<string, unknown>): Pick<HclBlock, "attributes" | "blocks"> {
  const attributes = scanned.attributes.map((a) => ({ name: a.name, line: a.line, value: json[a.name] }));
  const seen = new Map<string, number>();
  const blocks = scanned.blocks.map((b) => {
    const key = [b.type, ...b.labels].join("\0");
    const index = seen.get(key) ?? 0;
    seen.set(key, index + 1);
    return joinBlock(file, b, blockBody(json, b, index));
  });
  return { attributes, blocks };
}

function joinBlock(file: string, b: ScannedBlock, raw: Record<string, unknown>): HclBlock {
  const inner = joinBody(file, b, raw);
  return { file, type: b.type, labels: b.labels, line: b.line, raw, ...inner };
}

/** hcl2json nests blocks as `type -> label... -> [body, body, ...]`. */
function blockBody(json: Record<string, unknown>, b: ScannedBlock, index: number): Record<string, unknown> {
  let node: unknown = json[b.type];
  for (const label of b.labels) node = isRecord(node) ? node[label] : undefined;
  const entry = Array.isArray(node) ? node[index] : undefined;
  return isRecord(entry) ? entry : {};
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * hcl2json reports every diagnostic in one message:
 * `parse config: [f.hcl:3,7-4,1: Summary; Detail. f.hcl:9,1-2: Summary; Detail.]`
 */
export function syntaxErrors(file: string, message: string): ConfigError[] {
  const body = message.replace(/^[^[]*\[/, "").replace(/\]\s*$/, "");
  const marker = new RegExp(`${escapeRegExp(file)}:(\\d+),\\d+(?:-(?:\\d+,)?\\d+)?: `, "g");
  const hits = [...body.matchAll(marker)];
  if (hits.length === 0) return [{ file, line: 1, message: `syntax error: ${message.trim()}` }];
  const errors = hits.map((hit, k) => {
    const start = hit.index! + hit[0].length;
    const end = k + 1 < hits.length ? hits[k + 1]!.index! : body.length;
    return { file, line: Number(hit[1]), message: body.slice(start, end).trim() };
  });
  return errors.sort((a, b) => a.line - b.line);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
