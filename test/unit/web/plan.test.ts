/** Part plans, resume planning, retry delays and progress accounting of the browser client. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MiB, S3_MAX_PART_BYTES, S3_MAX_PARTS, S3_MIN_PART_BYTES } from '../../../contracts/multipart.ts';
import {
  allParts,
  checkPlan,
  formatBytes,
  isRetryableStatus,
  missingParts,
  PartProgress,
  ProgressMeter,
  partRange,
  retryAfterMs,
  retryDelay,
  storedBytes,
} from '../../../web/client/plan.ts';

const EIGHT = 8 * MiB;

describe('checkPlan: the server plan must describe this file within S3 limits', () => {
  it('accepts a tiny file in one part (even below the 5 MiB minimum) and an empty one', () => {
    expect(checkPlan(1, { partSize: EIGHT, partCount: 1 })).toEqual({ partSize: EIGHT, partCount: 1 });
    expect(checkPlan(0, { partSize: EIGHT, partCount: 1 })).toEqual({ partSize: EIGHT, partCount: 1 });
    expect(checkPlan(100, { partSize: 100, partCount: 1 })).toEqual({ partSize: 100, partCount: 1 });
  });

  it('exactly one part: size === partSize is one part; one byte more is two', () => {
    expect(checkPlan(EIGHT, { partSize: EIGHT, partCount: 1 }).partCount).toBe(1);
    expect(() => checkPlan(EIGHT + 1, { partSize: EIGHT, partCount: 1 })).toThrow(/needs 2 parts/);
    expect(checkPlan(EIGHT + 1, { partSize: EIGHT, partCount: 2 }).partCount).toBe(2);
  });

  it('accepts 10,000 parts and refuses 10,001', () => {
    const size = S3_MAX_PARTS * S3_MIN_PART_BYTES;
    expect(checkPlan(size, { partSize: S3_MIN_PART_BYTES, partCount: S3_MAX_PARTS }).partCount).toBe(10_000);
    expect(() => checkPlan(size + 1, { partSize: S3_MIN_PART_BYTES, partCount: S3_MAX_PARTS + 1 })).toThrow(
      /outside 1\.\.10000/,
    );
  });

  it('refuses parts below 5 MiB when there are several, above 5 GiB, and nonsense', () => {
    expect(() => checkPlan(10 * MiB, { partSize: 4 * MiB, partCount: 3 })).toThrow(/below S3's minimum/);
    expect(() => checkPlan(S3_MAX_PART_BYTES + 1, { partSize: S3_MAX_PART_BYTES + 1, partCount: 1 })).toThrow(
      /part size/,
    );
    expect(() => checkPlan(10, { partSize: 0, partCount: 1 })).toThrow(/part size/);
    expect(() => checkPlan(10, { partSize: 1.5, partCount: 1 })).toThrow(/part size/);
    expect(() => checkPlan(10, { partSize: 10, partCount: 0 })).toThrow(/part count/);
    expect(() => checkPlan(-1, { partSize: 10, partCount: 1 })).toThrow(/size/);
  });

  it('refuses a plan that does not cover the file', () => {
    expect(() => checkPlan(64 * MiB, { partSize: EIGHT, partCount: 7 })).toThrow(/does not cover/);
    expect(() => checkPlan(64 * MiB, { partSize: EIGHT, partCount: 9 })).toThrow(/does not cover/);
  });
});

describe('partRange / allParts', () => {
  it('cuts a 64 MiB file into eight 8 MiB parts', () => {
    const parts = allParts(64 * MiB, { partSize: EIGHT, partCount: 8 });
    expect(parts).toHaveLength(8);
    expect(parts.every((p) => p.size === EIGHT)).toBe(true);
    expect(parts.at(-1)).toEqual({ partNumber: 8, start: 56 * MiB, end: 64 * MiB, size: EIGHT });
  });

  it('the last part holds the remainder, down to one byte', () => {
    const plan = { partSize: EIGHT, partCount: 2 };
    expect(partRange(EIGHT + 1, plan, 2)).toEqual({ partNumber: 2, start: EIGHT, end: EIGHT + 1, size: 1 });
  });

  it('10,000 parts: numbered 1..10000, the last ends at the file end', () => {
    const size = S3_MAX_PARTS * S3_MIN_PART_BYTES - 123;
    const plan = checkPlan(size, { partSize: S3_MIN_PART_BYTES, partCount: S3_MAX_PARTS });
    const parts = allParts(size, plan);
    expect(parts).toHaveLength(10_000);
    expect(parts[0]?.partNumber).toBe(1);
    expect(parts.at(-1)).toMatchObject({ partNumber: 10_000, end: size, size: S3_MIN_PART_BYTES - 123 });
  });

  it('refuses part numbers outside the plan', () => {
    const plan = { partSize: EIGHT, partCount: 2 };
    expect(() => partRange(EIGHT * 2, plan, 0)).toThrow(/outside/);
    expect(() => partRange(EIGHT * 2, plan, 3)).toThrow(/outside/);
  });

  it('property: parts are contiguous, cover [0, size) and respect the limits', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 5, max: 64 }),
        fc.integer({ min: 0, max: 200 * MiB }),
        (partMiB, size) => {
          const partSize = partMiB * MiB;
          const plan = checkPlan(size, { partSize, partCount: Math.max(1, Math.ceil(size / partSize)) });
          const parts = allParts(size, plan);
          let at = 0;
          for (const [i, p] of parts.entries()) {
            expect(p.partNumber).toBe(i + 1);
            expect(p.start).toBe(at);
            expect(p.size).toBe(p.end - p.start);
            if (i < parts.length - 1) expect(p.size).toBe(partSize);
            at = p.end;
          }
          expect(at).toBe(size);
        },
      ),
    );
  });
});

describe('missingParts: resume planning from the parts the store holds', () => {
  const size = 20 * MiB + 7; // parts of 8, 8, 4 MiB + 7 bytes
  const plan = { partSize: EIGHT, partCount: 3 };

  it('nothing stored: every part; everything stored: none', () => {
    expect(missingParts(size, plan, []).map((p) => p.partNumber)).toEqual([1, 2, 3]);
    const all = allParts(size, plan).map((p) => ({ partNumber: p.partNumber, size: p.size }));
    expect(missingParts(size, plan, all)).toEqual([]);
    expect(storedBytes(size, plan, all)).toBe(size);
  });

  it('a stored part of the wrong size is sent again', () => {
    const stored = [
      { partNumber: 1, size: EIGHT },
      { partNumber: 2, size: EIGHT - 1 }, // truncated
      { partNumber: 3, size: 4 * MiB + 7 },
    ];
    expect(missingParts(size, plan, stored).map((p) => p.partNumber)).toEqual([2]);
    expect(storedBytes(size, plan, stored)).toBe(size - EIGHT);
  });

  it('a wrong-size last part (e.g. from a plan with another part size) is sent again', () => {
    const stored = [
      { partNumber: 1, size: EIGHT },
      { partNumber: 3, size: EIGHT },
    ];
    expect(missingParts(size, plan, stored).map((p) => p.partNumber)).toEqual([2, 3]);
  });

  it('ignores parts outside the plan and keeps the last listing of a part number', () => {
    const stored = [
      { partNumber: 4, size: EIGHT },
      { partNumber: 0, size: EIGHT },
      { partNumber: 1, size: 1 },
      { partNumber: 1, size: EIGHT },
    ];
    expect(missingParts(size, plan, stored).map((p) => p.partNumber)).toEqual([2, 3]);
  });

  it('resumes a 10,000-part upload from a sparse listing', () => {
    const big = S3_MAX_PARTS * S3_MIN_PART_BYTES;
    const bigPlan = { partSize: S3_MIN_PART_BYTES, partCount: S3_MAX_PARTS };
    const stored = Array.from({ length: 9_990 }, (_, i) => ({ partNumber: i + 1, size: S3_MIN_PART_BYTES }));
    const missing = missingParts(big, bigPlan, stored);
    expect(missing.map((p) => p.partNumber)).toEqual([
      9991, 9992, 9993, 9994, 9995, 9996, 9997, 9998, 9999, 10000,
    ]);
    expect(storedBytes(big, bigPlan, stored)).toBe(9_990 * S3_MIN_PART_BYTES);
  });

  it('property: missing + correctly stored = the whole plan, no part in both', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.array(
          fc.record({
            partNumber: fc.integer({ min: 0, max: 45 }),
            size: fc.constantFrom(EIGHT, 1, 3 * MiB),
          }),
        ),
        (count, stored) => {
          const sz = (count - 1) * EIGHT + 3 * MiB;
          const p = { partSize: EIGHT, partCount: count };
          const missing = new Set(missingParts(sz, p, stored).map((x) => x.partNumber));
          const last = new Map(stored.map((s) => [s.partNumber, s.size]));
          for (const part of allParts(sz, p)) {
            expect(missing.has(part.partNumber)).toBe(last.get(part.partNumber) !== part.size);
          }
        },
      ),
    );
  });
});

describe('retry delays', () => {
  it('grow exponentially from the base, with half of each delay random', () => {
    const low = (n: number) => retryDelay(n, { baseMs: 100, random: () => 0 });
    const high = (n: number) => retryDelay(n, { baseMs: 100, random: () => 0.999999 });
    expect([0, 1, 2, 3].map(low)).toEqual([50, 100, 200, 400]);
    expect([0, 1, 2, 3].map(high)).toEqual([100, 200, 400, 800]);
  });

  it('are capped', () => {
    expect(retryDelay(30, { baseMs: 500, maxMs: 15_000, random: () => 0.999999 })).toBe(15_000);
    expect(retryDelay(30, { baseMs: 500, maxMs: 15_000, random: () => 0 })).toBe(7_500);
  });

  it('property: within [ceiling/2, ceiling] and never decreasing in the ceiling', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 40 }), fc.double({ min: 0, max: 0.999, noNaN: true }), (n, r) => {
        const d = retryDelay(n, { baseMs: 500, maxMs: 15_000, random: () => r });
        const ceiling = Math.min(15_000, 500 * 2 ** n);
        expect(d).toBeGreaterThanOrEqual(Math.floor(ceiling / 2));
        expect(d).toBeLessThanOrEqual(ceiling);
      }),
    );
  });

  it('Retry-After: seconds or a date, capped, garbage ignored', () => {
    const now = Date.parse('2026-11-21T12:00:00Z');
    expect(retryAfterMs('3', now)).toBe(3000);
    expect(retryAfterMs('Sat, 21 Nov 2026 12:00:10 GMT', now)).toBe(10_000);
    expect(retryAfterMs('999999', now)).toBe(60_000);
    expect(retryAfterMs('soon', now)).toBeUndefined();
    expect(retryAfterMs(null, now)).toBeUndefined();
  });

  it('retries timeouts, throttling and server errors only', () => {
    expect([408, 429, 500, 502, 503, 504].every(isRetryableStatus)).toBe(true);
    expect([200, 400, 401, 403, 404, 409, 413, 415].some(isRetryableStatus)).toBe(false);
  });
});

describe('progress accounting', () => {
  it('reports bytes and a rate over the window', () => {
    let t = 0;
    const meter = new ProgressMeter('uploading', 100 * MiB, () => t, 3000);
    t = 1000;
    expect(meter.set(10 * MiB)).toEqual({
      phase: 'uploading',
      bytesDone: 10 * MiB,
      bytesTotal: 100 * MiB,
      bytesPerSecond: 10 * MiB,
    });
    t = 2000;
    expect(meter.set(30 * MiB).bytesPerSecond).toBe(15 * MiB);
    // A stall: the rate covers only the last 3 s, so it falls, then reaches 0.
    t = 4000;
    expect(meter.set(30 * MiB).bytesPerSecond).toBe(Math.round((20 * MiB) / 3));
    t = 9500;
    expect(meter.set(30 * MiB).bytesPerSecond).toBe(0);
  });

  it('a stall with no progress reported at all: the rate read meanwhile falls to 0 (probe 13, W3)', () => {
    let t = 0;
    const meter = new ProgressMeter('uploading', 100 * MiB, () => t, 3000);
    t = 1000;
    meter.set(10 * MiB);
    t = 2000;
    expect(meter.set(30 * MiB).bytesPerSecond).toBe(15 * MiB);
    // No more progress events: the rate is read on the page's clock, not the last sample's.
    t = 3500;
    expect(meter.snapshot().bytesPerSecond).toBe(Math.round((30 * MiB * 1000) / 3500));
    t = 4000;
    expect(meter.snapshot().bytesPerSecond).toBe(Math.round((20 * MiB) / 3));
    // 3 s with nothing sent: the rate over the last 3 s is 0.
    t = 5000;
    expect(meter.snapshot()).toMatchObject({ bytesDone: 30 * MiB, bytesPerSecond: 0 });
  });

  it('never goes backwards and never past the total', () => {
    let t = 0;
    const meter = new ProgressMeter('hashing', 1000, () => t);
    t = 1;
    meter.set(600);
    expect(meter.set(400).bytesDone).toBe(600);
    expect(meter.set(5000).bytesDone).toBe(1000);
    expect(meter.add(-10).bytesDone).toBe(1000);
  });

  it('starts a resumed upload at what is stored', () => {
    const meter = new ProgressMeter('uploading', 64 * MiB, () => 0, 3000, 40 * MiB);
    expect(meter.snapshot()).toMatchObject({ bytesDone: 40 * MiB, bytesPerSecond: 0 });
  });

  it('counts parts in flight, completed parts, and a retried part from zero without going back', () => {
    let t = 0;
    const meter = new ProgressMeter('uploading', 3 * EIGHT, () => t);
    const parts = new PartProgress(0);
    t = 1;
    expect(meter.set(parts.sent(1, MiB)).bytesDone).toBe(MiB);
    expect(meter.set(parts.sent(2, 2 * MiB)).bytesDone).toBe(3 * MiB);
    expect(meter.set(parts.finished(1, EIGHT)).bytesDone).toBe(EIGHT + 2 * MiB);
    // Part 2 fails and restarts: the total stays until the retry passes it.
    expect(meter.set(parts.restart(2)).bytesDone).toBe(EIGHT + 2 * MiB);
    expect(meter.set(parts.sent(2, 3 * MiB)).bytesDone).toBe(EIGHT + 3 * MiB);
    meter.set(parts.finished(2, EIGHT));
    expect(meter.set(parts.finished(3, EIGHT)).bytesDone).toBe(3 * EIGHT);
  });

  it('formats bytes for people', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(999)).toBe('999 B');
    expect(formatBytes(1500)).toBe('1.50 kB');
    expect(formatBytes(67_108_864)).toBe('67.1 MB');
    expect(formatBytes(512_000_000)).toBe('512 MB');
  });

  it('formats a rate (not a whole number) with at most three significant digits', () => {
    // The probe's 10-byte file: hashed at 41.32231404958678 B/s, uploaded at 263.1578947368421 B/s.
    expect(formatBytes(10 / 0.242)).toBe('41 B');
    expect(formatBytes(10 / 0.038)).toBe('263 B');
    expect(formatBytes(0.4)).toBe('0 B');
    expect(formatBytes(999.6)).toBe('1.00 kB'); // not "1000 B"
    expect(formatBytes(99_960)).toBe('100 kB'); // not "100.0 kB"
    expect(formatBytes(1234.5678)).toBe('1.23 kB');
    expect(formatBytes(45_678.9)).toBe('45.7 kB');
  });
});
