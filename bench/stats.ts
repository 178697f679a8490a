/** Medians with their spread, percentiles, and the bench's one table. */

export interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly n: number;
}

export function spread(xs: readonly number[]): Spread {
  const sorted = [...xs].filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (sorted.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, n: 0 };
  const mid = Math.floor(sorted.length / 2);
  const median =
    sorted.length % 2 === 1
      ? (sorted[mid] as number)
      : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
  return { median, min: sorted[0] as number, max: sorted.at(-1) as number, n: sorted.length };
}

/** The q-quantile by the nearest-rank method (Infinity stands for "never seen"). */
export function quantile(xs: readonly number[], q: number): number {
  const sorted = [...xs].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number;
}

const num = (x: number, digits: number) => (Number.isFinite(x) ? x.toFixed(digits) : String(x));

/** `median (min–max) unit`; a single run prints its value alone. */
export function show(s: Spread, unit: string, digits = 2): string {
  if (s.n === 0) return 'n/a';
  const range = s.n > 1 ? ` (${num(s.min, digits)}–${num(s.max, digits)})` : '';
  return `${num(s.median, digits)}${range}${unit ? ` ${unit}` : ''}`;
}

/** Per run: the peer's figure over ours (a ratio above 1 means ours is the faster). */
export const ratios = (ours: readonly number[], peer: readonly number[], oursIsTime: boolean): number[] =>
  ours.map((o, i) => {
    const p = peer[i] ?? Number.NaN;
    return oursIsTime ? p / o : o / p;
  });

export interface Row {
  readonly figure: string;
  readonly measured: string;
  readonly peer?: string;
  readonly ratio?: string;
  readonly goal: string;
  /** undefined: no goal, or not measured. */
  readonly met?: boolean | undefined;
}

const COLUMNS = ['figure', 'measured', 'peer', 'ratio', 'goal', 'met?'] as const;

/** A Markdown table (it pastes into docs/scale.md as it is). */
export function table(rows: readonly Row[]): string {
  const cells = rows.map((r) => [
    r.figure,
    r.measured,
    r.peer ?? '',
    r.ratio ?? '',
    r.goal,
    r.met === undefined ? '' : r.met ? 'yes' : 'NO',
  ]);
  const widths = COLUMNS.map((c, i) => Math.max(c.length, ...cells.map((row) => (row[i] as string).length)));
  const line = (row: readonly string[]) =>
    `| ${row.map((c, i) => c.padEnd(widths[i] as number)).join(' | ')} |`;
  return [line(COLUMNS), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}

export async function timed<T>(fn: () => Promise<T>): Promise<{ result: T; seconds: number }> {
  const start = performance.now();
  const result = await fn();
  return { result, seconds: (performance.now() - start) / 1000 };
}
