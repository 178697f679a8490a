/**
 * S3's multipart limits, which the API's part plans and every client that checks or follows a
 * plan must agree on: parts of 5 MiB to 5 GiB (the last may be smaller), at most 10,000 of them.
 * Browser-safe.
 */

export const MiB = 1024 * 1024;
/** S3: every part but the last is at least 5 MiB. */
export const S3_MIN_PART_BYTES = 5 * MiB;
/** S3: a part is at most 5 GiB. */
export const S3_MAX_PART_BYTES = 5 * 1024 * MiB;
/** S3: at most 10,000 parts per upload. */
export const S3_MAX_PARTS = 10_000;
/** The part size the API's plans start from (a plan for a very large file uses larger parts). */
export const PREFERRED_PART_BYTES = 8 * MiB;

/** How an object is cut into parts: every part `partSize` bytes but the last. */
export interface PartPlan {
  readonly partSize: number;
  readonly partCount: number;
}
