/**
 * The ledger's records as every part sees them (no storage keys here: contracts/ledger-keys.ts),
 * and the change feed's cursor, which the API hands to clients and the agent records in its row.
 */

import type * as z from 'zod';
import type { Challenge, replicaStatusSchema, uploadStatusSchema } from './api.js';

/** What a version says of its content: the part a feed entry and a replication message repeat. */
export interface VersionContent {
  readonly path: string;
  readonly version: number;
  /** Lower-case hex; null for a tombstone. */
  readonly sha256: string | null;
  readonly size: number;
  readonly contentType: string | null;
  readonly deleted: boolean;
  readonly committedAt: string;
}

/** One committed version of a path: immutable once claimed. */
export interface FileVersion extends VersionContent {
  /** The upload (or delete request) that claimed this version: makes a retried commit find its own claim. */
  readonly uploadId: string;
}

/** `expired`: the bytes did not arrive (or the multipart upload was not completed) in time; never committed. */
export type UploadStatus = z.infer<typeof uploadStatusSchema>;

export interface Upload {
  readonly uploadId: string;
  readonly path: string;
  readonly sha256: string;
  readonly size: number;
  readonly contentType: string;
  readonly ifVersion?: number | undefined;
  readonly status: UploadStatus;
  readonly version?: number | undefined;
  readonly reason?: string | undefined;
  readonly deduplicated?: boolean | undefined;
  /** Set for uploads above the multipart threshold. */
  readonly multipart?:
    | { readonly multipartId: string; readonly partSize: number; readonly partCount: number }
    | undefined;
  /** The proof-of-possession challenge the latest claim was answered with (core/possession.ts). */
  readonly challenge?: Challenge | undefined;
  /** The nonce of the challenge already answered: each challenge is weighed once. */
  readonly challengeSpent?: string | undefined;
  /** After this a pending upload is expired (see core/expiry.ts); absent on uploads recorded before expiry existed. */
  readonly expiresAt?: string | undefined;
  /** The caller asked for a new version even if the content equals the path's head. */
  readonly newVersion?: boolean | undefined;
  /**
   * When the client last asked to complete this multipart upload (ISO-8601): the lost-notification
   * sweep sends the completion again for a pending upload asked long enough ago (core/pending-sweep.ts).
   */
  readonly completionRequestedAt?: string | undefined;
  readonly createdAt: string;
  readonly updatedAt: string;
}

/**
 * Byte ranges of the declared size, and a nonce, that a claimant proves it holds (core/possession.ts):
 * recorded on the upload as the claim's answer states it.
 */
export type { Challenge };

/** Content-addressed bytes in the origin bucket, once proven. */
export interface Blob {
  readonly sha256: string;
  readonly size: number;
  readonly verifiedAt: string;
  /** What storage reported for the verified object: lets a later event tell "same object" from "overwritten". */
  readonly etag: string | undefined;
  readonly versionId: string | undefined;
}

export type ReplicaStatus = z.infer<typeof replicaStatusSchema>;

/** What a target has applied for one path. */
export interface TargetState {
  readonly targetId: string;
  readonly path: string;
  readonly appliedVersion: number;
  readonly status: ReplicaStatus;
  readonly appliedAt: string;
  readonly reason?: string | undefined;
  /** The replica object's ETag when it was written: a different ETag later means someone altered it. */
  readonly etag?: string | undefined;
  /** The last failure to apply a version here, if any since. */
  readonly failure?: { readonly version: number; readonly reason: string; readonly at: string } | undefined;
}

/** One entry of the change feed. */
export interface Change extends VersionContent {
  readonly shard: number;
  readonly seq: number;
  readonly appendedAt: string;
  /** Every selecting target's queue took it; unset while the fan-out is pending or failed. */
  readonly fannedOut?: boolean | undefined;
}

/** A change-feed cursor: one sequence number per shard, each the last entry read. */
export type Cursor = readonly number[];

export function initialCursor(shards: number): Cursor {
  return Array.from({ length: shards }, () => 0);
}

const toBase64Url = (ascii: string): string =>
  btoa(ascii).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');

/** The cursor as the API returns it (opaque to clients): base64url of `{"v":1,"s":[...]}`. */
export function encodeCursor(cursor: Cursor): string {
  return toBase64Url(JSON.stringify({ v: 1, s: cursor }));
}

/** The cursor of `text` for a feed of `shards` shards, or undefined when it is not one `encodeCursor` made. */
export function parseCursor(text: string, shards: number): Cursor | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(atob(text.replaceAll('-', '+').replaceAll('_', '/')));
  } catch {
    return undefined;
  }
  // Exactly what encodeCursor writes: version 1, the shards' sequences, nothing else.
  const fields = typeof parsed === 'object' && parsed !== null ? Object.keys(parsed).sort().join() : '';
  if (fields !== 's,v' || (parsed as { v?: unknown }).v !== 1) return undefined;
  const seqs = (parsed as { s?: unknown } | null)?.s;
  if (
    !Array.isArray(seqs) ||
    seqs.length !== shards ||
    !seqs.every((n) => Number.isSafeInteger(n) && (n as number) >= 0)
  ) {
    return undefined;
  }
  return seqs as number[];
}
