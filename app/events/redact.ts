// The redaction pass every event and log line goes through before any sink.
//
// 1. Patterns: each secret value (4+ characters), its JSON-escaped form (log
//    lines quote values), and its base64 forms at each of the three byte
//    alignments (so a password is caught inside `Basic base64(user:pass)`
//    whatever the user name).
// 2. Match: `includes` per pattern (fast for the handful of secrets a
//    gateway holds; nothing allocated when nothing matches).
// 3. Replace: every occurrence of every hit becomes an interval; overlapping
//    intervals merge, so overlapping secrets leave no fragment of either.
import type { GatewayEvent } from "./types.ts";

export const REDACTED = "[REDACTED]";
/** Shorter values would redact ordinary words. */
export const MIN_SECRET_LENGTH = 4;
/** Base64 cores shorter than this match too much by chance. */
const MIN_BASE64_CORE = 8;

export interface RedactorOptions {
  /** Recompute patterns only when this value changes (e.g. SecretStore.version). */
  version?: () => unknown;
  /** Without `version`: recompute at most once per `refreshMs` of this clock. */
  now?: () => number;
  refreshMs?: number;
}

export class Redactor {
  private patterns: Patterns = NO_PATTERNS;
  private lastVersion: unknown = undefined;
  private lastRefresh = -Infinity;
  private loaded = false;
  private readonly now: () => number;
  private readonly refreshMs: number;

  constructor(
    private readonly secretValues: () => Iterable<string>,
    private readonly opts: RedactorOptions = {},
  ) {
    this.now = opts.now ?? Date.now;
    this.refreshMs = opts.refreshMs ?? 1000;
  }

  /** Recompute the pattern list now (e.g. right after a secret was set). */
  refresh(): void {
    this.patterns = prepare(buildPatterns(this.secretValues()));
    this.loaded = true;
    this.lastRefresh = this.now();
    if (this.opts.version) this.lastVersion = this.opts.version();
  }

  redactText(s: string): string {
    return redactWith(this.current(), s);
  }

  /** The event with every string field redacted; the same object when nothing matched. */
  redactEvent(e: GatewayEvent): GatewayEvent {
    const pats = this.current();
    if (pats.list.length === 0) return e;
    // The common case (no secret anywhere) ruled out field by field, without
    // building anything: most fields are shorter than any pattern.
    if (!mayHold(pats, e)) return e;
    let out: Record<string, unknown> | undefined;
    const fields = e as unknown as Record<string, unknown>;
    for (const k in fields) {
      const v = fields[k];
      if (typeof v !== "string") continue;
      const r = redactWith(pats, v);
      if (r !== v) {
        out ??= { ...e };
        out[k] = r;
      }
    }
    if (e.action !== undefined) {
      const action = redactAction(pats, e.action);
      if (action !== e.action) {
        out ??= { ...e };
        out.action = action;
      }
    }
    // The model name is the upstream's text: an echoed secret there is masked too.
    if (e.usage !== undefined) {
      const model = redactWith(pats, e.usage.model);
      if (model !== e.usage.model) {
        out ??= { ...e };
        out.usage = { ...e.usage, model };
      }
    }
    return (out as GatewayEvent | undefined) ?? e;
  }

  private current(): Patterns {
    if (!this.loaded) {
      this.refresh();
    } else if (this.opts.version) {
      if (this.opts.version() !== this.lastVersion) this.refresh();
    } else if (this.now() - this.lastRefresh >= this.refreshMs) {
      this.refresh();
    }
    return this.patterns;
  }
}

/** Whether any string of the event (values, and the action's keys and values) holds a pattern. */
function mayHold(pats: Patterns, e: GatewayEvent): boolean {
  const fields = e as unknown as Record<string, unknown>;
  for (const k in fields) {
    const v = fields[k];
    if (typeof v === "string" && holds(pats, v)) return true;
  }
  if (e.usage !== undefined && holds(pats, e.usage.model)) return true;
  return e.action !== undefined && valueHolds(pats, e.action);
}

function valueHolds(pats: Patterns, v: unknown): boolean {
  if (typeof v === "string") return holds(pats, v);
  if (Array.isArray(v)) {
    for (const item of v) if (valueHolds(pats, item)) return true;
    return false;
  }
  if (v !== null && typeof v === "object") {
    for (const k in v) if (holds(pats, k) || valueHolds(pats, (v as Record<string, unknown>)[k])) return true;
  }
  return false;
}

