/** Ids derived from a path by hashing it: its change-feed shard and its FIFO group and deduplication ids. */
import { createHash } from 'node:crypto';

/** The change-feed shard of a path: stable for a given shard count. */
export function shardOf(path: string, shards: number): number {
  return createHash('sha256').update(path).digest().readUInt32BE(0) % shards;
}

/**
 * SQS FIFO group and deduplication ids allow 128 ASCII characters at most,
 * and paths may be longer or non-ASCII: hash them.
 */
export function messageGroupId(path: string): string {
  return createHash('sha256').update(path).digest('hex');
}

export function deduplicationId(path: string, version: number, resend?: string): string {
  return createHash('sha256')
    .update(`${path}\n${version}${resend === undefined ? '' : `\n${resend}`}`)
    .digest('hex');
}
