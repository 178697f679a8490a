/**
 * The pure part of a browser upload: which parts a multipart plan has, which of them
 * are still missing, how long to wait before a retry, what a progress event says.
 * No I/O here, so every rule is unit-tested at its limits.
 */
import { backoffMs } from '../../common/retry.ts';

import {
  type PartPlan,
  S3_MAX_PART_BYTES,
  S3_MAX_PARTS,
  S3_MIN_PART_BYTES,
} from '../../contracts/multipart.ts';

export interface PartRange {
  /** 1-based, as S3 numbers parts. */
  readonly partNumber: number;
  readonly start: number;
  /** Exclusive. */
  readonly end: number;
  readonly size: number;
}

export interface StoredPart {
  readonly partNumber: number;
  readonly size: number;
}

const isWhole = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

/**
 * Checks a plan the server sent against the file's size and S3's limits; throws a
 * readable error when it cannot describe this file (a client and a server that
 * disagree must not upload half a file).
 */
export function checkPlan(size: number, plan: PartPlan): PartPlan {
  const { partSize, partCount } = plan;
  if (!isWhole(size)) throw new RangeError(`size must be a whole number of bytes, got ${size}`);
  if (!isWhole(partSize) || partSize === 0 || partSize > S3_MAX_PART_BYTES) {
    throw new RangeError(`the server's part size ${partSize} is outside 1..${S3_MAX_PART_BYTES} bytes`);
  }
  if (!isWhole(partCount) || partCount < 1 || partCount > S3_MAX_PARTS) {
    throw new RangeError(`the server's part count ${partCount} is outside 1..${S3_MAX_PARTS}`);
  }
  if (partCount > 1 && partSize < S3_MIN_PART_BYTES) {
    throw new RangeError(
      `the server's part size ${partSize} is below S3's minimum of ${S3_MIN_PART_BYTES} bytes`,
    );
  }
  const expected = Math.max(1, Math.ceil(size / partSize));
  if (partCount !== expected) {
    throw new RangeError(
      `the server's plan (${partCount} parts of ${partSize} bytes) does not cover ${size} bytes (needs ${expected} parts)`,
    );
  }
  return { partSize, partCount };
}

/** The bytes of part `partNumber` (1-based): every part is `partSize` but the last. */
export function partRange(size: number, plan: PartPlan, partNumber: number): PartRange {
  if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > plan.partCount) {
    throw new RangeError(`part number ${partNumber} is outside 1..${plan.partCount}`);
  }
  const start = (partNumber - 1) * plan.partSize;
  const end = partNumber === plan.partCount ? size : start + plan.partSize;
  return { partNumber, start, end, size: end - start };
}

/** Every part of the plan, in order. */
export function allParts(size: number, plan: PartPlan): PartRange[] {
  return Array.from({ length: plan.partCount }, (_, i) => partRange(size, plan, i + 1));
}

/**
 * The parts still to send: every part of the plan that the store does not hold with
 * exactly the expected size. A stored part of the wrong size (a different plan, a
 * truncated write) is sent again, which replaces it. Stored parts outside the plan are
 * ignored (the server's complete uses only the plan's parts).
 */
export function missingParts(size: number, plan: PartPlan, stored: readonly StoredPart[]): PartRange[] {
  const have = new Map<number, number>();
  for (const p of stored) have.set(p.partNumber, p.size);
  return allParts(size, plan).filter((part) => have.get(part.partNumber) !== part.size);
}

/** Bytes the store already holds with the right size: what a resumed upload need not send. */
export function storedBytes(size: number, plan: PartPlan, stored: readonly StoredPart[]): number {
  const missing = missingParts(size, plan, stored).reduce((sum, p) => sum + p.size, 0);
  return size - missing;
}

export interface BackoffOptions {
  /** First retry waits about this long. @default 500 */
  readonly baseMs?: number;
  /** No wait is longer. @default 15000 */
  readonly maxMs?: number;
  /** A number in [0, 1). @default Math.random */
  readonly random?: () => number;
}

/**
 * How long to wait before retry `attempt` (0 for the first retry): exponential, capped,
 * with "equal jitter" (half fixed, half random) so retries of parallel parts spread out
 * but still grow with every failure.
 */
export function retryDelay(attempt: number, options: BackoffOptions = {}): number {
  return backoffMs(attempt, options.baseMs ?? 500, options.maxMs ?? 15_000, options.random, 'equal');
}

/**
 * A `Retry-After` header's wait in ms (seconds or an HTTP date), capped; undefined
 * when absent or unreadable.
 */
