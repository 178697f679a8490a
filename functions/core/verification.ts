/**
 * Verification that goes on across invocations: an object too large to hash within one Lambda
 * invocation is hashed in ranges (ranged GETs of the one object version being verified) while the
 * invocation has time; the SHA-256 state, with the offset it reached, is saved in the ledger and a
 * continuation message on the ingest queue names it to the next invocation (docs/scale.md, "Largest
 * verifiable object"). The digest is the one a single pass gives: every byte is fed once, in order.
 */
import * as z from 'zod';
import { resumableSha256 } from '../../common/sha256-resumable.js';
import type { BlobStore } from './ports.js';

/** How the ingest verifies objects that storage reports no full-object SHA-256 for. */
export interface VerificationOptions {
  /**
   * Objects up to this size are stream-hashed in one pass (node:crypto, the fastest engine); larger
   * ones in ranges that may span invocations. @default 1 GiB
   */
  readonly onePassMaxBytes?: number | undefined;
  /** Bytes per ranged GET. @default 16 MiB */
  readonly rangeBytes?: number | undefined;
  /** Ranged GETs in flight ahead of the hash (memory: rangeBytes × readAhead). @default 4 */
  readonly readAhead?: number | undefined;
  /**
   * Whether the invocation has time for another range. Asked before each range after the first,
   * so every invocation makes progress.
   */
  readonly hasTime: () => boolean;
}

export const DEFAULT_ONE_PASS_MAX_BYTES = 1024 ** 3;
export const DEFAULT_RANGE_BYTES = 16 * 1024 ** 2;
export const DEFAULT_READ_AHEAD = 4;

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);

/**
 * A verification part-way through, as the continuation message carries it. Everything the next
 * invocation needs is here: the object version, how far the hash got and its state.
 */
export const verificationProgressSchema = z.object({
  sha256: sha256Hex,
  versionId: z.string().min(1).optional(),
  /** Identifies the object when storage keeps no versions: another ETag means other bytes. */
  etag: z.string().optional(),
  size: z.number().int().nonnegative(),
  offset: z.number().int().nonnegative(),
  /** hash-wasm's saved SHA-256 state after `offset` bytes, base64. */
  state: z.string().min(1).max(1024),
  /** The S3 event's time, kept for the uploads' time window once the bytes are proven. */
  eventTime: z.string().optional(),
  /** Invocations this verification has taken so far. */
  hops: z.number().int().positive(),
});
export type VerificationProgress = z.output<typeof verificationProgressSchema>;

/**
 * What a continuation message names: the object and how far its hash got, not the hash state. The
 * state stays in the ledger, where only the ingest writes it (BlobLedger.putVerificationProgress):
 * anyone who may send to the ingest queue could otherwise send the state of other bytes, and have
 * bytes never read committed as those (AWS review 8, A1). A state in a message is dropped unread.
 */
export const verificationPointerSchema = verificationProgressSchema.omit({ state: true });
export type VerificationPointer = z.output<typeof verificationPointerSchema>;

/** The continuation message's body on the ingest queue (S3's notifications have `Records`). */
export const verificationMessageSchema = z.object({ verifyBlob: verificationPointerSchema });

/** Sends a continuation to the ingest queue: the next invocation goes on from the saved progress. */
export interface VerificationQueue {
  continueVerification(pointer: VerificationPointer): Promise<void>;
}

/** The object version being hashed, as storage described it. */
export interface HashTarget {
  readonly sha256: string;
  readonly versionId: string | undefined;
  readonly etag: string | undefined;
  readonly size: number;
  readonly eventTime?: string | undefined;
}

export type RangeHashResult =
  | { readonly done: true; readonly sha256: string; readonly size: number }
  | { readonly done: false; readonly progress: VerificationProgress }
  /** The object (version) went away between ranges. */
  | { readonly done: false; readonly gone: true };

/**
 * Ranged GETs of `target` from `offset`, up to `readAhead` in flight ahead of the hash, so the
 * network and the hash work at once while memory stays at `rangeBytes × readAhead`.
 */
function rangeReader(
  blobs: BlobStore,
  target: HashTarget,
  offset: number,
  rangeBytes: number,
  readAhead: number,
) {
  let next = offset;
  const inFlight: { length: number; bytes: Promise<Uint8Array | undefined> }[] = [];
  return async (): Promise<Uint8Array | undefined> => {
    while (inFlight.length < readAhead && next < target.size) {
      const length = Math.min(rangeBytes, target.size - next);
      const bytes = blobs.readRange(target.sha256, next, length, target.versionId);
      // A read ahead that is never awaited (the invocation's time ran out) must not go unhandled.
      bytes.catch(() => undefined);
      inFlight.push({ length, bytes });
      next += length;
    }
    const range = inFlight.shift();
    if (!range) throw new Error(`no range left to read of blobs/${target.sha256}`);
    const bytes = await range.bytes;
    if (bytes !== undefined && bytes.byteLength !== range.length) {
      throw new Error(
        `a ranged GET of blobs/${target.sha256} returned ${bytes.byteLength} of ${range.length} bytes`,
      );
    }
    return bytes;
  };
}

/**
 * Hashes `target` from `from` (or its start) in ranges while `hasTime()` says so: the digest when
 * the end is reached, else the progress to go on from.
 */
export async function hashInRanges(
  blobs: BlobStore,
  target: HashTarget,
  options: VerificationOptions,
  from?: VerificationProgress,
): Promise<RangeHashResult> {
  const hasher = await resumableSha256(from ? Buffer.from(from.state, 'base64') : undefined);
  let offset = from?.offset ?? 0;
  const read = rangeReader(
    blobs,
    target,
    offset,
    options.rangeBytes ?? DEFAULT_RANGE_BYTES,
    Math.max(1, options.readAhead ?? DEFAULT_READ_AHEAD),
  );
  let first = true;
  while (offset < target.size && (first || options.hasTime())) {
    first = false;
    const bytes = await read();
    if (bytes === undefined) return { done: false, gone: true };
    hasher.update(bytes);
    offset += bytes.byteLength;
  }
  if (offset >= target.size) return { done: true, sha256: hasher.digestHex(), size: offset };
  const progress: VerificationProgress = {
    sha256: target.sha256,
    ...(target.versionId === undefined ? {} : { versionId: target.versionId }),
    ...(target.etag === undefined ? {} : { etag: target.etag }),
    ...(target.eventTime === undefined ? {} : { eventTime: target.eventTime }),
    size: target.size,
    offset,
    state: Buffer.from(hasher.save()).toString('base64'),
    hops: (from?.hops ?? 0) + 1,
  };
  return { done: false, progress };
}
