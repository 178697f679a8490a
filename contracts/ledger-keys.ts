/**
 * The ledger's key layout on its one DynamoDB table (`pk`, `sk`), and the shapes of the items
 * other parts than the adapter read. The adapter (functions/adapters/dynamo-ledger.ts), the
 * on-prem agent and the agents' IAM conditions (`dynamodb:LeadingKeys`, lib/) all take the keys
 * from here, so a key can change in one place only.
 *
 *   P#<path>     V#<version, 12 digits>  one claimed version (immutable but for its feed seq)
 *   P#<path>     HEAD                    the highest committed version, moved forward only
 *   P#<path>     FOLDER                  the folder/file rule's counts: live files under the path, and the
 *                                        folders its own live file was counted into
 *   T#<target>#<path> STATE              what a target has applied (keyed by target first, so an
 *                                        agent's role can be limited to its own rows by dynamodb:LeadingKeys)
 *   U#<upload>   UPLOAD                  an upload and its outcome
 *   U#<upload>   PART#<12 digits>        a part of a multipart upload, as its uploader reported it
 *   B#<sha256>   BLOB                    a verified blob: which object version is pinned (only the ingest writes it)
 *   W#<sha256>   U#<upload>              an upload waiting for that blob (strongly consistent, unlike a GSI;
 *                                        also in the pending-uploads index, for the sweeps). A partition of
 *                                        its own: the functions that write pointers cannot be granted the
 *                                        pin by dynamodb:LeadingKeys, which tells partitions apart, not sort keys
 *   FEED#<shard> S#<seq, 12 digits>      the change feed
 *   LAG#<target> WATERMARK               feed cursor below which the target has applied everything,
 *                                        and the lag monitor's figures of its latest run
 *   RECONCILE    CHECKPOINT              where reconciliation's walk over the heads stands
 *   SWEEP        CHECKPOINT              where the lost-notification sweep's walk over pending uploads stands
 *   AGENT#<target> AGENT                 a pull agent's heartbeat, cursor and counters
 *   IDEM#[<caller hash>#]<key> IDEM      an Idempotency-Key, per caller: the request's hash and its first answer
 *   VERIFY#<sha256> V#<version id> | E#<etag>  a verification in ranges part-way through: its hash
 *                                        state, which only the ingest writes (a continuation message
 *                                        names it, never carries it)
 */
import * as z from 'zod';

export interface ItemKey {
  readonly pk: string;
  readonly sk: string;
}

/** Partition key prefixes. */
export const PK = {
  path: 'P#',
  targetState: 'T#',
  upload: 'U#',
  blob: 'B#',
  pendingUpload: 'W#',
  feed: 'FEED#',
  lag: 'LAG#',
  agent: 'AGENT#',
  idempotency: 'IDEM#',
  verification: 'VERIFY#',
  reconcile: 'RECONCILE',
  sweep: 'SWEEP',
} as const;

/** Sort keys and sort key prefixes. */
export const SK = {
  version: 'V#',
  head: 'HEAD',
  folder: 'FOLDER',
  targetState: 'STATE',
  upload: 'UPLOAD',
  part: 'PART#',
  blob: 'BLOB',
  pendingUpload: 'U#',
  feedEntry: 'S#',
  feedCounter: 'COUNTER',
  watermark: 'WATERMARK',
  agent: 'AGENT',
  idempotency: 'IDEM',
  checkpoint: 'CHECKPOINT',
} as const;

/** Numbers in sort keys: fixed width, so that string order is numeric order. */
export const padNumber = (n: number): string => n.toString().padStart(12, '0');

export const pathKey = (path: string): string => `${PK.path}${path}`;
export const versionSortKey = (version: number): string => `${SK.version}${padNumber(version)}`;
export const versionItemKey = (path: string, version: number): ItemKey => ({
  pk: pathKey(path),
  sk: versionSortKey(version),
});
export const headItemKey = (path: string): ItemKey => ({ pk: pathKey(path), sk: SK.head });
/**
 * The folder/file rule's row of a path: `liveFiles` under it (as a folder) and `countedIn`, the
 * folders its own live file was counted into, kept by the commits (functions/core/ports.ts,
 * FolderRuleWrite).
 */
export const folderItemKey = (path: string): ItemKey => ({ pk: pathKey(path), sk: SK.folder });
export const targetStateKey = (targetId: string, path: string): string =>
  `${PK.targetState}${targetId}#${path}`;
