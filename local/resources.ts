/**
 * The stack's resources on the emulators, created through the same APIs the CDK app
 * stands for. Idempotent: DynamoDB tables and S3 buckets persist in the data folder,
 * SQS queues (in memory) are made afresh on every start.
 */
import {
  type AttributeDefinition,
  CreateTableCommand,
  DescribeTableCommand,
  type DynamoDBClient,
  type GlobalSecondaryIndex,
  ResourceNotFoundException,
  UpdateTableCommand,
} from '@aws-sdk/client-dynamodb';
import {
  type BucketLocationConstraint,
  CreateBucketCommand,
  HeadBucketCommand,
  PutBucketCorsCommand,
  PutBucketVersioningCommand,
  type S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { CreateQueueCommand, GetQueueAttributesCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { sleep } from '../common/retry.ts';
import { LIVE_FILES_INDEX, PENDING_INDEX } from '../contracts/ledger-keys.ts';
import { REPLICA_MAX_RECEIVES } from '../contracts/replica-copy.ts';
import { sharedBuckets, type Topology } from '../contracts/topology.ts';

export const LOCAL_NAMES = Object.freeze({
  table: 'mirror-ledger',
  originBucket: 'mirror-origin',
  ingestQueue: 'mirror-ingest',
  ingestDlq: 'mirror-ingest-dlq',
  completionQueue: 'mirror-completion',
  completionDlq: 'mirror-completion-dlq',
  targetQueue: (id: string) => `mirror-target-${id}.fifo`,
  targetDlq: (id: string) => `mirror-target-${id}-dlq.fifo`,
  replicaBucket: (id: string) => `replica-${id}`,
});

export interface QueueRef {
  readonly name: string;
  readonly url: string;
  readonly arn: string;
}

export interface QueuePair {
  readonly queue: QueueRef;
  readonly dlq: QueueRef;
}

export interface TargetResources extends QueuePair {
  readonly id: string;
  readonly kind: 's3' | 'pull';
  /** S3 targets only. */
  readonly bucket: string | undefined;
  readonly region: string | undefined;
  readonly keyPrefix: string;
  readonly pathPrefix: string | undefined;
  readonly dryRun: boolean;
}

export interface Resources {
  readonly table: string;
  readonly originBucket: string;
  readonly ingest: QueuePair;
  /** Multipart completions the API queues for the complete-multipart function. */
  readonly completion: QueuePair;
  readonly targets: readonly TargetResources[];
}

/** lib/constructs/queue-with-dlq.ts's default. */
const DEFAULT_MAX_RECEIVES = 5;

export interface QueueTuning {
  /** Seconds a received message stays invisible. */
  readonly ingestVisibilityTimeout: number;
  readonly targetVisibilityTimeout: number;
  /**
   * Receives before a message moves to its DLQ, on every queue. Unset, each queue has its
   * deployed count: REPLICA_MAX_RECEIVES for an S3 target's, 5 for the others.
   */
  readonly maxReceiveCount?: number | undefined;
}

export interface ResourceClients {
  /** Signs for the home region. */
  readonly s3: S3Client;
  /**
   * A client signing for another region: each bucket lives in its region, and the local S3, as
   * S3 does, refuses a request signed for another (docs/local-s3.md). @default `s3` for every region
   */
  readonly s3In?: (region: string) => S3Client;
  readonly sqs: SQSClient;
  readonly dynamodb: DynamoDBClient;
}

export async function ensureResources(
  clients: ResourceClients,
  topology: Topology,
  tuning: QueueTuning,
): Promise<Resources> {
  const shared = sharedBuckets([
    ['the origin bucket', LOCAL_NAMES.originBucket],
    ...topology.targets.flatMap((t) =>
      t.kind === 's3' ? [[`target "${t.id}"`, t.bucketName ?? LOCAL_NAMES.replicaBucket(t.id)] as const] : [],
    ),
  ]);
  if (shared.length > 0) throw new Error(`invalid topology for the local stack:\n  ${shared.join('\n  ')}`);
  await ensureLedgerTable(clients.dynamodb, LOCAL_NAMES.table);
  const s3In = (region: string) => clients.s3In?.(region) ?? clients.s3;
  await ensureBucket(s3In(topology.homeRegion), LOCAL_NAMES.originBucket, {
    versioned: true,
    region: topology.homeRegion,
  });
  const ingest = await ensureQueuePair(clients.sqs, LOCAL_NAMES.ingestQueue, LOCAL_NAMES.ingestDlq, {
    fifo: false,
    visibilityTimeout: tuning.ingestVisibilityTimeout,
    maxReceiveCount: tuning.maxReceiveCount ?? DEFAULT_MAX_RECEIVES,
  });
  // A completion takes one CompleteMultipartUpload call: the ingest's timeout is ample.
  const completion = await ensureQueuePair(
    clients.sqs,
    LOCAL_NAMES.completionQueue,
    LOCAL_NAMES.completionDlq,
    {
      fifo: false,
      visibilityTimeout: tuning.ingestVisibilityTimeout,
      maxReceiveCount: tuning.maxReceiveCount ?? DEFAULT_MAX_RECEIVES,
    },
  );
  const targets: TargetResources[] = [];
  for (const target of topology.targets) {
    const pair = await ensureQueuePair(
      clients.sqs,
      LOCAL_NAMES.targetQueue(target.id),
      LOCAL_NAMES.targetDlq(target.id),
      {
        fifo: true,
        visibilityTimeout: tuning.targetVisibilityTimeout,
        // A large copy goes on over many invocations, each a receive: 5 parked it here while
        // the deployed queue let it finish.
        maxReceiveCount:
          tuning.maxReceiveCount ?? (target.kind === 's3' ? REPLICA_MAX_RECEIVES : DEFAULT_MAX_RECEIVES),
      },
    );
    if (target.kind === 's3') {
      const bucket = target.bucketName ?? LOCAL_NAMES.replicaBucket(target.id);
      await ensureBucket(s3In(target.region), bucket, { region: target.region });
      targets.push({
        ...pair,
        id: target.id,
        kind: 's3',
        bucket,
        region: target.region,
        keyPrefix: target.keyPrefix,
        pathPrefix: target.pathPrefix,
        dryRun: target.dryRun,
      });
    } else {
      targets.push({
        ...pair,
        id: target.id,
        kind: 'pull',
        bucket: undefined,
        region: undefined,
        keyPrefix: '',
        pathPrefix: target.pathPrefix,
        dryRun: target.dryRun,
      });
    }
  }
  return { table: LOCAL_NAMES.table, originBucket: LOCAL_NAMES.originBucket, ingest, completion, targets };
}

/**
 * The ledger: `pk` (S) hash, `sk` (S) range, the live-files index; created if missing, and
 * returned only once ACTIVE (a table still CREATING answers ResourceNotFoundException).
 */
export async function ensureLedgerTable(dynamodb: DynamoDBClient, table: string): Promise<void> {
  try {
    const { Table } = await dynamodb.send(new DescribeTableCommand({ TableName: table }));
    const keys = (Table?.KeySchema ?? []).map((k) => `${k.AttributeName}:${k.KeyType}`).join(',');
    if (keys !== 'pk:HASH,sk:RANGE') {
      throw new Error(
        `table ${table} exists with key schema ${keys || '(none)'}, expected pk:HASH,sk:RANGE: ` +
          'remove the dynamodb folder in the data folder to start afresh',
      );
    }
    // A data folder from before an index: add it (items written since carry its keys).
    for (const index of LEDGER_INDEXES) {
      if (Table?.GlobalSecondaryIndexes?.some((i) => i.IndexName === index.definition.IndexName)) continue;
      await dynamodb.send(
        new UpdateTableCommand({
          TableName: table,
          AttributeDefinitions: index.attributes,
          GlobalSecondaryIndexUpdates: [{ Create: index.definition }],
        }),
      );
      await waitActive(dynamodb, table);
    }
    return;
  } catch (err) {
    if (!(err instanceof ResourceNotFoundException)) throw err;
  }
  await dynamodb.send(
    new CreateTableCommand({
      TableName: table,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [
        { AttributeName: 'pk', AttributeType: 'S' },
        { AttributeName: 'sk', AttributeType: 'S' },
        ...LEDGER_INDEXES.flatMap((i) => i.attributes),
      ],
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
      GlobalSecondaryIndexes: LEDGER_INDEXES.map((i) => i.definition),
    }),
  );
  await waitActive(dynamodb, table);
}

/** A keys-only index of the ledger, as lib/constructs/ledger.ts declares it on AWS, and its key attributes. */
function keysOnlyIndex(index: {
  readonly name: string;
  readonly partitionKey: string;
  readonly sortKey: string;
}): {
  definition: GlobalSecondaryIndex;
  attributes: AttributeDefinition[];
} {
  return {
    definition: {
      IndexName: index.name,
      KeySchema: [
        { AttributeName: index.partitionKey, KeyType: 'HASH' },
        { AttributeName: index.sortKey, KeyType: 'RANGE' },
      ],
      Projection: { ProjectionType: 'KEYS_ONLY' },
    },
    attributes: [
      { AttributeName: index.partitionKey, AttributeType: 'S' },
      { AttributeName: index.sortKey, AttributeType: 'S' },
    ],
  };
}

/** The live-files index (folder rule, listings) and the pending-uploads index (the sweeps). */
const LEDGER_INDEXES = [keysOnlyIndex(LIVE_FILES_INDEX), keysOnlyIndex(PENDING_INDEX)];

async function waitActive(dynamodb: DynamoDBClient, table: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const { Table } = await dynamodb.send(new DescribeTableCommand({ TableName: table }));
    const indexesReady = (Table?.GlobalSecondaryIndexes ?? []).every((i) => i.IndexStatus === 'ACTIVE');
    if (Table?.TableStatus === 'ACTIVE' && indexesReady) return;
    await sleep(10);
  }
  throw new Error(`table ${table} did not become ACTIVE`);
}

/**
 * The origin bucket is versioned, as on AWS: the ledger pins each verified blob to its
 * object version, so bytes written over a verified blob never replace what was verified.
 * Enabling it again on an existing bucket is harmless (and upgrades older data folders).
 */
async function ensureBucket(
  s3: S3Client,
  bucket: string,
  options: { versioned?: boolean; region: string },
): Promise<void> {
  let exists = true;
  try {
    await s3.send(new HeadBucketCommand({ Bucket: bucket }));
  } catch (err) {
    if (err instanceof S3ServiceException && err.$metadata.httpStatusCode === 400) {
      // A bucket keeps the region it was made in: the topology moved the target since.
      throw new Error(
        `bucket ${bucket} exists in this data folder in another region than ${options.region}, the one the topology names: put the region back, or start from another data folder (MIRROR_DATA_DIR)`,
        { cause: err },
      );
    }
    if (!(err instanceof S3ServiceException && err.$metadata.httpStatusCode === 404)) throw err;
    exists = false;
  }
  if (!exists) {
    await s3.send(
      new CreateBucketCommand({
        Bucket: bucket,
        // us-east-1 is the absence of a constraint (S3 refuses it named).
        ...(options.region === 'us-east-1'
          ? {}
          : {
              CreateBucketConfiguration: { LocationConstraint: options.region as BucketLocationConstraint },
            }),
      }),
    );
  }
  if (options.versioned) {
    await s3.send(
      new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: 'Enabled' } }),
    );
  }
}

