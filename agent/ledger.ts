/**
 * The agent's own view of the ledger: exactly the rows its IAM role reaches (docs/agent.md),
 * read and written with the key layout and item schemas of contracts/ledger-keys.ts. The agent
 * ships alone, so it carries this small reader instead of the Lambda functions' adapter.
 */
import { ConditionalCheckFailedException, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { batchGetItems } from '../common/dynamo-batch-get.ts';
import {
  type AgentRow,
  agentRowKey,
  agentRowSchema,
  blobItemKey,
  blobItemSchema,
  feedAfterQuery,
  feedItemSchema,
  latestFeedSeqQuery,
  targetFailureUpdate,
  targetStateItemKey,
  versionItemKey,
  versionItemSchema,
} from '../contracts/ledger-keys.ts';
import type { Change, FileVersion } from '../contracts/model.ts';
import type { LedgerView } from './ports.ts';

type BlobRow = ReturnType<typeof blobItemSchema.parse>;
type ItemKey = { pk: string; sk: string };

/**
 * A blob record read with its version (getVersionWithBlob) serves the download that follows for this
 * long, once; later, or a second time, getBlob reads it again. The download starts right after the
 * check, so this only bounds what an apply that never downloads (the bytes were there) leaves behind.
 */
const PREFETCH_MS = 30_000;
const PREFETCH_MAX = 256;
/** Tries of a BatchGetItem's unprocessed keys before each is read by GetItem. */
const BATCH_TRIES = 3;

/** Where the agent learns which object version of a blob was verified: the ledger's `B#<sha256>` row. */
export interface BlobRecords {
  getBlob(sha256: string): Promise<{ readonly versionId?: string | undefined } | undefined>;
}

/** The same condition the functions write a target's row under: never backwards, re-verify allowed. */
const TARGET_IS_BEHIND =
  'attribute_not_exists(appliedVersion) OR appliedVersion < :version OR (appliedVersion = :version AND #status <> :verified)';

function isConditionFailure(error: unknown): boolean {
  return (
    error instanceof ConditionalCheckFailedException ||
    (error as { name?: string } | null)?.name === 'ConditionalCheckFailedException'
  );
}

export class DynamoLedgerView implements LedgerView, BlobRecords {
  private readonly doc: DynamoDBDocumentClient;

  constructor(
    dynamo: DynamoDBClient,
    private readonly table: string,
    private readonly targetId: string,
  ) {
    this.doc = DynamoDBDocumentClient.from(dynamo, { marshallOptions: { removeUndefinedValues: true } });
  }

  private readonly prefetched = new Map<
    string,
    { readonly at: number; readonly blob: BlobRow | undefined }
  >();

  private async get(key: { pk: string; sk: string }): Promise<Record<string, unknown> | undefined> {
    const out = await this.doc.send(
      new GetCommand({ TableName: this.table, Key: key, ConsistentRead: true }),
    );
    return out.Item;
  }

  async getVersion(path: string, version: number): Promise<FileVersion | undefined> {
    const item = await this.get(versionItemKey(path, version));
    return item ? versionItemSchema.parse(item) : undefined;
  }

  async getBlob(sha256: string): Promise<BlobRow | undefined> {
    const prefetched = this.prefetched.get(sha256);
    if (prefetched) {
      this.prefetched.delete(sha256);
      if (performance.now() - prefetched.at < PREFETCH_MS) return prefetched.blob;
    }
    const item = await this.get(blobItemKey(sha256));
    return item ? blobItemSchema.parse(item) : undefined;
  }

  /**
   * The version record and the blob record of `sha256` in one strongly consistent BatchGetItem (both
   * rows are in this table); the blob record is kept for getBlob, which the download calls next.
   */
  async getVersionWithBlob(
    path: string,
    version: number,
    sha256: string | null,
  ): Promise<FileVersion | undefined> {
    if (sha256 === null) return this.getVersion(path, version);
    const versionKey = versionItemKey(path, version);
    const blobKey = blobItemKey(sha256);
    const items = await this.batchGet([versionKey, blobKey]);
    const find = (key: ItemKey) => items.find((item) => item.pk === key.pk && item.sk === key.sk);
    const blobItem = find(blobKey);
    this.prefetch(sha256, blobItem ? blobItemSchema.parse(blobItem) : undefined);
    const item = find(versionKey);
    return item ? versionItemSchema.parse(item) : undefined;
  }

  private prefetch(sha256: string, blob: BlobRow | undefined): void {
    this.prefetched.delete(sha256);
    this.prefetched.set(sha256, { at: performance.now(), blob });
    for (const key of this.prefetched.keys()) {
      if (this.prefetched.size <= PREFETCH_MAX) break;
      this.prefetched.delete(key);
    }
  }

  /** The items of `keys` that exist; keys DynamoDB still leaves unprocessed after a few tries, one by one. */
  private async batchGet(keys: readonly ItemKey[]): Promise<Record<string, unknown>[]> {
    const { found, unprocessed } = await batchGetItems(this.doc, this.table, keys, {
      tries: BATCH_TRIES,
      backoffUnitMs: 50,
    });
    for (const key of unprocessed) {
      const item = await this.get(key as ItemKey);
      if (item) found.push(item);
    }
    return found;
  }

  async readFeed(shard: number, afterSeq: number, limit: number): Promise<Change[]> {
    const out = await this.doc.send(new QueryCommand(feedAfterQuery(this.table, shard, afterSeq, limit)));
    return (out.Items ?? []).map((item) => feedItemSchema.parse(item));
  }

  async latestFeedSeq(shard: number): Promise<number> {
    const out = await this.doc.send(new QueryCommand(latestFeedSeqQuery(this.table, shard)));
    return (out.Items?.[0]?.seq as number | undefined) ?? 0;
  }

  async recordApplied(path: string, version: number, at: string): Promise<void> {
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.table,
          Key: targetStateItemKey(this.targetId, path),
          UpdateExpression:
            'SET targetId = :target, #path = :path, appliedVersion = :version, #status = :status, appliedAt = :at, reason = :reason, etag = :etag REMOVE failedVersion, failedReason, failedAt',
          ConditionExpression: TARGET_IS_BEHIND,
          ExpressionAttributeNames: { '#status': 'status', '#path': 'path' },
          ExpressionAttributeValues: {
            ':target': this.targetId,
            ':path': path,
            ':version': version,
            ':status': 'verified',
            ':at': at,
            ':reason': null,
            ':etag': null,
            ':verified': 'verified',
          },
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
    } catch (error) {
      // The row already holds this version (verified) or a newer one: nothing to do.
      if (!isConditionFailure(error)) throw error;
    }
  }

  async recordRefusal(path: string, version: number, reason: string, at: string): Promise<void> {
    // As the replicate functions record a failure.
    await this.doc.send(
      new UpdateCommand(
        targetFailureUpdate(this.table, { targetId: this.targetId, path, version, reason, at }),
      ),
    );
  }

  async writeAgentRow(row: AgentRow): Promise<void> {
    await this.doc.send(
      new PutCommand({ TableName: this.table, Item: { ...agentRowKey(this.targetId), ...row } }),
    );
  }

  async readAgentRow(): Promise<AgentRow | undefined> {
    const item = await this.get(agentRowKey(this.targetId));
    return item ? agentRowSchema.parse(item) : undefined;
  }
}