export const targetStateItemKey = (targetId: string, path: string): ItemKey => ({
  pk: targetStateKey(targetId, path),
  sk: SK.targetState,
});
export const uploadPartitionKey = (uploadId: string): string => `${PK.upload}${uploadId}`;
export const uploadItemKey = (uploadId: string): ItemKey => ({
  pk: uploadPartitionKey(uploadId),
  sk: SK.upload,
});
export const partItemKey = (uploadId: string, partNumber: number): ItemKey => ({
  pk: uploadPartitionKey(uploadId),
  sk: `${SK.part}${padNumber(partNumber)}`,
});
export const blobPartitionKey = (sha256: string): string => `${PK.blob}${sha256}`;
export const blobItemKey = (sha256: string): ItemKey => ({ pk: blobPartitionKey(sha256), sk: SK.blob });
export const pendingPartitionKey = (sha256: string): string => `${PK.pendingUpload}${sha256}`;
export const pendingUploadItemKey = (sha256: string, uploadId: string): ItemKey => ({
  pk: pendingPartitionKey(sha256),
  sk: `${SK.pendingUpload}${uploadId}`,
});
/** The object a verification in ranges hashes: its version, or its ETag where storage keeps no versions. */
export const verificationItemKey = (object: {
  readonly sha256: string;
  readonly versionId?: string | undefined;
  readonly etag?: string | undefined;
}): ItemKey => ({
  pk: `${PK.verification}${object.sha256}`,
  sk: object.versionId === undefined ? `E#${object.etag ?? ''}` : `V#${object.versionId}`,
});
export const feedKey = (shard: number): string => `${PK.feed}${shard}`;
export const feedSortKey = (seq: number): string => `${SK.feedEntry}${padNumber(seq)}`;
/**
 * The shard's feed counter (`lastSeq`): moved from seq to seq + 1 in the same write as entry
 * seq + 1, so entries appear in order (docs/design-notes.md). It sorts before every entry.
 */
export const feedCounterItemKey = (shard: number): ItemKey => ({ pk: feedKey(shard), sk: SK.feedCounter });
/**
 * The two reads of the change feed that the API's ledger and the agent both make, as plain
 * Query inputs (the caller sends them with its own client): entries of a shard after a seq,
 * oldest first, and the newest seq of a shard. Strongly consistent: a reader that sees seq n
 * sees everything below it (docs/design-notes.md).
 */
export const feedAfterQuery = (table: string, shard: number, afterSeq: number, limit: number) => ({
  TableName: table,
  KeyConditionExpression: 'pk = :pk AND sk > :after',
  ExpressionAttributeValues: { ':pk': feedKey(shard), ':after': feedSortKey(afterSeq) },
  Limit: limit,
  ConsistentRead: true,
});

/**
 * Records on a target's row why `version` failed there (a replicate function's failure, an agent's
 * refusal): the applied version and status stay as they are (a row made here holds version 0,
 * `failed`), and applying a version clears it. One UpdateItem input, for the functions and the agent.
 */
export const targetFailureUpdate = (
  table: string,
  failure: { targetId: string; path: string; version: number; reason: string; at: string },
) => ({
  TableName: table,
  Key: targetStateItemKey(failure.targetId, failure.path),
  UpdateExpression:
    'SET targetId = :target, #path = :path, appliedVersion = if_not_exists(appliedVersion, :zero), #status = if_not_exists(#status, :failed), failedVersion = :version, failedReason = :reason, failedAt = :at',
  ExpressionAttributeNames: { '#status': 'status', '#path': 'path' },
  ExpressionAttributeValues: {
    ':target': failure.targetId,
    ':path': failure.path,
    ':zero': 0,
    ':failed': 'failed',
    ':version': failure.version,
    ':reason': failure.reason.slice(0, 1000),
    ':at': failure.at,
  },
});

export const latestFeedSeqQuery = (table: string, shard: number) => ({
  TableName: table,
  KeyConditionExpression: 'pk = :pk AND begins_with(sk, :entry)',
  ExpressionAttributeValues: { ':pk': feedKey(shard), ':entry': SK.feedEntry },
  ScanIndexForward: false,
  Limit: 1,
  ConsistentRead: true,
  ProjectionExpression: 'seq',
});

export const watermarkItemKey = (targetId: string): ItemKey => ({
  pk: `${PK.lag}${targetId}`,
  sk: SK.watermark,
});
export const reconcileCheckpointItemKey: ItemKey = { pk: PK.reconcile, sk: SK.checkpoint };
export const sweepCheckpointItemKey: ItemKey = { pk: PK.sweep, sk: SK.checkpoint };
export const agentRowKey = (targetId: string): ItemKey => ({ pk: `${PK.agent}${targetId}`, sk: SK.agent });
export const idempotencyItemKey = (key: string): ItemKey => ({
  pk: `${PK.idempotency}${key}`,
  sk: SK.idempotency,
});

/**
 * The ledger table's TTL attribute (epoch seconds). Only idempotency records carry it: DynamoDB
 * deletes them some time after their expiry, as cleanup; nothing relies on when.
 */