function holds(pats: Patterns, s: string): boolean {
  if (s.length < pats.minLen) return false;
  for (const p of pats.list) if (s.includes(p)) return true;
  return false;
}

/**
 * The structured action with every string inside redacted (keys, values,
 * list items, nested objects): the same object when nothing matched, so the
 * common case allocates nothing.
 */
function redactAction(pats: Patterns, action: Record<string, unknown>): Record<string, unknown> {
  return redactValue(pats, action) as Record<string, unknown>;
}

function redactValue(pats: Patterns, v: unknown): unknown {
  if (typeof v === "string") return redactWith(pats, v);
  if (Array.isArray(v)) {
    let out: unknown[] | undefined;
    v.forEach((item, i) => {
      const r = redactValue(pats, item);
      if (r !== item) (out ??= [...v])[i] = r;
    });
    return out ?? v;
  }
  if (v !== null && typeof v === "object") {
    let out: Record<string, unknown> | undefined;
    const obj = v as Record<string, unknown>;
    for (const k of Object.keys(obj)) {
      const item = obj[k];
      const key = redactWith(pats, k);
      const r = redactValue(pats, item);
      if (r !== item || key !== k) {
        out ??= { ...(v as Record<string, unknown>) };
        if (key !== k) delete out[k];
        out[key] = r;
      }
    }
    return out ?? v;
  }
  return v;
}

export function buildPatterns(values: Iterable<string>): string[] {
  const set = new Set<string>();
  for (const v of values) {
    if (v.length < MIN_SECRET_LENGTH) continue;
    set.add(v);
    const json = JSON.stringify(v).slice(1, -1);
    if (json !== v) set.add(json);
    for (const core of base64Cores(Buffer.from(v, "utf8"))) {
      set.add(core);
      const url = core.replace(/\+/g, "-").replace(/\//g, "_");
      if (url !== core) set.add(url);
    }
  }
  // Longest first: cheaper to find the big hit before its pieces.
  return [...set].sort((a, b) => b.length - a.length);
}

/**
 * The base64 characters that depend only on `bytes`, when they sit at byte
 * offset 0, 1 or 2 (mod 3) of a longer encoded string. Characters shared
 * with neighbouring bytes are dropped: 2 leading chars at offset 1, 3 at
 * offset 2, and the last one when the run does not end on a 3-byte boundary.
 */
function base64Cores(bytes: Buffer): string[] {
  const cores: string[] = [];
  for (const k of [0, 1, 2]) {
    const enc = Buffer.concat([Buffer.alloc(k), bytes]).toString("base64").replace(/=+$/, "");
    const start = [0, 2, 3][k]!;
    const end = enc.length - ((k + bytes.length) % 3 === 0 ? 0 : 1);
    const core = enc.slice(start, end);
    if (core.length >= MIN_BASE64_CORE) cores.push(core);
  }
  return cores;
}

/** The patterns, longest first, and the shortest one's length. */
interface Patterns {
  list: readonly string[];
  /** Text shorter than this holds no pattern (most event fields). */
  minLen: number;
}

const NO_PATTERNS: Patterns = { list: [], minLen: Infinity };

function prepare(list: string[]): Patterns {
  return { list, minLen: list.length === 0 ? Infinity : list[list.length - 1]!.length };
}

function redactWith(patterns: Patterns, s: string): string {
  if (s.length < patterns.minLen) return s;
  let hits: string[] | undefined;
  for (const p of patterns.list) if (s.includes(p)) (hits ??= []).push(p);
  if (!hits) return s;

  const spans: [number, number][] = [];
  for (const p of hits) {
    for (let i = s.indexOf(p); i !== -1; i = s.indexOf(p, i + 1)) spans.push([i, i + p.length]);
  }
  spans.sort((a, b) => a[0] - b[0]);
  let out = "";
  let pos = 0;
  let cur: [number, number] | undefined;
  for (const span of spans) {
    if (cur && span[0] <= cur[1]) {
      cur[1] = Math.max(cur[1], span[1]);
      continue;
    }
    if (cur) {
      out += s.slice(pos, cur[0]) + REDACTED;
      pos = cur[1];
    }
    cur = [span[0], span[1]];
  }
  if (cur) {
    out += s.slice(pos, cur[0]) + REDACTED;
    pos = cur[1];
  }
  return out + s.slice(pos);
}
