/**
 * The ledger on one DynamoDB table (`pk`, `sk`). The key layout is stated once, in
 * contracts/ledger-keys.ts: the on-prem agent and the agents' IAM conditions use it too.
 */
import { createHash } from 'node:crypto';
import {
  type CancellationReason,
  ConditionalCheckFailedException,
  type DynamoDBClient,
  TransactionCanceledException,
} from '@aws-sdk/client-dynamodb';
import {
  DeleteCommand,
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  paginateQuery,
  paginateScan,
  QueryCommand,
  ScanCommand,
  TransactGetCommand,
  TransactWriteCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { batchGetItems } from '../../common/dynamo-batch-get.js';
import {
  agentRowKey,
  blobItemKey,
  feedAfterQuery,
  feedCounterItemKey,
  feedItemSchema,
  feedKey,
  feedSortKey,
  folderItemKey,
  folderPartition,
  headItemKey,
  idempotencyItemKey,
  LIVE_FILES_INDEX,
  latestFeedSeqQuery,
  PENDING_INDEX,
  PENDING_SHARDS,
  PK,
  partItemKey,
  pathKey,
  pendingPartition,
  pendingPartitionKey,
  pendingShardKey,
  pendingUploadItemKey,
  reconcileCheckpointItemKey,
  SK,
  sweepCheckpointItemKey,
  TTL_ATTRIBUTE,
  targetFailureUpdate,
  targetStateItemKey,
  targetStateKey,
  uploadItemKey,
  uploadPartitionKey,
  verificationItemKey,
  versionItemKey,
  versionItemSchema,
  versionSortKey,
  watermarkItemKey,
} from '../../contracts/ledger-keys.js';
import type { Blob, Challenge, Change, FileVersion, TargetState, Upload } from '../../contracts/model.js';
import { ClaimTakenError } from '../core/errors.js';
import type {
  AgentReport,
  BlobRecord,
  CommitResult,
  CommitState,
  CommitWrite,
  CopyUpload,
  IdempotencyClaim,
  IdempotencyRecord,
  LagFigures,
  LagRecord,
  Ledger,
  PendingClaim,
  PendingPointer,
  ReconcileCheckpoint,
  ReplicationRead,
  StoredPart,
} from '../core/ports.js';
import { pendingClaimOf } from '../core/ports.js';
import { type VerificationProgress, verificationProgressSchema } from '../core/verification.js';

/** Named conditions, as Powertools' idempotency layer names its own. */
const CONDITIONS = {
  claimIsFree: 'attribute_not_exists(pk)',
  entryExists: 'attribute_exists(pk)',
  headIsNew: 'attribute_not_exists(version)',
  headIsAt: 'version = :previous',
  feedIsEmpty: 'attribute_not_exists(lastSeq)',
  feedEndsAt: 'lastSeq = :previous',
  uploadIsPending: '#status = :pending',
  challengeIsUnanswered:
    '#challenge.#nonce = :nonce AND (attribute_not_exists(challengeSpent) OR challengeSpent <> :nonce)',
  // Expiry is checked here, not left to TTL: DynamoDB deletes expired items late, dynalite never.
  idempotencyKeyIsFree:
    'attribute_not_exists(pk) OR expiresAt < :now OR (#status = :inProgress AND lockedUntil < :now)',
  idempotencyClaimIsOurs: '#status = :inProgress AND claimToken = :token',
  blobIsUnpinnedOrOurs: 'attribute_not_exists(versionId) OR versionId = :versionId',
  blobIsUnpinnedOursOrReplaced:
    'attribute_not_exists(versionId) OR versionId = :versionId OR versionId = :replaces',
  targetIsBehind:
    'attribute_not_exists(appliedVersion) OR appliedVersion < :version OR (appliedVersion = :version AND #status <> :verified)',
  copyUploadIs: 'uploadId = :uploadId',
  // A live head carries the live-files index keys; a tombstone's head and no head have none.
  holdsNoLiveFile: 'attribute_not_exists(#folderPk)',
  // The folder/file rule's row of the path (FolderRuleWrite): no live file lies under it.
  pathHoldsNoFiles: 'attribute_not_exists(liveFiles) OR liveFiles <= :zero',
} as const;

const COPY_UPLOAD_FIELDS = [
  'uploadId',
  'version',
  'sha256',
  'sourceVersionId',
  'partBytes',
  'startedAt',
  'expiresAt',
] as const satisfies readonly (keyof CopyUpload)[];

/** Beside the target's state row of the path: the multipart copy left open there (see CopyUpload). */
const copyUploadItemKey = (targetId: string, path: string) => ({
  pk: targetStateItemKey(targetId, path).pk,
  sk: 'COPY',
});

type Item = Record<string, unknown>;

function isConditionFailure(error: unknown): error is ConditionalCheckFailedException {
  return (
    error instanceof ConditionalCheckFailedException ||
    (error as { name?: string })?.name === 'ConditionalCheckFailedException'
  );
}

function toVersion(item: Item): FileVersion & { feedSeq?: number } {
  return {
    ...versionItemSchema.parse(item),
    ...(typeof item.feedSeq === 'number' ? { feedSeq: item.feedSeq } : {}),
  };
}

function versionAttributes(v: FileVersion): Item {
  return {
    path: v.path,
    version: v.version,
    sha256: v.sha256,
    size: v.size,
    contentType: v.contentType,
    deleted: v.deleted,
    committedAt: v.committedAt,
    uploadId: v.uploadId,
  };
}

const toChange = (item: Item): Change => feedItemSchema.parse(item);

/** Keys in one BatchGetItem (DynamoDB's limit). */
const BATCH_GET_MAX = 100;

function toTargetState(item: Item): TargetState {
  const failure =
    typeof item.failedVersion === 'number'
      ? { version: item.failedVersion, reason: String(item.failedReason), at: String(item.failedAt) }
      : undefined;
  return {
    ...(typeof item.etag === 'string' ? { etag: item.etag } : {}),
    ...(failure ? { failure } : {}),
    targetId: item.targetId as string,
    path: item.path as string,
    appliedVersion: item.appliedVersion as number,
    status: item.status as TargetState['status'],
    appliedAt: item.appliedAt as string,
    ...(typeof item.reason === 'string' ? { reason: item.reason } : {}),
  };
}

/** The checkpoint's `listing` map, as `{ listing }` to spread, or nothing when it holds no position. */
function listingOf(value: unknown): Pick<ReconcileCheckpoint, 'listing'> {
  if (typeof value !== 'object' || value === null) return {};
  const { targetId, after } = value as Item;
  if (typeof targetId !== 'string') return {};
  return { listing: { targetId, ...(typeof after === 'string' ? { after } : {}) } };
}

/** Far longer than any verification takes (5 TiB in ranges is hours). */
const VERIFICATION_PROGRESS_TTL_SECONDS = 30 * 24 * 3600;

function stripKeys(item: Item): Item {
  const { pk: _pk, sk: _sk, ...rest } = item;
  return rest;
}

/** The order of a commit's actions: cancellation reasons come back in the same order. */
const COMMIT_ACTION = { version: 0, head: 1, counter: 2, entry: 3, upload: 4, pointer: 5 } as const;

type TransactItem = NonNullable<
  ConstructorParameters<typeof TransactWriteCommand>[0]['TransactItems']
>[number];

/**
 * The commit as one transaction (core/commit.ts states why each condition keeps an invariant); the
 * path's folders are checked last, one `ConditionCheck` each, so their reasons follow the writes'.
 */
function commitActions(table: string, write: CommitWrite): TransactItem[] {
  return [
    ...writeActions(table, write),
    ...(write.blob === undefined ? [] : [{ Put: blobPut(table, write.blob) }]),
    ...folderRuleActions(table, write),
  ];
}

/**
 * The folder/file rule in the commit (FolderRuleWrite): each folder's head is no live file (checked
 * for a file that appears or stays), and the counts are kept. A file that appears adds 1 to each
 * folder's `liveFiles` and records those folders on its own row (`countedIn`), on the condition
 * that no live file lies under it; one that goes takes 1 off each folder its row recorded, whatever
 * the targets are now, and forgets them. Items: the checks, the counts, the path's own row.
 */
function folderRuleActions(table: string, { version, folderRule }: CommitWrite): TransactItem[] {
  if (folderRule === undefined) return [];
  const { folders, change } = folderRule;
  const checks = change === 'goes' ? [] : folders.map((f) => vacantFolder(table, f));
  if (change === 'stays') return checks;
  const appears = change === 'appears';
  const counted = folders.map(
    (f): TransactItem => ({
      Update: {
        TableName: table,
        Key: folderItemKey(f),
        UpdateExpression: 'ADD liveFiles :delta',
        ExpressionAttributeValues: { ':delta': appears ? 1 : -1 },
      },
    }),
  );
  const own: TransactItem = {
    Update: {
      TableName: table,
      Key: folderItemKey(version.path),
      ...(appears
        ? {
            UpdateExpression: 'SET countedIn = :folders',
            ConditionExpression: CONDITIONS.pathHoldsNoFiles,
            ExpressionAttributeValues: { ':folders': [...folders], ':zero': 0 },
          }
        : { UpdateExpression: 'REMOVE countedIn' }),
    },
  };
  return [...checks, ...counted, own];
}

/** How many items the folder rule adds to a commit (folderRuleActions). */
function folderRuleItems({ folderRule }: CommitWrite): number {
  if (folderRule === undefined) return 0;
  const n = folderRule.folders.length;
  return folderRule.change === 'stays' ? n : folderRule.change === 'goes' ? n + 1 : 2 * n + 1;
}

/** The folders a path's live file was counted into, from its rule row ([] when none). */
function countedInOf(item: Item | undefined): string[] {
  const counted = item?.countedIn;
  return Array.isArray(counted) ? counted.filter((f): f is string => typeof f === 'string') : [];
}

/** putBlob's write: over no pin, the same pin or `replaces`; unversioned storage pins nothing. */
function blobPut(table: string, { record, replaces }: BlobRecord) {
  const item = { ...blobItemKey(record.sha256), ...record };
  if (record.versionId === undefined) return { TableName: table, Item: item };
  return {
    TableName: table,
    Item: item,
    ConditionExpression:
      replaces === undefined ? CONDITIONS.blobIsUnpinnedOrOurs : CONDITIONS.blobIsUnpinnedOursOrReplaced,
    ExpressionAttributeValues: {
      ':versionId': record.versionId,
      ...(replaces === undefined ? {} : { ':replaces': replaces }),
    },
    ReturnValuesOnConditionCheckFailure: 'ALL_OLD' as const,
  };
}

/** The blob record's reason, when the commit carried one (it comes just before the folder rule's items). */
function blobReason(reasons: readonly CancellationReason[], write: CommitWrite) {
  if (write.blob === undefined) return undefined;
  return reasons[reasons.length - folderRuleItems(write) - 1];
}

/** The folder/file rule, checked in the commit: the folder's head is absent or a tombstone. */
const vacantFolder = (table: string, folder: string): TransactItem => ({
  ConditionCheck: {
    TableName: table,
    Key: headItemKey(folder),
    ConditionExpression: CONDITIONS.holdsNoLiveFile,
    ExpressionAttributeNames: { '#folderPk': LIVE_FILES_INDEX.partitionKey },
  },
});

/**
 * What of the folder rule refused the commit: the first folder whose head check failed (it holds a
 * live file), or the path's own row (live files lie under it).
 */
function folderRuleRefusal(
  reasons: readonly CancellationReason[],
  write: CommitWrite,
): { occupied?: string; holdsFiles?: true } | undefined {
  if (write.folderRule === undefined) return undefined;
  const { folders, change } = write.folderRule;
  if (change === 'goes') return undefined;
  const first = reasons.length - folderRuleItems(write);
  const failed = (i: number) => reasons[first + i]?.Code === 'ConditionalCheckFailed';
  const occupied = folders.find((_, i) => failed(i));
  if (occupied !== undefined) return { occupied };
  return change === 'appears' && failed(2 * folders.length) ? { holdsFiles: true } : undefined;
}

function writeActions(table: string, { version, change, upload }: CommitWrite): TransactItem[] {
  const previous = version.version - 1;
  const previousSeq = change.seq - 1;
  const actions: TransactItem[] = [
    {
      Put: {
        TableName: table,
        Item: {
          ...versionItemKey(version.path, version.version),
          ...versionAttributes(version),
          shard: change.shard,
          feedSeq: change.seq,
        },
        ConditionExpression: CONDITIONS.claimIsFree,
      },
    },
    { Update: headUpdate(table, version, previous) },
    {
      Update: {
        TableName: table,
        Key: feedCounterItemKey(change.shard),
        UpdateExpression: 'SET lastSeq = :seq',
        ConditionExpression: previousSeq === 0 ? CONDITIONS.feedIsEmpty : CONDITIONS.feedEndsAt,
        ExpressionAttributeValues: {
          ':seq': change.seq,
          ...(previousSeq === 0 ? {} : { ':previous': previousSeq }),
        },
        ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
      },
    },
    {
      Put: {
        TableName: table,
        Item: { pk: feedKey(change.shard), sk: feedSortKey(change.seq), ...change },
        ConditionExpression: CONDITIONS.claimIsFree,
      },
    },
  ];
  if (upload === undefined || version.sha256 === null) return actions;
  const proven = upload.deduplicated;
  actions.push(
    {
      Update: {
        TableName: table,
        Key: uploadItemKey(version.uploadId),
        UpdateExpression: `SET #status = :committed, version = :version, updatedAt = :at${proven ? ', deduplicated = :proven' : ''}`,
        ConditionExpression: CONDITIONS.uploadIsPending,
        ExpressionAttributeNames: { '#status': 'status' },
        ExpressionAttributeValues: {
          ':committed': 'committed',
          ':version': version.version,
          ':at': version.committedAt,
          ':pending': 'pending',
          ...(proven ? { ':proven': true } : {}),
        },
        ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
      },
    },
    { Delete: { TableName: table, Key: pendingUploadItemKey(version.sha256, version.uploadId) } },
  );
  return actions;
}

/** The head moves to `version` from exactly `previous`; a live head joins the live-files index, a tombstone leaves it. */
function headUpdate(table: string, version: FileVersion, previous: number) {
  const attributes = versionAttributes(version);
  const names = Object.keys(attributes).filter((k) => k !== 'version');
  return {
    TableName: table,
    Key: headItemKey(version.path),
    UpdateExpression:
      `SET version = :version, ${names.map((k) => `#${k} = :${k}`).join(', ')}` +
      (version.deleted ? ' REMOVE #folderPk, #folderSk' : ', #folderPk = :folderPk, #folderSk = :folderSk'),
    ConditionExpression: previous === 0 ? CONDITIONS.headIsNew : CONDITIONS.headIsAt,
    ExpressionAttributeNames: {
      ...Object.fromEntries(names.map((k) => [`#${k}`, k])),
      '#folderPk': LIVE_FILES_INDEX.partitionKey,
      '#folderSk': LIVE_FILES_INDEX.sortKey,
    },
    ExpressionAttributeValues: {
      ...Object.fromEntries(Object.entries(attributes).map(([k, v]) => [`:${k}`, v])),
      ...(previous === 0 ? {} : { ':previous': previous }),
      ...(version.deleted ? {} : { ':folderPk': folderPartition(version.path), ':folderSk': version.path }),
    },
    ReturnValuesOnConditionCheckFailure: 'ALL_OLD' as const,
  };
}

/** A head's key in the live-files index (index keys and table keys), as LastEvaluatedKey holds it. */
const liveFileIndexKey = (path: string): Item => ({
  [LIVE_FILES_INDEX.partitionKey]: folderPartition(path),
  [LIVE_FILES_INDEX.sortKey]: path,
  ...headItemKey(path),
});

const pendingPointerOf = (item: Item): PendingPointer => ({
  uploadId: item.uploadId as string,
  ...(item.claim === undefined ? {} : { claim: item.claim as PendingClaim }),
});

const headOf = (item: Item | undefined): Pick<CommitState, 'version' | 'uploadId' | 'content'> => {
  if (item === undefined) return { version: 0 };
  const { sha256, size, contentType, deleted } = toVersion(item);
  return {
    version: Number(item.version),
    ...(typeof item.uploadId === 'string' ? { uploadId: item.uploadId } : {}),
    content: { sha256, size, contentType, deleted },
  };
};

/**
 * ClientRequestToken (at most 36 characters) naming this exact request: the SDK's retry of it is
 * answered from the first, while another worker's attempt (other times, maybe another seq) is not.
 */
const requestToken = (actions: readonly TransactItem[]): string =>
  createHash('sha256').update(JSON.stringify(actions)).digest('hex').slice(0, 36);

const feedSeqOf = (counter: Item | undefined): number =>
  typeof counter?.lastSeq === 'number' ? counter.lastSeq : 0;

/**
 * The state a refused commit met, from the old items its failed conditions return; undefined when
 * a reason carries no state (a conflict with another transaction in flight): then read again.
 */
function refusedState(
  reasons: readonly CancellationReason[],
  previous: number,
  previousSeq: number,
): CommitState | undefined {
  const known = new Set(['None', 'ConditionalCheckFailed']);
  if (reasons.some((r) => !known.has(r.Code ?? ''))) return undefined;
  const head = reasons[COMMIT_ACTION.head];
  const counter = reasons[COMMIT_ACTION.counter];
  if (reasons[COMMIT_ACTION.version]?.Code === 'ConditionalCheckFailed' && head?.Code === 'None')
    return undefined;
  const headFailed = head?.Code === 'ConditionalCheckFailed';
  const counterFailed = counter?.Code === 'ConditionalCheckFailed';
  return {
    ...(headFailed ? headOf(head.Item ? unmarshall(head.Item) : undefined) : { version: previous }),
    feedSeq: counterFailed ? feedSeqOf(counter.Item ? unmarshall(counter.Item) : undefined) : previousSeq,
  };
}

/** Scan filters: every path's head item; every pending-upload pointer (under its blob). */
const HEADS_FILTER = {
  expression: 'begins_with(pk, :p) AND sk = :head',
  values: { ':p': PK.path, ':head': SK.head },
} as const;

/** Where a walk over the pending-uploads index stands: a partition, and the last key read in it. */
interface PendingPosition {
  readonly shard: number;
  readonly key?: Item;
}

/** An `after` from an earlier page; anything else (none, or a position from before the index) starts over. */
function pendingPosition(after: string | undefined): PendingPosition {
  if (after === undefined) return { shard: 0 };
  try {
    const parsed = JSON.parse(after) as Partial<PendingPosition>;
    const shard = parsed.shard;
    if (typeof shard !== 'number' || !Number.isInteger(shard) || shard < 0 || shard >= PENDING_SHARDS)
      return { shard: 0 };
    return parsed.key === undefined ? { shard } : { shard, key: parsed.key };
  } catch {
    return { shard: 0 };
  }
}

/** A pointer from its keys (the pending-uploads index projects the keys only). */
const pendingPointer = (item: Item): { sha256: string; uploadId: string } => ({
  sha256: (item.pk as string).slice(PK.pendingUpload.length),
  uploadId: (item.sk as string).slice(SK.pendingUpload.length),
});

const CONFLICTS_RETRYABLE = 'mirrorTransactionConflictsRetryable';

/**
 * A request that meets a transaction in progress on one of its items is refused, nothing done: a
 * plain write with `TransactionConflictException`, a `TransactGetItems` (which checks no condition)
 * with `TransactionCanceledException`. Both may simply be sent again, but the SDK's retry strategy
 * knows neither code, so each would surface as an error: an ingest record back on its queue for a
 * whole visibility timeout, a 500 from the API. Marked retryable (`$retryable`, the SDK's own
 * trait), they are sent again with its backoff and attempts. A `TransactWriteItems` cancelled by a
 * conflict is left alone: the commit reads the state again and decides (`commit`). The local
 * DynamoDB never answers either (docs/local-gates.md): test/unit/adapters/dynamo-conflicts.test.ts.
 */
function sendConflictsAgain(client: DynamoDBClient): void {
  if (client.middlewareStack.identify().some((entry) => entry.startsWith(CONFLICTS_RETRYABLE))) return;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      try {
        return await next(args);
      } catch (error) {
        const name = (error as { name?: unknown } | undefined)?.name;
        const transactGet = String(context.commandName).startsWith('TransactGet');
        if (
          name === 'TransactionConflictException' ||
          (name === 'TransactionCanceledException' && transactGet)
        )
          Object.assign(error as object, { $retryable: { throttling: false } });
        throw error;
      }
    },
    // Around the deserializer, inside the retry middleware (finalizeRequest), which reads the mark.
    { step: 'deserialize', priority: 'high', name: CONFLICTS_RETRYABLE },
  );
}

