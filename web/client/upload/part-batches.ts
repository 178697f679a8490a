/**
 * Parts presigned and recorded in batches, so a large upload takes a few dozen API calls rather
 * than two per part (docs/scale.md): the signer hashes the next parts and presigns them in one
 * call, ahead of the PUTs; the recorder reports stored parts a batch at a time.
 */
import { apiLimits, type PartReport, type PartRequest, type PresignedPart } from '../../../contracts/api.ts';
import type { MirrorApi } from '../api.ts';
import type { PartRange } from '../plan.ts';
import type { RangeHash } from './hash.ts';

export interface BatchSizes {
  /** The first batch: small, so the first PUT starts after hashing a few parts, not hundreds. */
  readonly first: number;
  /** Batches double up to this, at most the API's `maxPartsPerRequest`. */
  readonly max: number;
}

/** About 16 full batches per upload, never fewer than 64 parts in one, at most the API's limit. */
export function batchSizes(partCount: number, concurrency: number): BatchSizes {
  const max = Math.min(apiLimits.maxPartsPerRequest, Math.max(64, Math.ceil(partCount / 16)));
  return { first: Math.min(max, Math.max(2, concurrency * 2)), max };
}

/** A URL with less life than this left is signed again before a PUT starts with it. */
const FRESH_FOR_MS = 60_000;

export interface SignedPart {
  readonly signed: PresignedPart;
  /** The part's SHA-256, as signed in (and recorded). */
  readonly sha256: string;
  /** Until when (the signer's `now`) the URL has a minute left. */
  readonly freshUntil: number;
}

/**
 * How long a URL lives from its signing: SigV4's `X-Amz-Expires` when it has one (S3's presigned
 * URLs), else `expiresAt` read on this clock. `expiresAt` is the API's clock: read on a browser's
 * clock 20 minutes fast, every 15-minute URL was stale on arrival, and every PUT had its whole
 * batch signed again (2.5 million signatures for a 50 GiB upload instead of 6,400).
 */
function lifeMs(signed: PresignedPart): number {
  let expires: string | null = null;
  try {
    expires = new URL(signed.url).searchParams.get('X-Amz-Expires');
  } catch {
    // Not a URL this can read: its expiresAt stands.
  }
  if (expires !== null && /^\d+$/.test(expires)) return Number(expires) * 1000;
  return Date.parse(signed.expiresAt) - Date.now();
}

interface SignerContext {
  readonly api: MirrorApi;
  readonly uploadId: string;
  readonly hash: RangeHash;
  readonly signal: AbortSignal;
  readonly concurrency: number;
}

/**
 * Presigned URLs for the parts to send, in order, a batch per call, one call at a time. A part
 * whose URL is missing, about to expire or refused is signed again together with the parts after
 * it that need it too.
 */
export class PartSigner {
  readonly #ctx: SignerContext;
  readonly #todo: readonly PartRange[];
  readonly #position = new Map<number, number>();
  readonly #signed = new Map<number, SignedPart>();
  readonly #hashes = new Map<number, string>();
  readonly #done = new Set<number>();
  readonly #max: number;
  #size: number;
  /** Index in `todo` of the first part no batch has looked at. */
  #covered = 0;
  #chain: Promise<unknown> = Promise.resolve();
  #ahead: Promise<void> | undefined;

  readonly #now: () => number;

  /** `now`: a clock that only runs forward (a wall clock stepped back would keep dead URLs). */
  constructor(
    ctx: SignerContext,
    todo: readonly PartRange[],
    sizes: BatchSizes,
    now: () => number = () => performance.now(),
  ) {
    this.#ctx = ctx;
    this.#now = now;
    this.#todo = todo;
    todo.forEach((part, i) => {
      this.#position.set(part.partNumber, i);
    });
    this.#size = sizes.first;
    this.#max = sizes.max;
  }