/**
 * Lets browsers PUT (presigned) and GET objects from the given origins, and read the
 * ETag of what they uploaded (multipart completion needs each part's).
 */
export async function putBucketCors(s3: S3Client, bucket: string, origins: readonly string[]): Promise<void> {
  await s3.send(
    new PutBucketCorsCommand({
      Bucket: bucket,
      CORSConfiguration: {
        CORSRules: [
          {
            AllowedOrigins: [...new Set(origins)],
            AllowedMethods: ['PUT', 'GET', 'HEAD'],
            AllowedHeaders: ['*'],
            ExposeHeaders: ['ETag'],
            MaxAgeSeconds: 3000,
          },
        ],
      },
    }),
  );
}

async function ensureQueuePair(
  sqs: SQSClient,
  name: string,
  dlqName: string,
  options: { fifo: boolean; visibilityTimeout: number; maxReceiveCount: number },
): Promise<QueuePair> {
  // Target queues: one message group per path, explicit deduplication ids (the sender's),
  // high-throughput mode (deduplication and throughput limits per group).
  const fifo: Record<string, string> = options.fifo
    ? {
        FifoQueue: 'true',
        ContentBasedDeduplication: 'false',
        DeduplicationScope: 'messageGroup',
        FifoThroughputLimit: 'perMessageGroupId',
      }
    : {};
  const dlq = await createQueue(sqs, dlqName, { ...fifo, MessageRetentionPeriod: String(14 * 24 * 3600) });
  const queue = await createQueue(sqs, name, {
    ...fifo,
    VisibilityTimeout: String(options.visibilityTimeout),
    RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlq.arn, maxReceiveCount: options.maxReceiveCount }),
  });
  return { queue, dlq };
}

async function createQueue(
  sqs: SQSClient,
  name: string,
  attributes: Record<string, string>,
): Promise<QueueRef> {
  const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }));
  if (!QueueUrl) throw new Error(`CreateQueue ${name} returned no QueueUrl`);
  const { Attributes } = await sqs.send(
    new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ['QueueArn'] }),
  );
  const arn = Attributes?.QueueArn;
  if (!arn) throw new Error(`queue ${name} has no QueueArn`);
  return { name, url: QueueUrl, arn };
}