export function retryAfterMs(
  header: string | null | undefined,
  now: number,
  maxMs = 60_000,
): number | undefined {
  if (header === null || header === undefined || header.trim() === '') return undefined;
  const text = header.trim();
  const ms = /^\d+$/.test(text) ? Number(text) * 1000 : Date.parse(text) - now;
  if (!Number.isFinite(ms)) return undefined;
  return Math.min(maxMs, Math.max(0, ms));
}

/** HTTP statuses worth retrying: timeouts, throttling, server errors. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status <= 599);
}

export type Phase = 'hashing' | 'uploading' | 'verifying' | 'committed' | 'deduplicated' | 'rejected';

export interface UploadProgress {
  readonly phase: Phase;
  readonly bytesDone: number;
  readonly bytesTotal: number;
  /** Over the last few seconds of this phase; 0 when nothing moves (or before a rate is known). */
  readonly bytesPerSecond: number;
}

/**
 * Bytes and rate of one phase. The rate is taken over a sliding window (default 3 s)
 * of samples, so a stall shows as a falling rate rather than the phase's average.
 * Bytes never go backwards: a part that is retried is credited again only past what
 * was already counted.
 */
export class ProgressMeter {
  private samples: Array<{ t: number; bytes: number }> = [];
  private done = 0;

  constructor(
    readonly phase: Phase,
    readonly total: number,
    private readonly now: () => number = () => performance.now(),
    private readonly windowMs = 3000,
    start = 0,
  ) {
    this.done = Math.min(total, Math.max(0, start));
    this.samples.push({ t: this.now(), bytes: this.done });
  }

  get bytesDone(): number {
    return this.done;
  }

  /** Sets the bytes done so far (clamped to 0..total, never below the last value). */
  set(bytes: number): UploadProgress {
    this.done = Math.min(this.total, Math.max(this.done, bytes));
    this.samples.push({ t: this.now(), bytes: this.done });
    return this.snapshot();
  }

  add(bytes: number): UploadProgress {
    return this.set(this.done + bytes);
  }

  /**
   * The rate runs up to now, not to the last sample: with no progress for the window it is 0,
   * where the rate of the last samples would keep saying the upload goes well.
   */
  snapshot(): UploadProgress {
    const t = this.now();
    // Keep one sample older than the window, so the window is always spanned.
    while (this.samples.length > 1 && (this.samples[1]?.t ?? t) <= t - this.windowMs) this.samples.shift();
    const first = this.samples[0];
    let rate = 0;
    if (first && t > first.t) rate = ((this.done - first.bytes) * 1000) / (t - first.t);
    return {
      phase: this.phase,
      bytesDone: this.done,
      bytesTotal: this.total,
      bytesPerSecond: Math.max(0, Math.round(rate)),
    };
  }
}

/**
 * Reports `meter` every `everyMs` until stopped: progress is otherwise reported only when bytes
 * move, so a stalled request would leave the last rate shown for as long as it hangs.
 */
export function reportEvery(
  meter: ProgressMeter,
  report: (progress: UploadProgress) => void,
  everyMs = 1000,
): () => void {
  const timer = setInterval(() => report(meter.snapshot()), everyMs);
  return () => clearInterval(timer);
}

/**
 * Bytes in flight per part, for the "uploading" phase: completed parts count in full,
 * a part in flight counts what its request has sent, and a retried part starts again
 * from 0 without the total going backwards (the meter keeps the maximum).
 */
export class PartProgress {
  private readonly inFlight = new Map<number, number>();
  private completed: number;

  constructor(initial = 0) {
    this.completed = initial;
  }

  sent(partNumber: number, bytes: number): number {
    this.inFlight.set(partNumber, bytes);
    return this.total();
  }

  restart(partNumber: number): number {
    this.inFlight.delete(partNumber);
    return this.total();
  }

  finished(partNumber: number, size: number): number {
    this.inFlight.delete(partNumber);
    this.completed += size;
    return this.total();
  }

  total(): number {
    let sum = this.completed;
    for (const bytes of this.inFlight.values()) sum += bytes;
    return sum;
  }
}

/** `12.3 MB/s`, `512 kB`, for people. Decimal units, as network rates are quoted. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  for (;;) {
    // Rates are rarely whole: bytes are shown whole, the larger units to three significant
    // digits, and a value that rounds to 1000 moves up a unit rather than show a fourth digit.
    const shown = unit === 0 ? Math.round(value) : Number(value.toPrecision(3));
    if (!(shown >= 1000) || unit === units.length - 1) {
      const digits = unit === 0 || shown >= 100 ? 0 : shown >= 10 ? 1 : 2;
      return `${shown.toFixed(digits)} ${units[unit]}`;
    }
    value /= 1000;
    unit++;
  }
}
