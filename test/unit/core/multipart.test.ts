import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MiB, S3_MAX_PARTS, S3_MIN_PART_BYTES } from '../../../contracts/multipart.ts';
import { missingParts, partBytes, planParts } from '../../../functions/core/multipart.js';

describe('multipart planning', () => {
  it('a tiny or empty object is one part', () => {
    expect(planParts(0)).toEqual({ partSize: 8 * MiB, partCount: 1 });
    expect(planParts(1)).toEqual({ partSize: 8 * MiB, partCount: 1 });
    expect(partBytes(planParts(1), 1, 1)).toBe(1);
  });

  it('exactly one part, then two', () => {
    expect(planParts(8 * MiB).partCount).toBe(1);
    expect(planParts(8 * MiB + 1).partCount).toBe(2);
    expect(partBytes(planParts(8 * MiB + 1), 8 * MiB + 1, 2)).toBe(1);
  });

  it('exactly 10,000 parts at the largest size the preferred part allows, then bigger parts', () => {
    expect(planParts(S3_MAX_PARTS * 8 * MiB)).toEqual({ partSize: 8 * MiB, partCount: S3_MAX_PARTS });
    expect(planParts(S3_MAX_PARTS * 8 * MiB + 1)).toEqual({
      partSize: 9 * MiB,
      partCount: Math.ceil((S3_MAX_PARTS * 8 * MiB + 1) / (9 * MiB)),
    });
  });

  it('any size: parts within S3 limits, at most 10,000, summing to the size (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 5 * 1024 ** 4 }),
        fc.integer({ min: 1, max: 64 }),
        (size, preferredMiB) => {
          const plan = planParts(size, preferredMiB * MiB);
          expect(plan.partCount).toBeLessThanOrEqual(S3_MAX_PARTS);
          expect(plan.partSize).toBeGreaterThanOrEqual(S3_MIN_PART_BYTES);
          const last = partBytes(plan, size, plan.partCount);
          expect(last).toBeGreaterThanOrEqual(size === 0 ? 0 : 1);
          expect(last).toBeLessThanOrEqual(plan.partSize);
          expect(plan.partSize * (plan.partCount - 1) + last).toBe(size);
        },
      ),
    );
  });

  it('resume: only parts not stored, or stored with the wrong size, are missing', () => {
    const size = 20 * MiB + 5;
    const plan = planParts(size);
    expect(plan.partCount).toBe(3);
    expect(missingParts(plan, size, [])).toEqual([1, 2, 3]);
    expect(missingParts(plan, size, [{ partNumber: 2, size: 8 * MiB }])).toEqual([1, 3]);
    expect(
      missingParts(plan, size, [
        { partNumber: 1, size: 8 * MiB },
        { partNumber: 2, size: 8 * MiB },
        { partNumber: 3, size: 4 },
      ]),
    ).toEqual([3]);
  });

  it('refuses part numbers outside the plan, naming the field', () => {
    expect(() => partBytes(planParts(10), 10, 2)).toThrow(/partNumber must be between 1 and 1/);
  });
});
