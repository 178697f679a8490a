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

  async getBlob(sha256: string) {
    const item = await this.get(blobItemKey(sha256));
    return item ? blobItemSchema.parse(item) : undefined;
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