export const TTL_ATTRIBUTE = 'ttl';

/** The ledger table's secondary index of live files by folder (heads that are not tombstones). */
export const LIVE_FILES_INDEX = {
  name: 'live-files',
  partitionKey: 'folderPk',
  sortKey: 'folderSk',
} as const;
/**
 * The pending-uploads index: every pending pointer (`B#<sha256>` `U#<upload>`) and nothing else, so
 * that the sweeps read the pointers, not the whole table. Its keys are written on pointers only
 * (sparse), over PENDING_SHARDS partitions so that no one partition takes every claim.
 */
export const PENDING_INDEX = {
  name: 'pending-uploads',
  partitionKey: 'pendingPk',
  sortKey: 'pendingSk',
} as const;
export const PENDING_SHARDS = 16;
/** A pointer's partition in the pending-uploads index, from its upload id. */
export const pendingPartition = (uploadId: string): string => {
  let sum = 0;
  for (let i = 0; i < uploadId.length; i++) sum = (sum * 31 + uploadId.charCodeAt(i)) % 65_521;
  return pendingShardKey(sum % PENDING_SHARDS);
};
export const pendingShardKey = (shard: number): string => `PENDING#${shard}`;

/** A head's partition in the live-files index: its top folder. */
export const folderPartition = (path: string): string => `D#${path.split('/')[0]}`;

/** Where blobs live in the origin bucket: `blobs/<sha256>`. */
export const BLOB_PREFIX = 'blobs/';
export const blobKey = (sha256: string): string => `${BLOB_PREFIX}${sha256}`;
/**
 * The origin bucket's lifecycle rule aborts incomplete multipart uploads after this many days
 * (lib/constructs/origin-store.ts sets it; functions/core/expiry.ts keeps uploads resumable below it).
 */
export const MULTIPART_ABORT_AFTER_DAYS = 1;

// ---------------------------------------------------------------- the agents' IAM conditions

/** Partition keys (`dynamodb:LeadingKeys`, StringLike) an agent may read: versions, the feed, its own row. */
export function agentReadableKeys(targetId: string): string[] {
  return [`${PK.path}*`, `${PK.feed}*`, agentRowKey(targetId).pk];
}

/**
 * Partition keys an agent may only GetItem: a blob's record (which object version was verified). The
 * pending pointers live in `W#`, so not even a Query here would list who is uploading what.
 */
export const AGENT_BLOB_RECORD_KEYS: string[] = [`${PK.blob}*`];

/** The partitions the lag monitor writes: the targets' watermark rows and the feed (fanned-out marks). */
export const LAG_MONITOR_WRITE_KEYS: readonly string[] = [`${PK.lag}*`, `${PK.feed}*`];
/** The partition the pending sweep writes: its checkpoint row. */
export const PENDING_SWEEP_WRITE_KEYS: readonly string[] = [PK.sweep];

/**
 * The partitions of the mirror's content that the functions which commit write: paths (heads,
 * versions, folder rows), uploads, their pending pointers and the feed. Not the blob pins, the
 * targets' or agents' rows, the lag watermarks or any checkpoint: a bug or a compromised dependency
 * in a function that commits cannot mark a target as holding what it does not.
 */
export const CONTENT_WRITE_KEYS: readonly string[] = [
  `${PK.path}*`,
  `${PK.upload}*`,
  `${PK.pendingUpload}*`,
  `${PK.feed}*`,
];
/**
 * The ingest writes the content's partitions, the blob pins and its verifications part-way through:
 * no other function may. A pin names the object version every reader serves as verified bytes, and
 * a hash state is the ingest's own whoever sends a continuation (AWS review 9, B4).
 */
export const INGEST_WRITE_KEYS: readonly string[] = [
  ...CONTENT_WRITE_KEYS,
  `${PK.blob}*`,
  `${PK.verification}*`,
];
/** The API writes the content's partitions, and its idempotency records. */
export const API_WRITE_KEYS: readonly string[] = [...CONTENT_WRITE_KEYS, `${PK.idempotency}*`];
/** The multipart completion ends uploads: their rows and their pending pointers. */
export const COMPLETION_WRITE_KEYS: readonly string[] = [`${PK.upload}*`, `${PK.pendingUpload}*`];
/**
 * Reconcile forgets a target's row for a file the target lost and moves that target's lag
 * watermark back below it, saves its checkpoint, and ends expired uploads (their rows and pending
 * pointers).
 */
export const RECONCILE_WRITE_KEYS: readonly string[] = [
  `${PK.targetState}*`,
  `${PK.lag}*`,
  PK.reconcile,
  `${PK.upload}*`,
  `${PK.pendingUpload}*`,
];

