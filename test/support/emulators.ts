/**
 * Emulators for domain-level integration tests: DynamoDB (dynalite), S3 (local/s3)
 * and SQS (fauxqs), in-process on ephemeral loopback ports, in a temp folder.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { CreateBucketCommand, type S3Client } from '@aws-sdk/client-s3';
import {
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  type Message,
  ReceiveMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { makeS3Client } from '../../functions/adapters/s3.js';
import { LOCAL_CREDENTIALS, type S3Emulator, startDynamo, startS3, startSqs } from '../../local/emulators.ts';
import { ensureLedgerTable } from '../../local/resources.ts';

const credentials = { ...LOCAL_CREDENTIALS };

export interface TestEmulators {
  dir: string;
  /** The S3 emulator itself (its created-object events). */
  s3Emulator: S3Emulator;
  dynamo: DynamoDBClient;
  s3: S3Client;
  sqs: SQSClient;
  endpoints: { dynamodb: string; s3: string; sqs: string };
  createTable(name?: string): Promise<string>;
  createBucket(name: string): Promise<string>;
  createFifoQueue(name: string): Promise<string>;
  /** Every message on the queue, deleted as received (a FIFO group's next message comes once the one before is gone). */
  drainQueue(queueUrl: string): Promise<Message[]>;
  /** Sets AWS_ENDPOINT_URL_* etc. so code that builds its own clients reaches these emulators. */
  env(): Record<string, string>;
  stop(): Promise<void>;
}

let tableCounter = 0;

export async function startEmulators(): Promise<TestEmulators> {
  const dir = await mkdtemp(join(tmpdir(), 'mirror-test-'));
  // Behind the local gate, as in `npm start`: it answers DynamoDB transactions, which dynalite lacks.
  const dyn = await startDynamo({ port: 0, tableStatusMs: 0 });
  const dynamoEndpoint = dyn.endpoint;
  const s3Emulator = await startS3({ dir: join(dir, 's3'), port: 0 });
  const s3Endpoint = s3Emulator.endpoint;
  // The local stack's SQS (fauxqs behind the gate): queue URLs name 127.0.0.1, so a handler whose
  // client takes its endpoint from AWS_ENDPOINT_URL_SQS reaches them too.
  const fauxqs = await startSqs({ port: 0, region: 'us-east-1' });
  const sqsEndpoint = fauxqs.endpoint;

  process.env.AWS_ACCESS_KEY_ID ??= credentials.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY ??= credentials.secretAccessKey;
  const region = 'us-east-1';
  const dynamo = new DynamoDBClient({ region, endpoint: dynamoEndpoint, credentials });
  const s3 = makeS3Client({ region, forcePathStyle: true, endpoint: s3Endpoint, credentials });
  const sqs = new SQSClient({ region, endpoint: sqsEndpoint, credentials });

  return {
    dir,
    s3Emulator,
    dynamo,
    s3,
    sqs,
    endpoints: { dynamodb: dynamoEndpoint, s3: s3Endpoint, sqs: sqsEndpoint },
    async createTable(name = `ledger-${process.pid}-${++tableCounter}`) {
      // As local/resources.ts creates the stack's ledger, and only once it is ACTIVE.
      await ensureLedgerTable(dynamo, name);
      return name;
    },
    async createBucket(name) {
      await s3.send(new CreateBucketCommand({ Bucket: name }));
      return name;
    },
    async createFifoQueue(name) {
      const out = await sqs.send(
        new CreateQueueCommand({
          QueueName: `${name}.fifo`,
          Attributes: { FifoQueue: 'true', VisibilityTimeout: '5' },
        }),
      );
      return out.QueueUrl as string;
    },
    async drainQueue(queueUrl) {
      const all: Message[] = [];
      for (;;) {
        const out = await sqs.send(
          new ReceiveMessageCommand({
            QueueUrl: queueUrl,
            MaxNumberOfMessages: 10,
            WaitTimeSeconds: 0,
            VisibilityTimeout: 300,
            MessageSystemAttributeNames: ['MessageGroupId', 'MessageDeduplicationId'],
          }),
        );
        if (!out.Messages?.length) return all;
        all.push(...out.Messages);
        const deleted = await sqs.send(
          new DeleteMessageBatchCommand({
            QueueUrl: queueUrl,
            Entries: out.Messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle })),
          }),
        );
        if (deleted.Failed?.length) throw new Error(`could not delete: ${JSON.stringify(deleted.Failed)}`);
      }
    },
    env: () => ({
      AWS_ENDPOINT_URL_DYNAMODB: dynamoEndpoint,
      AWS_ENDPOINT_URL_S3: s3Endpoint,
      AWS_ENDPOINT_URL_SQS: sqsEndpoint,
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
      AWS_REGION: region,
    }),
    async stop() {
      await fauxqs.stop();
      await s3Emulator.stop();
      await dyn.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Writes the endpoints file an agent of pull target `gamma` reads (`--endpoints`), naming these
 * emulators, the table, the origin bucket and the target's queue.
 */
export async function writePullEndpoints(
  emulators: Pick<TestEmulators, 'endpoints'>,
  file: string,
  ledger: { table: string; originBucket: string; queueUrl: string },
): Promise<string> {
  await writeFile(
    file,
    JSON.stringify({
      s3: {
        endpoint: emulators.endpoints.s3,
        region: 'us-east-1',
        credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
        forcePathStyle: true,
      },
      sqs: { endpoint: emulators.endpoints.sqs },
      dynamodb: { endpoint: emulators.endpoints.dynamodb },
      table: ledger.table,
      originBucket: ledger.originBucket,
      feedShards: 4,
      targets: { gamma: { kind: 'pull', queue: ledger.queueUrl } },
    }),
  );
  return file;
}
