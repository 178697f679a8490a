/**
 * The agent's ports on the AWS SDK. Every call here is one its IAM role allows
 * (docs/agent.md): s3:GetObject and s3:GetObjectVersion on `blobs/*`; dynamodb:GetItem/Query
 * on `P#*` and `FEED#*`, GetItem on `B#*` (which blob version was verified), BatchGetItem of a
 * version and its blob record together;
 * dynamodb:PutItem/UpdateItem on `T#<target>#*` and `AGENT#<target>`;
 * sqs:ReceiveMessage/DeleteMessage (DeleteMessageBatch)/ChangeMessageVisibility (and optionally
 * GetQueueAttributes, for the backlog figure) on its own queue.
 */
import type { Readable } from 'node:stream';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand, NoSuchKey, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { defaultProvider } from '@aws-sdk/credential-provider-node';
import { SqsBatcher } from '../common/sqs-batcher.ts';
import { blobKey } from '../contracts/ledger-keys.ts';
import type { AgentConfig } from './config.ts';
import { RefusedError } from './errors.ts';
import { type BlobRecords, DynamoLedgerView } from './ledger.ts';
import type { BlobSource, QueueMessage, QueuePort } from './ports.ts';
import { ServerClock, watchServerClock } from './server-clock.ts';

export interface AgentClients {
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  readonly dynamo: DynamoDBClient;
  /** The servers' clock, read from the DynamoDB client's answers. @default this host's clock */
  readonly clock?: ServerClock;
}

/** Connection timeouts so a dead network shows up as an error, not a hang. */
const REQUEST_HANDLER = { connectionTimeout: 10_000, socketTimeout: 60_000 } as const;

/**
 * The SDK app id of a target's agent (`app/mirror-agent-<target>` in its user agent): at most 45
 * characters for a 32-character target id, under the SDK's limit of 50.
 */
export const agentAppId = (targetId: string): string => `mirror-agent-${targetId}`;

/**
 * The standard chain, but reading the shared config and credentials files again each time it runs
 * (the SDK otherwise keeps their first reading for the life of the process): the chain runs again
 * after each failure and when credentials expire, so a file fixed while the agent retries is used
 * without a restart (docs/agent.md, "Credentials and what the role allows").
 */
const rereadingChain = (input: Record<string, unknown>) => defaultProvider({ ...input, ignoreCache: true });

export function makeClients(config: AgentConfig): AgentClients {
  const credentials = config.aws.credentials;
  const common = {
    region: config.region,
    requestHandler: REQUEST_HANDLER,
    // In the user agent of every request (CloudTrail's userAgent): which agent, of which target.
    userAgentAppId: agentAppId(config.targetId),
    // A copy: the SDK annotates the credentials object it is given, which must not leak between runs.
    ...(credentials ? { credentials: { ...credentials } } : { credentialDefaultProvider: rereadingChain }),
  };
  const dynamo = new DynamoDBClient({
    ...common,
    ...(config.aws.dynamodbEndpoint ? { endpoint: config.aws.dynamodbEndpoint } : {}),
  });
  const clock = new ServerClock();
  watchServerClock(dynamo, clock);
  return {
    clock,
    dynamo,
    s3: new S3Client({
      ...common,
      ...(config.aws.s3Endpoint ? { endpoint: config.aws.s3Endpoint } : {}),
      forcePathStyle: config.aws.s3ForcePathStyle,
      // Checksums only where required (docs/platform.md); the agent hashes every byte itself.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    }),
    sqs: new SQSClient({
      ...common,
      ...(config.aws.sqsEndpoint ? { endpoint: config.aws.sqsEndpoint } : {}),
    }),
  };
}

export function destroyClients(clients: AgentClients): void {
  clients.s3.destroy();
  clients.sqs.destroy();
  clients.dynamo.destroy();
}

export class S3BlobSource implements BlobSource {
  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    private readonly records: BlobRecords,
  ) {}

  async open(sha256: string, signal: AbortSignal) {
    try {
      // The verified version: other bytes written at the key later are never fetched.
      const versionId = (await this.records.getBlob(sha256))?.versionId;
      const out = await this.s3.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: blobKey(sha256), VersionId: versionId }),
        { abortSignal: signal },
      );
      const body = out.Body as Readable | undefined;
      if (!body) throw new Error(`GetObject of ${blobKey(sha256)} returned no body`);
      return { body, contentLength: out.ContentLength, close: () => body.destroy() };
    } catch (error) {
      if (
        error instanceof NoSuchKey ||
        (error instanceof S3ServiceException && error.$metadata.httpStatusCode === 404)
      ) {
        throw new RefusedError('missing-blob', `the origin has no ${blobKey(sha256)}`);
      }
      throw error;
    }
  }
}