/**
 * The partitions items are deleted from, by function: pending-upload pointers (`W#`), blob records
 * (`B#`, the ingest only), idempotency claims, target rows. Never a path's versions or the feed,
 * which no code deletes: a wrong key or a compromised dependency cannot remove history (AWS review
 * 9, B9).
 */
export const DELETES_UNDER = {
  api: [`${PK.pendingUpload}*`, `${PK.idempotency}*`],
  ingest: [`${PK.blob}*`, `${PK.pendingUpload}*`],
  completeMultipart: [`${PK.pendingUpload}*`],
  reconcile: [`${PK.targetState}*`, `${PK.pendingUpload}*`],
} as const satisfies Record<string, readonly string[]>;
/**
 * The partitions updated, by function, where narrower than its writes: a pending pointer (`W#`) is
 * written whole by its claim and deleted at its end, never updated. An UpdateItem there upserts one,
 * and the ingest commits a pointer's bytes by the claim it carries (path, size, time window) without
 * reading the upload (docs/design-notes.md): a role that may update pointers but not put them could
 * rewrite where a pending upload's bytes are committed. Reconcile forgets target rows (DeleteItem)
 * and never marks one: an update there could mark a target as holding a version it lacks, which the
 * replicate then skips and the lag monitor counts as applied.
 */
export const UPDATES_UNDER = {
  completeMultipart: [`${PK.upload}*`],
  reconcile: [`${PK.lag}*`, PK.reconcile, `${PK.upload}*`],
} as const satisfies Record<string, readonly string[]>;
/** The lag monitor replaces its watermark rows whole; the feed it only marks (UpdateItem). */
export const LAG_MONITOR_PUTS_UNDER: readonly string[] = [`${PK.lag}*`];

/** The partitions a target's replicate function writes: its own target rows (state and open copies). */
export function targetRowKeys(targetId: string): string[] {
  return [`${PK.targetState}${targetId}#*`];
}

/** Partition keys an agent may write: its applied state per path and its agent row. */
export function agentWritableKeys(targetId: string): string[] {
  return [...targetRowKeys(targetId), agentRowKey(targetId).pk];
}

// ---------------------------------------------------------------- items the agent reads

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);

/** `P#<path>` / `V#…` and `HEAD`: one version of a path (absent fields as the adapter writes them). */
export const versionItemSchema = z.object({
  path: z.string(),
  version: z.number().int().nonnegative(),
  sha256: sha256Hex.nullish().transform((v) => v ?? null),
  size: z.number().int().nonnegative(),
  contentType: z
    .string()
    .nullish()
    .transform((v) => v ?? null),
  deleted: z
    .boolean()
    .optional()
    .transform((v) => v === true),
  committedAt: z.string(),
  uploadId: z.string(),
});

/** `FEED#<shard>` / `S#<seq>`: one entry of the change feed. */
export const feedItemSchema = z.object({
  shard: z.number().int().nonnegative(),
  seq: z.number().int().positive(),
  ...versionItemSchema.omit({ uploadId: true }).shape,
  appendedAt: z.string(),
  /** Every selecting target's queue took it; absent while the fan-out is pending or failed. */
  fannedOut: z.literal(true).optional(),
});

/** `B#<sha256>` / `BLOB`: the agent reads which object version the ingest verified. */
export const blobItemSchema = z.object({
  sha256: sha256Hex,
  size: z.number().int().nonnegative(),
  verifiedAt: z.string(),
  versionId: z.string().optional(),
});

/** `AGENT#<target>` / `AGENT`: a pull agent's heartbeat, cursor and counters; the lag monitor reads it too. */
export const agentRowSchema = z.object({
  targetId: z.string(),
  heartbeatAt: z.string(),
  /** The confirmed feed cursor, encoded as the API encodes it (contracts/model.ts `encodeCursor`). */
  cursor: z.string(),
  /** The same cursor as numbers, one seq per shard. */
  cursorSeqs: z.array(z.number().int().nonnegative()),
  appliedCount: z.number().int().nonnegative(),
  refusedCount: z.number().int().nonnegative(),
  agentVersion: z.string(),
  status: z.enum(['starting', 'running', 'stopping', 'stopped']),
  host: z.string(),
  pid: z.number().int(),
  instanceId: z.string(),
  startedAt: z.string(),
  backlogQueue: z.number().optional(),
  backlogFeed: z.number().optional(),
  lagSeconds: z.number().optional(),
  conditions: z.array(z.string()).optional(),
  /**
   * Its state was made from nothing and it has not yet read the whole feed: the disk may lack what
   * the target's rows (written by an earlier run) say it holds. The lag monitor counts it behind.
   */
  rebuilding: z.boolean().optional(),
  /** While rebuilding: when the oldest change it may still lack was committed, once known. */
  rebuildingSince: z.string().optional(),
});
export type AgentRow = Readonly<z.infer<typeof agentRowSchema>>;
