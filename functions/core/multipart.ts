/**
 * Multipart plans within S3's limits: parts of 5 MiB to 5 GiB (the last may be
 * smaller), at most 10,000 of them.
 */
import {
  MiB,
  type PartPlan,
  PREFERRED_PART_BYTES,
  S3_MAX_PART_BYTES,
  S3_MAX_PARTS,
  S3_MIN_PART_BYTES,
} from '../../contracts/multipart.ts';
import { ValidationError } from './errors.js';

/** The smallest whole-MiB part size ≥ `preferred` that fits the object in 10,000 parts. */
export function planParts(size: number, preferredPartBytes = PREFERRED_PART_BYTES): PartPlan {
  if (!Number.isSafeInteger(size) || size < 0)
    throw new RangeError(`size must be a whole number ≥ 0, got ${size}`);
  const needed = Math.ceil(size / S3_MAX_PARTS);
  const partSize = Math.max(S3_MIN_PART_BYTES, preferredPartBytes, Math.ceil(needed / MiB) * MiB);
  if (partSize > S3_MAX_PART_BYTES) throw new RangeError(`${size} bytes do not fit in ${S3_MAX_PARTS} parts`);
  return { partSize, partCount: Math.max(1, Math.ceil(size / partSize)) };
}

/** Bytes in part n (1-based). */
export function partBytes(plan: PartPlan, size: number, partNumber: number): number {
  if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > plan.partCount) {
    throw new ValidationError('partNumber', `partNumber must be between 1 and ${plan.partCount}`);
  }
  return partNumber < plan.partCount ? plan.partSize : size - plan.partSize * (plan.partCount - 1);
}

/** Parts of the plan that are not stored with the right size. */
export function missingParts(
  plan: PartPlan,
  size: number,
  stored: readonly { partNumber: number; size: number }[],
): number[] {
  const have = new Map(stored.map((p) => [p.partNumber, p.size]));
  const missing: number[] = [];
  for (let n = 1; n <= plan.partCount; n++) if (have.get(n) !== partBytes(plan, size, n)) missing.push(n);
  return missing;
}