/** The origin's blobs as the agent reads them: each pinned to the version the ledger verified. */
export function originBlobSource(
  clients: AgentClients,
  config: AgentConfig,
  /** The ledger view the applier checks versions with: the blob records it read along come from it. */
  records: BlobRecords = new DynamoLedgerView(clients.dynamo, config.table, config.targetId),
): S3BlobSource {
  return new S3BlobSource(clients.s3, config.originBucket, records);
}

export class SqsQueue implements QueuePort {
  /**
   * Deletes of messages handled close together go as one `DeleteMessageBatch`; each delete settles by
   * its own entry (a refused one rejects with SQS's code: the message comes back and is skipped).
   */
  private readonly deletes: SqsBatcher<{ ReceiptHandle: string }>;

  constructor(
    private readonly sqs: SQSClient,
    private readonly queueUrl: string,
  ) {
    this.deletes = new SqsBatcher((queueUrl, entries) =>
      sqs.send(new DeleteMessageBatchCommand({ QueueUrl: queueUrl, Entries: entries })),
    );
  }

  async receive(options: {
    max: number;
    waitSeconds: number;
    visibilitySeconds: number;
    signal: AbortSignal;
  }) {
    const out = await this.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: this.queueUrl,
        MaxNumberOfMessages: Math.max(1, Math.min(10, options.max)),
        WaitTimeSeconds: options.waitSeconds,
        VisibilityTimeout: options.visibilitySeconds,
        MessageSystemAttributeNames: ['ApproximateReceiveCount', 'MessageGroupId'],
      }),
      { abortSignal: options.signal },
    );
    return (out.Messages ?? []).flatMap((m): QueueMessage[] =>
      m.ReceiptHandle && m.MessageId
        ? [
            {
              messageId: m.MessageId,
              receiptHandle: m.ReceiptHandle,
              body: m.Body ?? '',
              receiveCount: Number(m.Attributes?.ApproximateReceiveCount ?? 1) || 1,
              groupId: m.Attributes?.MessageGroupId,
            },
          ]
        : [],
    );
  }

  async delete(receiptHandle: string): Promise<void> {
    await this.deletes.add(this.queueUrl, { ReceiptHandle: receiptHandle });
  }

  async setVisibility(entries: readonly { receiptHandle: string; seconds: number }[]): Promise<void> {
    for (let i = 0; i < entries.length; i += 10) {
      const batch = entries.slice(i, i + 10);
      await this.sqs.send(
        new ChangeMessageVisibilityBatchCommand({
          QueueUrl: this.queueUrl,
          Entries: batch.map((e, j) => ({
            Id: String(j),
            ReceiptHandle: e.receiptHandle,
            VisibilityTimeout: Math.max(0, Math.min(43_200, Math.round(e.seconds))),
          })),
        }),
      );
    }
  }

  async backlog(): Promise<number | undefined> {
    const out = await this.sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: this.queueUrl,
        AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
      }),
    );
    const visible = Number(out.Attributes?.ApproximateNumberOfMessages);
    const inFlight = Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible);
    if (!Number.isFinite(visible)) return undefined;
    return visible + (Number.isFinite(inFlight) ? inFlight : 0);
  }
}
