/**
 * CPU time and resident memory of a process tree from /proc (Linux): every descendant of
 * a root pid, all threads included (a process's stat sums its threads).
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

const TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

interface Stat {
  readonly ppid: number;
  /** utime + stime, seconds. */
  readonly cpu: number;
}

function readStat(pid: number): Stat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may hold spaces: fields start after the last ')'.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return { ppid: Number(fields[1]), cpu: ticks / TICKS_PER_SECOND };
  } catch {
    return undefined;
  }
}

/** The root and every live descendant. */
export function treePids(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const stat = readStat(pid);
    if (stat === undefined) continue;
    children.set(stat.ppid, [...(children.get(stat.ppid) ?? []), pid]);
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length > 0) {
    const pid = todo.pop() as number;
    out.push(pid);
    todo.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** CPU seconds (user + system) the tree's live processes have used so far. */
export const cpuSeconds = (pids: readonly number[]): number =>
  pids.reduce((sum, pid) => sum + (readStat(pid)?.cpu ?? 0), 0);

/** Resident set of the tree, bytes (VmRSS of each process). */
export function rssBytes(pids: readonly number[]): number {
  let sum = 0;
  for (const pid of pids) {
    try {
      const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      sum += Number(match?.[1] ?? 0) * 1024;
    } catch {
      // Gone since it was listed.
    }
  }
  return sum;
}

/** Samples a tree's RSS until stopped; keeps the peak. */
export class RssPeak {
  peak = 0;
  readonly #timer: NodeJS.Timeout;

  constructor(root: number, intervalMs = 250) {
    const sample = () => {
      this.peak = Math.max(this.peak, rssBytes(treePids(root)));
    };
    sample();
    this.#timer = setInterval(sample, intervalMs);
  }

  stop(): number {
    clearInterval(this.#timer);
    return this.peak;
  }
}
