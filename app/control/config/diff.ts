// A line diff for the config editor: what the operator sees before applying
// and what the audit log keeps. Pure (no DOM, no node:), so the dashboard's
// page and the API share it.
//   1. The common head and tail are cut off (an edit is usually local).
//   2. The middle is diffed by longest common subsequence; a middle too big
//      for that (over MAX_CELLS) is shown as removed whole and added whole.
//   3. Hunks keep CONTEXT unchanged lines around each change.

export type DiffLine = { op: " " | "-" | "+"; text: string; oldLine: number; newLine: number };

export interface Hunk {
  oldStart: number;
  oldCount: number;
  newStart: number;
  newCount: number;
  lines: DiffLine[];
}

const CONTEXT = 3;
const MAX_CELLS = 4_000_000;

const splitLines = (s: string): string[] => {
  if (s === "") return [];
  const lines = s.split("\n");
  if (lines.at(-1) === "") lines.pop();
  return lines;
};

/** Every line of both texts, in order, marked kept, removed or added. */
export function diffLines(before: string, after: string): DiffLine[] {
  const a = splitLines(before);
  const b = splitLines(after);
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++;
  const am = a.slice(head, a.length - tail);
  const bm = b.slice(head, b.length - tail);
  const out: DiffLine[] = [];
  let i = 0;
  let j = 0;
  const keep = (text: string) => out.push({ op: " ", text, oldLine: ++i, newLine: ++j });
  const drop = (text: string) => out.push({ op: "-", text, oldLine: ++i, newLine: j });
  const add = (text: string) => out.push({ op: "+", text, oldLine: i, newLine: ++j });
  for (let k = 0; k < head; k++) keep(a[k]!);
  if (am.length * bm.length > MAX_CELLS) {
    am.forEach(drop);
    bm.forEach(add);
  } else {
    // lcs[x][y]: length of the LCS of am[x..] and bm[y..].
    const w = bm.length + 1;
    const lcs = new Uint32Array((am.length + 1) * w);
    for (let x = am.length - 1; x >= 0; x--) {
      for (let y = bm.length - 1; y >= 0; y--) {
        lcs[x * w + y] = am[x] === bm[y] ? lcs[(x + 1) * w + y + 1]! + 1 : Math.max(lcs[(x + 1) * w + y]!, lcs[x * w + y + 1]!);
      }
    }
    let x = 0;
    let y = 0;
    while (x < am.length || y < bm.length) {
      if (x < am.length && y < bm.length && am[x] === bm[y]) {
        keep(am[x++]!);
        y++;
      } else if (x < am.length && (y === bm.length || lcs[(x + 1) * w + y]! >= lcs[x * w + y + 1]!)) drop(am[x++]!);
      else add(bm[y++]!);
    }
  }
  for (let k = a.length - tail; k < a.length; k++) keep(a[k]!);
  return out;
}

/** The changes grouped into hunks with their context; none when the texts are equal. */
export function diffHunks(before: string, after: string, context = CONTEXT): Hunk[] {
  const lines = diffLines(before, after);
  const changed = lines.map((l, k) => (l.op === " " ? -1 : k)).filter((k) => k >= 0);
  const hunks: Hunk[] = [];
  let k = 0;
  while (k < changed.length) {
    const from = Math.max(0, changed[k]! - context);
    let to = Math.min(lines.length - 1, changed[k]! + context);
    while (k + 1 < changed.length && changed[k + 1]! - context <= to + 1) {
      k++;
      to = Math.min(lines.length - 1, changed[k]! + context);
    }
    k++;
    const part = lines.slice(from, to + 1);
    const first = part[0]!;
    const oldCount = part.filter((l) => l.op !== "+").length;
    const newCount = part.filter((l) => l.op !== "-").length;
    // Lines of each side before the hunk; a side with no lines starts at the line before (as diff -u).
    const oldBefore = first.op === "+" ? first.oldLine : first.oldLine - 1;
    const newBefore = first.op === "-" ? first.newLine : first.newLine - 1;
    hunks.push({
      oldStart: oldCount === 0 ? oldBefore : oldBefore + 1,
      oldCount,
      newStart: newCount === 0 ? newBefore : newBefore + 1,
      newCount,
      lines: part,
    });
  }
  return hunks;
}

/** `diff -u` style text for one file; empty when nothing changed. */
export function unifiedDiff(file: string, before: string, after: string): string {
  const hunks = diffHunks(before, after);
  if (hunks.length === 0) return "";
  const out = [`--- ${file}`, `+++ ${file}`];
  for (const h of hunks) {
    out.push(`@@ -${h.oldStart},${h.oldCount} +${h.newStart},${h.newCount} @@`);
    for (const l of h.lines) out.push(`${l.op}${l.text}`);
  }
  return `${out.join("\n")}\n`;
}