  /**
   * A URL for `part`: one signed earlier while it has a minute left, else one signed now (used
   * however short its life: near the upload's expiry the API signs shorter ones). `renew`:
   * storage refused the last one (an expired or bad signature).
   */
  async get(part: PartRange, renew = false): Promise<SignedPart> {
    if (renew) this.#signed.delete(part.partNumber);
    const have = this.#signed.get(part.partNumber);
    if (!(have && this.#fresh(have))) await this.#fill(part.partNumber);
    const signed = this.#signed.get(part.partNumber);
    if (signed === undefined) throw new Error(`part ${part.partNumber} was not presigned`);
    this.#prefetch();
    return signed;
  }

  /** The part is stored: its URL is spent. */
  done(partNumber: number): void {
    this.#done.add(partNumber);
    this.#signed.delete(partNumber);
  }

  #fresh(signed: SignedPart): boolean {
    return this.#now() < signed.freshUntil;
  }

  /** Signs the next batch while the PUTs of this one run, once few signed URLs are left. */
  #prefetch(): void {
    if (this.#ahead !== undefined || this.#covered >= this.#todo.length) return;
    const lookahead = Math.max(this.#ctx.concurrency * 2, Math.ceil(this.#size / 4));
    if (this.#signed.size > lookahead) return;
    // A failure here is met again, and reported, by the part that needs the URL.
    this.#ahead = this.#fill(undefined)
      .catch(() => undefined)
      .finally(() => {
        this.#ahead = undefined;
      });
  }

  /** One presign call at a time: from `needed` on (a URL to renew), or the parts not signed yet. */
  #fill(needed: number | undefined): Promise<void> {
    const run = this.#chain.then(() => this.#fillNow(needed));
    this.#chain = run.catch(() => undefined);
    return run;
  }

  async #fillNow(needed: number | undefined): Promise<void> {
    if (this.#ctx.signal.aborted) throw this.#ctx.signal.reason;
    const have = needed === undefined ? undefined : this.#signed.get(needed);
    if (have && this.#fresh(have)) return;
    const from = needed === undefined ? this.#covered : (this.#position.get(needed) ?? 0);
    const batch: PartRange[] = [];
    for (let i = from; i < this.#todo.length && batch.length < this.#size; i++) {
      const part = this.#todo[i] as PartRange;
      const signed = this.#signed.get(part.partNumber);
      if (!this.#done.has(part.partNumber) && !(signed && this.#fresh(signed))) batch.push(part);
      this.#covered = Math.max(this.#covered, i + 1);
    }
    if (batch.length === 0) return;
    const requests: PartRequest[] = [];
    for (const part of batch) {
      requests.push({ partNumber: part.partNumber, size: part.size, sha256: await this.#hashOf(part) });
    }
    const { api, uploadId, signal } = this.#ctx;
    // Not retried here: the PUT that needs the URL retries, with its backoff.
    const signed = await api.presignParts(uploadId, requests, { signal, retry: false });
    const received = this.#now();
    signed.forEach((s, i) => {
      const freshUntil = received + lifeMs(s) - FRESH_FOR_MS;
      this.#signed.set(s.partNumber, { signed: s, sha256: (requests[i] as PartRequest).sha256, freshUntil });
    });
    this.#size = Math.min(this.#max, this.#size * 2);
  }

  async #hashOf(part: PartRange): Promise<string> {
    const known = this.#hashes.get(part.partNumber);
    if (known !== undefined) return known;
    const sha256 = await this.#ctx.hash(part.start, part.end);
    this.#hashes.set(part.partNumber, sha256);
    return sha256;
  }
}

export type RecordedPart = PartReport & { readonly partNumber: number };

/** The first wait before parts stored are reported without a full batch; it doubles to a minute. */
const FIRST_REPORT_DELAY_MS = 1000;
const LONGEST_REPORT_DELAY_MS = 60_000;

/**
 * Stored parts reported to the API a batch at a time (`PUT /v1/uploads/{id}/parts`): as soon as
 * `batch` are waiting, else after a delay that starts at a second and doubles to a minute, so an
 * interrupted upload resumes without sending much again while a long one makes few reports;
 * `flush` reports the rest.
 */
export class PartRecorder {
  readonly #api: MirrorApi;
  readonly #uploadId: string;
  readonly #signal: AbortSignal;
  readonly #batch: number;
  #waiting: RecordedPart[] = [];
  #chain: Promise<unknown> = Promise.resolve();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #delayMs = FIRST_REPORT_DELAY_MS;

  constructor(api: MirrorApi, uploadId: string, signal: AbortSignal, batch: number) {
    this.#api = api;
    this.#uploadId = uploadId;
    this.#signal = signal;
    this.#batch = Math.min(apiLimits.maxPartsPerRequest, Math.max(1, batch));
    signal.addEventListener('abort', () => this.#disarm(), { once: true });
  }

  async add(part: RecordedPart): Promise<void> {
    this.#waiting.push(part);
    if (this.#waiting.length >= this.#batch) await this.flush(false);
    else this.#arm();
  }

  /** Reports every part waiting (`all`), or full batches; one report at a time. */
  flush(all = true): Promise<void> {
    if (all) this.#disarm();
    const run = this.#chain.then(async () => {
      // Parts added while an earlier report ran wait for their own batch.
      while (this.#waiting.length > 0 && (all || this.#waiting.length >= this.#batch)) {
        const parts = this.#waiting.slice(0, this.#batch);
        await this.#api.recordParts(this.#uploadId, parts, { signal: this.#signal });
        this.#waiting = this.#waiting.slice(parts.length);
      }
    });
    this.#chain = run.catch(() => undefined);
    return run;
  }

  #arm(): void {
    if (this.#timer !== undefined || this.#signal.aborted) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#delayMs = Math.min(LONGEST_REPORT_DELAY_MS, this.#delayMs * 2);
      // A failed report leaves its parts waiting for the next one (or the final flush, which throws).
      this.flush(true).catch(() => undefined);
    }, this.#delayMs);
  }

  #disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
