// Typed access to one block's attributes. Every problem becomes a
// ConfigError at the attribute's line (or the block's, when one is missing)
// and the getter returns undefined, so the loader can go on and report more.
import type { ConfigError } from "../types.ts";
import type { HclAttribute, HclBlock } from "./parse.ts";

export interface BlockLike {
  file: string;
  line: number;
  attributes: HclAttribute[];
  blocks: HclBlock[];
}

export class BlockReader {
  private readonly byName = new Map<string, HclAttribute>();

  constructor(
    readonly block: BlockLike,
    /** How messages name the block, e.g. `rule "no-deletes"`. */
    readonly what: string,
    private readonly errors: ConfigError[],
  ) {
    for (const a of block.attributes) this.byName.set(a.name, a);
  }

  error(line: number, message: string): void {
    this.errors.push({ file: this.block.file, line, message: this.what ? `${this.what}: ${message}` : message });
  }

  /** Reports attributes and nested blocks that the schema does not know. */
  allow(attributes: readonly string[], blocks: readonly string[] = []): void {
    for (const a of this.block.attributes) {
      if (!attributes.includes(a.name)) {
        this.error(a.line, `unknown attribute "${a.name}"; expected one of: ${attributes.join(", ")}`);
      }
    }
    for (const b of this.block.blocks) {
      if (!blocks.includes(b.type)) {
        const expected = blocks.length ? `expected one of: ${blocks.join(", ")}` : "it takes no blocks";
        this.error(b.line, `unknown block "${b.type}"; ${expected}`);
      }
    }
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** The attribute's line, or the block's when it is absent. */
  line(name: string): number {
    return this.byName.get(name)?.line ?? this.block.line;
  }

  raw(name: string): unknown {
    return this.byName.get(name)?.value;
  }

  required(name: string): boolean {
    if (this.has(name)) return true;
    this.error(this.block.line, `missing required attribute "${name}"`);
    return false;
  }

  string(name: string): string | undefined {
    if (!this.has(name)) return undefined;
    const v = this.raw(name);
    if (typeof v === "string" && !v.includes("${")) return v;
    this.error(this.line(name), `${name} must be a quoted string${describeInstead(v)}`);
    return undefined;
  }

  oneOf<T extends string>(name: string, allowed: readonly T[]): T | undefined {
    const v = this.string(name);
    if (v === undefined) return undefined;
    if ((allowed as readonly string[]).includes(v)) return v as T;
    this.error(this.line(name), `${name} must be ${allowed.map((a) => `"${a}"`).join(" or ")}, not "${v}"`);
    return undefined;
  }

  number(name: string): number | undefined {
    if (!this.has(name)) return undefined;
    const v = this.raw(name);
    if (typeof v === "number" && Number.isFinite(v)) return v;
    this.error(this.line(name), `${name} must be a number${describeInstead(v)}`);
    return undefined;
  }

  integer(name: string, min: number): number | undefined {
    const v = this.number(name);
    if (v === undefined) return undefined;
    if (Number.isInteger(v) && v >= min) return v;
    this.error(this.line(name), `${name} must be a whole number of at least ${min}, not ${v}`);
    return undefined;
  }

  bool(name: string): boolean | undefined {
    if (!this.has(name)) return undefined;
    const v = this.raw(name);
    if (typeof v === "boolean") return v;
    this.error(this.line(name), `${name} must be true or false${describeInstead(v)}`);
    return undefined;
  }

  /** A list of strings (references included, still in `${...}` form). */
  list(name: string): string[] | undefined {
    if (!this.has(name)) return undefined;
    const v = this.raw(name);
    if (Array.isArray(v) && v.every((x) => typeof x === "string")) return v as string[];
    this.error(this.line(name), `${name} must be a list${Array.isArray(v) ? " of strings or references" : describeInstead(v)}`);
    return undefined;
  }
}

function describeInstead(v: unknown): string {
  if (typeof v === "string") {
    const m = /^\$\{(.*)\}$/s.exec(v);
    return m ? `, not ${m[1]}` : `, not "${v}"`;
  }
  if (typeof v === "number" || typeof v === "boolean") return `, not ${v}`;
  if (Array.isArray(v)) return ", not a list";
  if (v === null) return ", not null";
  if (typeof v === "object") return ", not an object";
  return "";
}