export class DynamoLedger implements Ledger {
  private readonly db: DynamoDBDocumentClient;

  constructor(
    client: DynamoDBClient,
    private readonly table: string,
  ) {
    this.db = DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
    sendConflictsAgain(client);
  }

  private async get(key: { pk: string; sk: string }): Promise<Item | undefined> {
    const out = await this.db.send(new GetCommand({ TableName: this.table, Key: key, ConsistentRead: true }));
    return out.Item;
  }

  /** Runs a conditional write; turns only a failed condition into `onConflict`'s result. */
  private async conditional<W, T>(
    write: () => Promise<W>,
    onConflict: (error: ConditionalCheckFailedException) => T,
  ): Promise<W | T> {
    try {
      return await write();
    } catch (error) {
      if (isConditionFailure(error)) return onConflict(error);
      throw error;
    }
  }

  // Uploads

  async putUpload(upload: Upload): Promise<void> {
    await this.conditional(
      () =>
        this.db.send(
          new PutCommand({
            TableName: this.table,
            Item: { ...uploadItemKey(upload.uploadId), ...upload },
            ConditionExpression: CONDITIONS.claimIsFree,
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      (cause) => {
        throw new ClaimTakenError(`upload ${upload.uploadId}`, cause);
      },
    );
  }

  async openUpload(upload: Upload): Promise<void> {
    const actions: TransactItem[] = [
      {
        Put: {
          TableName: this.table,
          Item: { ...uploadItemKey(upload.uploadId), ...upload },
          ConditionExpression: CONDITIONS.claimIsFree,
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        },
      },
      {
        Put: { TableName: this.table, Item: this.pendingPointerItem(upload.sha256, upload.uploadId, upload) },
      },
    ];
    try {
      await this.db.send(
        new TransactWriteCommand({ TransactItems: actions, ClientRequestToken: requestToken(actions) }),
      );
    } catch (error) {
      const taken =
        error instanceof TransactionCanceledException &&
        error.CancellationReasons?.[0]?.Code === 'ConditionalCheckFailed';
      if (taken) throw new ClaimTakenError(`upload ${upload.uploadId}`, error);
      throw error;
    }
  }

  async getUpload(uploadId: string): Promise<Upload | undefined> {
    const item = await this.get(uploadItemKey(uploadId));
    return item ? (stripKeys(item) as unknown as Upload) : undefined;
  }

  async finishUpload(
    uploadId: string,
    outcome:
      | { status: 'committed'; version: number; deduplicated?: true | undefined }
      | { status: 'rejected' | 'expired'; reason: string },
    at: string,
  ): Promise<void> {
    const proven = outcome.status === 'committed' && outcome.deduplicated === true;
    const detail =
      outcome.status === 'committed'
        ? { name: 'version', value: outcome.version }
        : { name: 'reason', value: outcome.reason };
    await this.conditional(
      () =>
        this.db.send(
          new UpdateCommand({
            TableName: this.table,
            Key: uploadItemKey(uploadId),
            UpdateExpression: `SET #status = :status, #detail = :detail, updatedAt = :at${proven ? ', deduplicated = :proven' : ''}`,
            ConditionExpression: CONDITIONS.uploadIsPending,
            ExpressionAttributeNames: { '#status': 'status', '#detail': detail.name },
            ExpressionAttributeValues: {
              ':status': outcome.status,
              ':detail': detail.value,
              ':at': at,
              ':pending': 'pending',
              ...(proven ? { ':proven': true } : {}),
            },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      // Already ended (a retry, or a race with another event): its first outcome stands.
      () => undefined,
    );
  }

  // Idempotency keys

  async claimIdempotencyKey(claim: IdempotencyClaim): Promise<IdempotencyRecord | undefined> {
    // The holder may release the key between our failed claim and our read of it: then claim again.
    for (let attempt = 0; attempt < 5; attempt++) {
      const holder = await this.tryClaimIdempotencyKey(claim);
      if (holder !== null) return holder;
    }
    throw new Error(`idempotency key ${claim.key}: claimed and released repeatedly, retry later`);
  }

  private async tryClaimIdempotencyKey(
    claim: IdempotencyClaim,
  ): Promise<IdempotencyRecord | undefined | null> {
    const key = idempotencyItemKey(claim.key);
    return this.conditional<undefined, Promise<IdempotencyRecord | null>>(
      async () => {
        await this.db.send(
          new PutCommand({
            TableName: this.table,
            Item: {
              ...key,
              key: claim.key,
              requestHash: claim.requestHash,
              status: 'in_progress',
              claimToken: claim.claimToken,
              lockedUntil: claim.lockedUntil,
              expiresAt: claim.expiresAt,
              // The table's TTL rule deletes the record some time after: cleanup only, never relied on.
              [TTL_ATTRIBUTE]: Math.ceil(Date.parse(claim.expiresAt) / 1000),
            },
            ConditionExpression: CONDITIONS.idempotencyKeyIsFree,
            ExpressionAttributeNames: { '#status': 'status' },
            ExpressionAttributeValues: { ':now': claim.now, ':inProgress': 'in_progress' },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        );
        return undefined;
      },
      async () => {
        // dynalite returns no Item with the failure: read the holder.
        const item = await this.get(key);
        if (!item) return null;
        return {
          key: item.key as string,
          requestHash: item.requestHash as string,
          status: item.status as IdempotencyRecord['status'],
          expiresAt: item.expiresAt as string,
          lockedUntil: item.lockedUntil as string | undefined,
          ...(typeof item.response === 'string' ? { response: item.response } : {}),
        };
      },
    );
  }

  async completeIdempotencyKey(key: string, claimToken: string, response: string): Promise<boolean> {
    return this.settleIdempotencyKey(key, claimToken, response);
  }

  async releaseIdempotencyKey(key: string, claimToken: string): Promise<boolean> {
    return this.settleIdempotencyKey(key, claimToken, undefined);
  }

  /** Stores the answer (or, with none, deletes the claim) if the claim is still ours and in progress. */
  private async settleIdempotencyKey(
    key: string,
    claimToken: string,
    response: string | undefined,
  ): Promise<boolean> {
    const common = {
      TableName: this.table,
      Key: idempotencyItemKey(key),
      ConditionExpression: CONDITIONS.idempotencyClaimIsOurs,
      ExpressionAttributeNames: { '#status': 'status' },
      ReturnValuesOnConditionCheckFailure: 'ALL_OLD' as const,
    };
    return this.conditional(
      async () => {
        await this.db.send(
          response === undefined
            ? new DeleteCommand({
                ...common,
                ExpressionAttributeValues: { ':inProgress': 'in_progress', ':token': claimToken },
              })
            : new UpdateCommand({
                ...common,
                UpdateExpression:
                  'SET #status = :completed, #response = :response REMOVE claimToken, lockedUntil',
                ExpressionAttributeNames: { '#status': 'status', '#response': 'response' },
                ExpressionAttributeValues: {
                  ':inProgress': 'in_progress',
                  ':token': claimToken,
                  ':completed': 'completed',
                  ':response': response,
                },
              }),
        );
        return true;
      },
      // Our claim lapsed and another request took the key over: its answer stands.
      () => false,
    );
  }

  async setChallenge(uploadId: string, challenge: Challenge): Promise<void> {
    await this.conditional(
      () =>
        this.db.send(
          new UpdateCommand({
            TableName: this.table,
            Key: uploadItemKey(uploadId),
            UpdateExpression: 'SET challenge = :challenge',
            ConditionExpression: CONDITIONS.uploadIsPending,
            ExpressionAttributeNames: { '#status': 'status' },
            ExpressionAttributeValues: { ':challenge': challenge, ':pending': 'pending' },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      // Ended meanwhile: the claim's answer still carries the challenge, and any proof of it is refused.
      () => undefined,
    );
  }

  async spendChallenge(uploadId: string, nonce: string): Promise<boolean> {
    return this.conditional(
      async () => {
        await this.db.send(
          new UpdateCommand({
            TableName: this.table,
            Key: uploadItemKey(uploadId),
            UpdateExpression: 'SET challengeSpent = :nonce',
            ConditionExpression: CONDITIONS.challengeIsUnanswered,
            ExpressionAttributeNames: { '#challenge': 'challenge', '#nonce': 'nonce' },
            ExpressionAttributeValues: { ':nonce': nonce },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        );
        return true;
      },
      () => false,
    );
  }

  async markCompletionRequested(uploadId: string, at: string): Promise<boolean> {
    return this.conditional(
      async () => {
        await this.db.send(
          new UpdateCommand({
            TableName: this.table,
            Key: uploadItemKey(uploadId),
            UpdateExpression: 'SET completionRequestedAt = :at',
            ConditionExpression: CONDITIONS.uploadIsPending,
            ExpressionAttributeNames: { '#status': 'status' },
            ExpressionAttributeValues: { ':at': at, ':pending': 'pending' },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        );
        return true;
      },
      // Ended meanwhile (or never recorded): nothing is left to complete.
      () => false,
    );
  }

  async addPendingUpload(sha256: string, uploadId: string, upload?: Upload): Promise<void> {
    await this.db.send(
      new PutCommand({ TableName: this.table, Item: this.pendingPointerItem(sha256, uploadId, upload) }),
    );
  }

  private pendingPointerItem(sha256: string, uploadId: string, upload: Upload | undefined): Item {
    return {
      ...pendingUploadItemKey(sha256, uploadId),
      [PENDING_INDEX.partitionKey]: pendingPartition(uploadId),
      [PENDING_INDEX.sortKey]: uploadId,
      uploadId,
      ...(upload === undefined ? {} : { claim: pendingClaimOf(upload) }),
    };
  }

  async recordPart(uploadId: string, part: StoredPart): Promise<void> {
    await this.db.send(
      new PutCommand({
        TableName: this.table,
        Item: { ...partItemKey(uploadId, part.partNumber), ...part },
      }),
    );
  }

  async listParts(uploadId: string): Promise<StoredPart[]> {
    return (await this.queryPrefix(uploadPartitionKey(uploadId), SK.part)).map((item) => ({
      partNumber: item.partNumber as number,
      size: item.size as number,
      etag: item.etag as string,
      sha256: item.sha256 as string,
    }));
  }

  async listPendingUploads(sha256: string): Promise<string[]> {
    return (await this.queryPrefix(pendingPartitionKey(sha256), SK.pendingUpload)).map(
      (item) => item.uploadId as string,
    );
  }

  async listPendingClaims(sha256: string): Promise<PendingPointer[]> {
    return (await this.queryPrefix(pendingPartitionKey(sha256), SK.pendingUpload)).map(pendingPointerOf);
  }

  /** Every item of a partition whose sort key starts with `prefix`, strongly consistent, all pages. */
  private async queryPrefix(pk: string, prefix: string): Promise<Item[]> {
    const items: Item[] = [];
    const pages = paginateQuery(
      { client: this.db },
      {
        TableName: this.table,
        KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
        ExpressionAttributeValues: { ':pk': pk, ':prefix': prefix },
        ConsistentRead: true,
      },
    );
    for await (const page of pages) items.push(...(page.Items ?? []));
    return items;
  }

  async removePendingUpload(sha256: string, uploadId: string): Promise<void> {
    await this.db.send(
      new DeleteCommand({ TableName: this.table, Key: pendingUploadItemKey(sha256, uploadId) }),
    );
  }

  // Blobs

  async getBlob(sha256: string): Promise<Blob | undefined> {
    const item = await this.get(blobItemKey(sha256));
    return item ? (stripKeys(item) as unknown as Blob) : undefined;
  }

  async getBlobAndPending(sha256: string): Promise<{ blob: Blob | undefined; pending: PendingPointer[] }> {
    // Two partitions (the pin in B#, the pointers in W#: AWS review 9, B4), read side by side.
    const [blob, pending] = await Promise.all([this.getBlob(sha256), this.listPendingClaims(sha256)]);
    return { blob, pending };
  }

  async getBlobAndPendingOf(
    sha256: string,
    uploadId: string,
  ): Promise<{ blob: Blob | undefined; pending: PendingPointer[] }> {
    // Two partitions, one BatchGetItem (strongly consistent): a GetItem and a Query before.
    const blobKey = blobItemKey(sha256);
    const items = await this.batchGet([{ ...blobKey }, { ...pendingUploadItemKey(sha256, uploadId) }]);
    const blob = items.find((item) => item.pk === blobKey.pk && item.sk === blobKey.sk);
    const pointer = items.find((item) => item !== blob);
    return {
      blob: blob === undefined ? undefined : (stripKeys(blob) as unknown as Blob),
      pending: pointer === undefined ? [] : [pendingPointerOf(pointer)],
    };
  }

  async putBlob(blob: Blob, options: { replaces?: string | undefined } = {}): Promise<Blob> {
    // Unversioned storage has nothing to pin: the record follows the latest verification.
    const won = await this.conditional(
      async () => {
        await this.db.send(new PutCommand(blobPut(this.table, { record: blob, replaces: options.replaces })));
        return true;
      },
      () => false,
    );
    if (won) return blob;
    // dynalite returns no Item with the failure: read the pin that holds.
    const holding = await this.getBlob(blob.sha256);
    if (!holding) throw new Error(`blob ${blob.sha256}: pinned by another version, then gone`);
    return holding;
  }

  async deleteBlob(sha256: string): Promise<void> {
    await this.db.send(new DeleteCommand({ TableName: this.table, Key: blobItemKey(sha256) }));
  }

  async putVerificationProgress(progress: VerificationProgress): Promise<void> {
    await this.db.send(
      new PutCommand({
        TableName: this.table,
        Item: {
          ...verificationItemKey(progress),
          ...progress,
          // A verification abandoned part-way (its object deleted) leaves nothing for good.
          [TTL_ATTRIBUTE]: Math.ceil(Date.now() / 1000) + VERIFICATION_PROGRESS_TTL_SECONDS,
        },
      }),
    );
  }

  async getVerificationProgress(object: {
    sha256: string;
    versionId?: string | undefined;
    etag?: string | undefined;
  }): Promise<VerificationProgress | undefined> {
    const item = await this.get(verificationItemKey(object));
    if (!item) return undefined;
    const { [TTL_ATTRIBUTE]: _ttl, ...progress } = stripKeys(item);
    return verificationProgressSchema.parse(progress);
  }

  // Versions

  async readCommitState(path: string, shard: number): Promise<CommitState> {
    const out = await this.db.send(
      new TransactGetCommand({
        TransactItems: [
          { Get: { TableName: this.table, Key: headItemKey(path) } },
          { Get: { TableName: this.table, Key: feedCounterItemKey(shard) } },
          { Get: { TableName: this.table, Key: folderItemKey(path) } },
        ],
      }),
    );
    const [head, counter, rule] = (out.Responses ?? []).map((r) => r?.Item);
    return { ...headOf(head), feedSeq: feedSeqOf(counter), counted: countedInOf(rule) };
  }

  async commit(write: CommitWrite): Promise<CommitResult> {
    const { version, change, upload } = write;
    const actions = commitActions(this.table, write);
    try {
      await this.db.send(
        new TransactWriteCommand({
          TransactItems: actions,
          // A retry of this very write (by the SDK, after a lost answer) is answered, not re-applied.
          ClientRequestToken: requestToken(actions),
        }),
      );
      return { committed: true };
    } catch (error) {
      if (!(error instanceof TransactionCanceledException)) throw error;
      const reasons = error.CancellationReasons ?? [];
      const found = refusedState(reasons, version.version - 1, change.seq - 1);
      const rule = folderRuleRefusal(reasons, write);
      // The folder rule refuses the commit for good: no state to retry from is needed.
      const state =
        found ??
        (rule === undefined
          ? await this.readCommitState(version.path, change.shard)
          : { version: version.version - 1, feedSeq: change.seq - 1 });
      const ended = upload === undefined ? undefined : await this.endedUpload(error, version.uploadId);
      const pinned = await this.pinnedBlob(reasons, write);
      return {
        committed: false,
        state,
        ...(ended ? { upload: ended } : {}),
        ...rule,
        ...(pinned === undefined ? {} : { pinned }),
      };
    }
  }

  /** The pin that refused the commit's blob record, if it did (read if the reason carries no item). */
  private async pinnedBlob(
    reasons: readonly CancellationReason[],
    write: CommitWrite,
  ): Promise<Blob | undefined> {
    const reason = blobReason(reasons, write);
    if (reason?.Code !== 'ConditionalCheckFailed' || write.blob === undefined) return undefined;
    const item = reason.Item
      ? unmarshall(reason.Item)
      : await this.get(blobItemKey(write.blob.record.sha256));
    if (!item) throw new Error(`blob ${write.blob.record.sha256}: pinned by another version, then gone`);
    return stripKeys(item) as unknown as Blob;
  }

  /** The upload, when the refusal says it is no longer pending (read again if the reason carries no item). */
  private async endedUpload(
    error: TransactionCanceledException,
    uploadId: string,
  ): Promise<Upload | undefined> {
    const reason = error.CancellationReasons?.[COMMIT_ACTION.upload];
    if (reason?.Code === 'None') return undefined;
    const item = reason?.Item ? unmarshall(reason.Item) : await this.get(uploadItemKey(uploadId));
    const found = item ? (stripKeys(item) as unknown as Upload) : undefined;
    return found?.status === 'pending' ? undefined : found;
  }

  async getVersion(path: string, version: number): Promise<FileVersion | undefined> {
    const item = await this.get(versionItemKey(path, version));
    return item ? toVersion(item) : undefined;
  }

  async listVersions(path: string, options: { limit: number; before?: number }): Promise<FileVersion[]> {
    const out = await this.db.send(
      new QueryCommand({
        TableName: this.table,
        KeyConditionExpression:
          options.before === undefined
            ? 'pk = :pk AND begins_with(sk, :v)'
            : 'pk = :pk AND sk BETWEEN :v AND :before',
        ExpressionAttributeValues: {
          ':pk': pathKey(path),
          ':v': SK.version,
          ...(options.before === undefined ? {} : { ':before': versionSortKey(options.before - 1) }),
        },
        ScanIndexForward: false,
        Limit: options.limit,
        ConsistentRead: true,
      }),
    );
    return (out.Items ?? []).map(toVersion);
  }

  async getHead(path: string): Promise<FileVersion | undefined> {
    const item = await this.get(headItemKey(path));
    return item ? toVersion(item) : undefined;
  }

  async liveFilesAmong(paths: readonly string[]): Promise<string[]> {
    // A path is a handful of folders deep: their heads in one strongly consistent BatchGetItem
    // (more only past 100 folders), not one GetItem each.
    const unique = [...new Set(paths)];
    const items = await this.headItems(unique);
    const live = new Set(
      items
        .map(toVersion)
        .filter((head) => !head.deleted)
        .map((head) => head.path),
    );
    return unique.filter((p) => live.has(p));
  }

  async hasLiveFileUnder(folder: string): Promise<boolean> {
    const out = await this.db.send(
      new QueryCommand({
        TableName: this.table,
        IndexName: LIVE_FILES_INDEX.name,
        KeyConditionExpression: '#pk = :pk AND begins_with(#sk, :folder)',
        ExpressionAttributeNames: { '#pk': LIVE_FILES_INDEX.partitionKey, '#sk': LIVE_FILES_INDEX.sortKey },
        ExpressionAttributeValues: { ':pk': folderPartition(folder), ':folder': `${folder}/` },
        Limit: 1,
      }),
    );
    return (out.Items?.length ?? 0) > 0;
  }

  async listLiveFiles(options: { prefix: string; after?: string | undefined; limit: number }): Promise<{
    files: FileVersion[];
    next?: string | undefined;
  }> {
    const { prefix, after, limit } = options;
    const index = {
      TableName: this.table,
      IndexName: LIVE_FILES_INDEX.name,
      Limit: limit,
      // The index's position after a path is the path's own index key: a cursor needs only the path.
      ...(after === undefined ? {} : { ExclusiveStartKey: liveFileIndexKey(after) }),
    };
    // A prefix lies in its top folder's partition: one Query. The whole mirror is a Scan of the
    // index, which holds only live files (a tombstone leaves it), so it reads what it answers.
    const out = await this.db.send(
      prefix === ''
        ? new ScanCommand(index)
        : new QueryCommand({
            ...index,
            KeyConditionExpression: '#pk = :pk AND begins_with(#sk, :prefix)',
            ExpressionAttributeNames: {
              '#pk': LIVE_FILES_INDEX.partitionKey,
              '#sk': LIVE_FILES_INDEX.sortKey,
            },
            ExpressionAttributeValues: { ':pk': folderPartition(prefix), ':prefix': prefix },
          }),
    );
    const paths = (out.Items ?? []).map((item) => item[LIVE_FILES_INDEX.sortKey] as string);
    // The index holds keys only (and lags): the heads themselves, strongly consistent, in index order.
    const items = await this.headItems(paths);
    const heads = new Map(items.map((item) => [item.path as string, toVersion(item)]));
    const files = paths.flatMap((p) => {
      const head = heads.get(p);
      return head === undefined || head.deleted ? [] : [head];
    });
    const last = paths.at(-1);
    return out.LastEvaluatedKey && last !== undefined ? { files, next: last } : { files };
  }

  // Change feed

  async latestFeedSeq(shard: number): Promise<number> {
    const out = await this.db.send(new QueryCommand(latestFeedSeqQuery(this.table, shard)));
    return (out.Items?.[0]?.seq as number | undefined) ?? 0;
  }

  async markFannedOut(shard: number, seq: number): Promise<void> {
    await this.conditional(
      () =>
        this.db.send(
          new UpdateCommand({
            TableName: this.table,
            Key: { pk: feedKey(shard), sk: feedSortKey(seq) },
            UpdateExpression: 'SET fannedOut = :true',
            ConditionExpression: CONDITIONS.entryExists,
            ExpressionAttributeValues: { ':true': true },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      (cause) => {
        throw new Error(`feed entry ${shard}/${seq} does not exist`, { cause });
      },
    );
  }

  async readFeed(shard: number, afterSeq: number, limit: number): Promise<Change[]> {
    const out = await this.db.send(new QueryCommand(feedAfterQuery(this.table, shard, afterSeq, limit)));
    return (out.Items ?? []).map(toChange);
  }

  async *scanHeads(): AsyncIterable<FileVersion> {
    const pages = paginateScan(
      { client: this.db, pageSize: 500 },
      {
        TableName: this.table,
        FilterExpression: HEADS_FILTER.expression,
        ExpressionAttributeValues: HEADS_FILTER.values,
        ConsistentRead: true,
      },
    );
    for await (const page of pages) for (const item of page.Items ?? []) yield toVersion(item);
  }

  async pageHeads(options: { after?: string | undefined; limit: number }): Promise<{
    heads: FileVersion[];
    next?: string | undefined;
  }> {
    // Eventually consistent, at half the read cost of a strongly consistent scan: reconciliation
    // re-reads a head strongly consistently before it acts on it (core/reconcile.ts).
    const page = await this.scanPage(HEADS_FILTER, options);
    return { heads: page.items.map(toVersion), ...(page.next === undefined ? {} : { next: page.next }) };
  }

  /**
   * One page of an eventually consistent filtered scan; `after` and `next` are the opaque
   * LastEvaluatedKey as JSON. Callers that act on an item read it again strongly consistently.
   */
  private async scanPage(
    filter: { readonly expression: string; readonly values: Item },
    options: { after?: string | undefined; limit: number },
  ): Promise<{ items: Item[]; next?: string | undefined }> {
    const out = await this.db.send(
      new ScanCommand({
        TableName: this.table,
        FilterExpression: filter.expression,
        ExpressionAttributeValues: filter.values,
        Limit: options.limit,
        ConsistentRead: false,
        ...(options.after === undefined ? {} : { ExclusiveStartKey: JSON.parse(options.after) as Item }),
      }),
    );
    const items = out.Items ?? [];
    return out.LastEvaluatedKey ? { items, next: JSON.stringify(out.LastEvaluatedKey) } : { items };
  }

  async *scanPendingUploads(): AsyncIterable<{ sha256: string; uploadId: string }> {
    // Every partition of the pending-uploads index (eventually consistent: the expiry sweep reads
    // each upload again before it acts, and a pointer a moment old is far from expiring).
    let after: string | undefined;
    do {
      const page = await this.pagePendingUploads({ after, limit: 500 });
      yield* page.pointers;
      after = page.next;
    } while (after !== undefined);
  }

  async pagePendingUploads(options: { after?: string | undefined; limit: number }): Promise<{
    pointers: { sha256: string; uploadId: string }[];
    next?: string | undefined;
  }> {
    // The pending-uploads index, a partition at a time; `after` names the partition and the key in
    // it. Eventually consistent: the sweep reads each upload again before it acts (core/pending-sweep.ts).
    const position = pendingPosition(options.after);
    const out = await this.db.send(
      new QueryCommand({
        TableName: this.table,
        IndexName: PENDING_INDEX.name,
        KeyConditionExpression: '#pk = :pk',
        ExpressionAttributeNames: { '#pk': PENDING_INDEX.partitionKey },
        ExpressionAttributeValues: { ':pk': pendingShardKey(position.shard) },
        Limit: options.limit,
        ...(position.key === undefined ? {} : { ExclusiveStartKey: position.key }),
      }),
    );
    const pointers = (out.Items ?? []).map(pendingPointer);
    const next: PendingPosition | undefined = out.LastEvaluatedKey
      ? { shard: position.shard, key: out.LastEvaluatedKey }
      : position.shard + 1 < PENDING_SHARDS
        ? { shard: position.shard + 1 }
        : undefined;
    return next === undefined ? { pointers } : { pointers, next: JSON.stringify(next) };
  }

  async getSweepCheckpoint(): Promise<string | undefined> {
    const item = await this.get(sweepCheckpointItemKey);
    return typeof item?.after === 'string' ? item.after : undefined;
  }

  async putSweepCheckpoint(after: string | undefined): Promise<void> {
    // An UpdateItem, not a PutItem: the sweep's role may update rows, never replace them (lib/grants.ts).
    await this.db.send(
      new UpdateCommand({
        TableName: this.table,
        Key: sweepCheckpointItemKey,
        ...(after === undefined
          ? { UpdateExpression: 'REMOVE #after', ExpressionAttributeNames: { '#after': 'after' } }
          : {
              UpdateExpression: 'SET #after = :after',
              ExpressionAttributeNames: { '#after': 'after' },
              ExpressionAttributeValues: { ':after': after },
            }),
      }),
    );
  }

  async getWatermark(targetId: string): Promise<readonly number[] | undefined> {
    const item = await this.get(watermarkItemKey(targetId));
    return item?.cursor as number[] | undefined;
  }

  async setWatermark(targetId: string, cursor: readonly number[]): Promise<void> {
    await this.db.send(
      new UpdateCommand({
        TableName: this.table,
        Key: watermarkItemKey(targetId),
        UpdateExpression: 'SET #cursor = :cursor',
        ExpressionAttributeNames: { '#cursor': 'cursor' },
        ExpressionAttributeValues: { ':cursor': [...cursor] },
      }),
    );
  }

  async appliedVersions(targetId: string, paths: readonly string[]): Promise<Map<string, number>> {
    const applied = new Map<string, number>();
    const unique = [...new Set(paths)];
    for (let i = 0; i < unique.length; i += BATCH_GET_MAX) {
      const keys = unique
        .slice(i, i + BATCH_GET_MAX)
        .map((p): Item => ({ ...targetStateItemKey(targetId, p) }));
      for (const item of await this.batchGet(keys, 'pk, appliedVersion')) {
        applied.set(
          (item.pk as string).slice(targetStateKey(targetId, '').length),
          item.appliedVersion as number,
        );
      }
    }
    return applied;
  }

  /** The head items of `paths`, strongly consistent: BatchGetItems of up to 100 keys, side by side. */
  private async headItems(paths: readonly string[]): Promise<Item[]> {
    const batches: Item[][] = [];
    for (let i = 0; i < paths.length; i += BATCH_GET_MAX) {
      batches.push(paths.slice(i, i + BATCH_GET_MAX).map((p): Item => ({ ...headItemKey(p) })));
    }
    return (await Promise.all(batches.map((keys) => this.batchGet(keys)))).flat();
  }

  /** One BatchGetItem, then again for what DynamoDB left unprocessed (after a short backoff), until none is. */
  private async batchGet(keys: Item[], projection?: string): Promise<Item[]> {
    return (await batchGetItems(this.db, this.table, keys, { projection, backoffUnitMs: 20 })).found;
  }

  async getLagRecord(targetId: string): Promise<LagRecord | undefined> {
    const item = await this.get(watermarkItemKey(targetId));
    if (!item) return undefined;
    return {
      cursor: item.cursor as number[],
      figures: item.figures as LagFigures | undefined,
      rewinds: typeof item.rewinds === 'number' ? item.rewinds : 0,
      ...(typeof item.selection === 'string' ? { selection: item.selection } : {}),
    };
  }

  async putLagRecord(targetId: string, record: LagRecord): Promise<boolean> {
    const rewinds = record.rewinds ?? 0;
    return this.conditional(
      async () => {
        await this.db.send(
          new PutCommand({
            TableName: this.table,
            Item: {
              ...watermarkItemKey(targetId),
              cursor: [...record.cursor],
              // Through JSON: the figures' absent (undefined) fields are left out, as DynamoDB wants.
              ...(record.figures ? { figures: JSON.parse(JSON.stringify(record.figures)) as Item } : {}),
              ...(rewinds > 0 ? { rewinds } : {}),
              ...(record.selection === undefined ? {} : { selection: record.selection }),
            },
            // noRewindSince: a rewind made while the run went on is not written over.
            ConditionExpression: rewinds > 0 ? 'rewinds = :rewinds' : 'attribute_not_exists(rewinds)',
            ...(rewinds > 0 ? { ExpressionAttributeValues: { ':rewinds': rewinds } } : {}),
          }),
        );
        return true;
      },
      () => false,
    );
  }

  async rewindWatermark(targetId: string, path: string, version: number): Promise<void> {
    const entry = await this.get(versionItemKey(path, version));
    if (typeof entry?.shard !== 'number' || typeof entry.feedSeq !== 'number') return;
    const below = entry.feedSeq - 1;
    await this.conditional(
      async () => {
        await this.db.send(
          new UpdateCommand({
            TableName: this.table,
            Key: watermarkItemKey(targetId),
            // A list element by its index: written into the expression (the shard, a number).
            UpdateExpression: `SET #cursor[${entry.shard}] = :below ADD rewinds :one`,
            // watermarkIsPastIt: a watermark at or below the entry (or none yet) reads it anyway.
            ConditionExpression: `#cursor[${entry.shard}] > :below`,
            ExpressionAttributeNames: { '#cursor': 'cursor' },
            ExpressionAttributeValues: { ':below': below, ':one': 1 },
          }),
        );
        return true;
      },
      () => false,
    );
  }

  async getReconcileCheckpoint(): Promise<ReconcileCheckpoint | undefined> {
    const item = await this.get(reconcileCheckpointItemKey);
    if (!item) return undefined;
    return {
      cycleStartedAt: item.cycleStartedAt as string,
      heads: item.heads as number,
      ...(typeof item.after === 'string' ? { after: item.after } : {}),
      ...(typeof item.lastCycleEndedAt === 'string' ? { lastCycleEndedAt: item.lastCycleEndedAt } : {}),
      ...listingOf(item.listing),
    };
  }

  async putReconcileCheckpoint(checkpoint: ReconcileCheckpoint): Promise<void> {
    // An UpdateItem, not a PutItem: reconcile's role may update rows, never replace them (lib/grants.ts).
    const fields = Object.entries(checkpoint).filter(([, v]) => v !== undefined);
    const removed = (['after', 'lastCycleEndedAt', 'listing'] as const).filter(
      (k) => checkpoint[k] === undefined,
    );
    await this.db.send(
      new UpdateCommand({
        TableName: this.table,
        Key: reconcileCheckpointItemKey,
        UpdateExpression: [
          `SET ${fields.map(([k]) => `#${k} = :${k}`).join(', ')}`,
          ...(removed.length > 0 ? [`REMOVE ${removed.map((k) => `#${k}`).join(', ')}`] : []),
        ].join(' '),
        ExpressionAttributeNames: Object.fromEntries(
          [...fields.map(([k]) => k), ...removed].map((k) => [`#${k}`, k]),
        ),
        ExpressionAttributeValues: Object.fromEntries(fields.map(([k, v]) => [`:${k}`, v])),
      }),
    );
  }

  async getAgentReport(targetId: string): Promise<AgentReport | undefined> {
    const item = await this.get(agentRowKey(targetId));
    if (typeof item?.heartbeatAt !== 'string') return undefined;
    const conditions = Array.isArray(item.conditions) ? item.conditions : [];
    const since = typeof item.rebuildingSince === 'string' ? item.rebuildingSince : undefined;
    return {
      heartbeatAt: item.heartbeatAt,
      conditions: conditions.filter((c): c is string => typeof c === 'string'),
      ...(item.rebuilding === true ? { rebuilding: since === undefined ? {} : { since } } : {}),
    };
  }

  // Targets

  async getTargetState(path: string, targetId: string): Promise<TargetState | undefined> {
    const item = await this.get(targetStateItemKey(targetId, path));
    return item ? toTargetState(item) : undefined;
  }

  async readForReplication(
    path: string,
    targetId: string,
    sha256: string | undefined,
  ): Promise<ReplicationRead> {
    const keys = {
      head: headItemKey(path),
      state: targetStateItemKey(targetId, path),
      blob: sha256 === undefined ? undefined : blobItemKey(sha256),
    };
    const items = await this.batchGet(
      [keys.head, keys.state, ...(keys.blob === undefined ? [] : [keys.blob])].map((key) => ({ ...key })),
    );
    const found = (key: { pk: string; sk: string } | undefined) =>
      key === undefined ? undefined : items.find((item) => item.pk === key.pk && item.sk === key.sk);
    const head = found(keys.head);
    const state = found(keys.state);
    const blob = found(keys.blob);
    return {
      head: head ? toVersion(head) : undefined,
      state: state ? toTargetState(state) : undefined,
      blob: blob ? (stripKeys(blob) as unknown as Blob) : undefined,
    };
  }

  async listTargetStates(path: string, targetIds: readonly string[]): Promise<TargetState[]> {
    const states = await Promise.all(targetIds.map((id) => this.getTargetState(path, id)));
    return states.filter((s): s is TargetState => s !== undefined);
  }

  async recordTargetState(state: TargetState): Promise<boolean> {
    const result = await this.conditional(
      () =>
        this.db.send(
          new UpdateCommand({
            TableName: this.table,
            Key: targetStateItemKey(state.targetId, state.path),
            UpdateExpression:
              'SET targetId = :target, #path = :path, appliedVersion = :version, #status = :status, appliedAt = :at, reason = :reason, etag = :etag REMOVE failedVersion, failedReason, failedAt',
            ConditionExpression: CONDITIONS.targetIsBehind,
            ExpressionAttributeNames: { '#status': 'status', '#path': 'path' },
            ExpressionAttributeValues: {
              ':target': state.targetId,
              ':path': state.path,
              ':version': state.appliedVersion,
              ':status': state.status,
              ':at': state.appliedAt,
              ':reason': state.reason ?? null,
              ':etag': state.etag ?? null,
              ':verified': 'verified',
            },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      () => false,
    );
    return result !== false;
  }

  async recordTargetFailure(failure: {
    targetId: string;
    path: string;
    version: number;
    reason: string;
    at: string;
  }) {
    await this.db.send(new UpdateCommand(targetFailureUpdate(this.table, failure)));
  }

  async forgetTargetState(path: string, targetId: string) {
    await this.db.send(new DeleteCommand({ TableName: this.table, Key: targetStateItemKey(targetId, path) }));
  }

  // Multipart copies left open at targets

  async getCopyUpload(targetId: string, path: string): Promise<CopyUpload | undefined> {
    const item = await this.get(copyUploadItemKey(targetId, path));
    return item?.uploadId === undefined ? undefined : (stripKeys(item) as unknown as CopyUpload);
  }

  async putCopyUpload(targetId: string, path: string, upload: CopyUpload): Promise<void> {
    await this.db.send(
      new PutCommand({
        TableName: this.table,
        Item: { ...copyUploadItemKey(targetId, path), ...JSON.parse(JSON.stringify(upload)) },
      }),
    );
  }

  /**
   * Empties the item rather than deleting it: the replicate role has no DeleteItem on the ledger
   * (it must never delete a version, a target row or a feed entry), and an empty item reads as none.
   */
  async deleteCopyUpload(targetId: string, path: string, uploadId: string): Promise<void> {
    await this.conditional(
      () =>
        this.db.send(
          new UpdateCommand({
            TableName: this.table,
            Key: copyUploadItemKey(targetId, path),
            UpdateExpression: `REMOVE ${COPY_UPLOAD_FIELDS.map((_, i) => `#f${i}`).join(', ')}`,
            ConditionExpression: CONDITIONS.copyUploadIs,
            ExpressionAttributeNames: Object.fromEntries(COPY_UPLOAD_FIELDS.map((f, i) => [`#f${i}`, f])),
            ExpressionAttributeValues: { ':uploadId': uploadId },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        ),
      // Gone already, or a newer copy's record: that one stays.
      () => undefined,
    );
  }
}
