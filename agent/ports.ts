/**
 * What the agent needs from AWS, narrowed to what its IAM role allows
 * (docs/agent.md): read blobs, read versions and the feed, write its own
 * target's rows, and consume its own queue. `aws.ts` implements these with the
 * SDK; the unit tests with in-memory fakes.
 */
import type { AgentRow } from '../contracts/ledger-keys.ts';
import type { Change, FileVersion } from '../contracts/model.ts';

export interface BlobSource {
  /** Streams `blobs/<sha256>` from the origin bucket. Throws RefusedError('missing-blob') when it is absent. */
  open(
    sha256: string,
    signal: AbortSignal,
  ): Promise<{ body: AsyncIterable<Uint8Array>; contentLength: number | undefined; close(): void }>;
}

export interface LedgerView {
  getVersion(path: string, version: number): Promise<FileVersion | undefined>;
  /**
   * getVersion, with the blob record of `sha256` (the content the message names) read in the same
   * request, for the download that follows (BlobRecords.getBlob takes it). Optional: without it the
   * applier calls getVersion, and the download reads the blob record itself.
   */
  getVersionWithBlob?(path: string, version: number, sha256: string | null): Promise<FileVersion | undefined>;
  readFeed(shard: number, afterSeq: number, limit: number): Promise<Change[]>;
  latestFeedSeq(shard: number): Promise<number>;
  /** `T#<target>#<path>` / `STATE`: status verified, never backwards (the ledger refuses). */
  recordApplied(path: string, version: number, at: string): Promise<void>;
  /**
   * The same row: why `version` was refused here (kept until a version is applied), so `status` and
   * `sync --wait` name it as they name an S3 target's failure.
   */
  recordRefusal(path: string, version: number, reason: string, at: string): Promise<void>;
  writeAgentRow(row: AgentRow): Promise<void>;
  readAgentRow(): Promise<AgentRow | undefined>;
}

export interface QueueMessage {
  readonly messageId: string;
  readonly receiptHandle: string;
  readonly body: string;
  readonly receiveCount: number;
  readonly groupId: string | undefined;
}

export interface QueuePort {
  receive(options: {
    max: number;
    waitSeconds: number;
    visibilitySeconds: number;
    signal: AbortSignal;
  }): Promise<QueueMessage[]>;
  delete(receiptHandle: string): Promise<void>;
  /** Sets the visibility timeout of held messages (extension, or release with a backoff). */
  setVisibility(entries: readonly { receiptHandle: string; seconds: number }[]): Promise<void>;
  /** Messages waiting plus in flight, if the queue says (needs sqs:GetQueueAttributes). */
  backlog(): Promise<number | undefined>;
}
