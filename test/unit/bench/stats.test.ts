import { describe, expect, it } from 'vitest';
import { cpuSeconds, rssBytes, treePids } from '../../../bench/proc.ts';
import { quantile, ratios, show, spread, table } from '../../../bench/stats.ts';

describe('bench statistics', () => {
  it('median with its spread, odd and even counts; NaN runs are left out', () => {
    expect(spread([3, 1, 2])).toEqual({ median: 2, min: 1, max: 3, n: 3 });
    expect(spread([4, 1, 3, 2])).toEqual({ median: 2.5, min: 1, max: 4, n: 4 });
    expect(spread([Number.NaN, 5])).toEqual({ median: 5, min: 5, max: 5, n: 1 });
    expect(show(spread([3, 1, 2]), 's', 1)).toBe('2.0 (1.0–3.0) s');
    expect(show(spread([2]), 'x')).toBe('2.00 x');
    expect(show(spread([]), 's')).toBe('n/a');
  });

  it('nearest-rank quantiles; a file never seen (Infinity) shows in the tail', () => {
    const xs = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(quantile(xs, 0.5)).toBe(50);
    expect(quantile(xs, 0.95)).toBe(95);
    expect(quantile(xs, 0.99)).toBe(99);
    expect(quantile([1, 2, Number.POSITIVE_INFINITY], 0.99)).toBe(Number.POSITIVE_INFINITY);
  });

  it('ratios are the peer over ours for times, ours over the peer for rates (above 1: ours is faster)', () => {
    expect(ratios([2, 4], [1, 8], true)).toEqual([0.5, 2]);
    expect(ratios([2, 4], [1, 8], false)).toEqual([2, 0.5]);
  });

  it('prints a Markdown table with every column, met as yes/NO and nothing without a goal', () => {
    const text = table([
      { figure: 'a', measured: '1 s', peer: 'p', ratio: '2 x', goal: '>= 1x', met: true },
      { figure: 'b', measured: '2', goal: '<= 1', met: false },
      { figure: 'c', measured: '3', goal: '' },
    ]);
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^\| figure +\| measured +\| peer +\| ratio +\| goal +\| met\? \|$/);
    expect(lines[2]).toMatch(/\| a .*\| yes +\|$/);
    expect(lines[3]).toMatch(/\| b .*\| NO +\|$/);
    expect(lines[4]).toMatch(/\| c .*\| {6}\|$/);
    expect(new Set(lines.map((l) => l.length)).size).toBe(1);
  });
});

describe('bench process tree', () => {
  it('finds this process, counts its CPU and its resident memory', () => {
    const pids = treePids(process.pid);
    expect(pids).toContain(process.pid);
    const before = cpuSeconds([process.pid]);
    const end = Date.now() + 200;
    while (Date.now() < end) Math.sqrt(Math.random());
    expect(cpuSeconds([process.pid])).toBeGreaterThan(before);
    expect(rssBytes([process.pid])).toBeGreaterThan(10 * 1024 * 1024);
  });
});
