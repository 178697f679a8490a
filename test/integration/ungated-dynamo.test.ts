/**
 * MIRROR_BENCH_UNGATED (measurement only): the local DynamoDB then checks no signature,
 * Host or browser, but still answers transactions (the ledger's commits need them and
 * only the gate has them); without it the same bad key is refused.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CreateTableCommand,
  DynamoDBClient,
  GetItemCommand,
  ListTablesCommand,
  TransactionCanceledException,
  TransactWriteItemsCommand,
  waitUntilTableExists,
} from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningEmulator, startDynamo } from '../../local/emulators.ts';
import { UNGATED_ENV } from '../../local/gate.ts';

const WRONG_KEY = { accessKeyId: 'someone', secretAccessKey: 'else' };
const TABLE = 'ungated';
let dir: string;

async function withDynamo<T>(ungated: boolean, fn: (db: RunningEmulator) => Promise<T>): Promise<T> {
  const previous = process.env[UNGATED_ENV];
  if (ungated) process.env[UNGATED_ENV] = '1';
  else delete process.env[UNGATED_ENV];
  let db: RunningEmulator;
  try {
    db = await startDynamo({ dir: await mkdtemp(join(dir, 'db-')), port: 0 });
  } finally {
    if (previous === undefined) delete process.env[UNGATED_ENV];
    else process.env[UNGATED_ENV] = previous;
  }
  try {
    return await fn(db);
  } finally {
    await db.stop();
  }
}

const client = (db: RunningEmulator) =>
  new DynamoDBClient({ region: 'us-east-1', endpoint: db.endpoint, credentials: WRONG_KEY, maxAttempts: 1 });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mirror-ungated-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the ungated DynamoDB (bench only)', () => {
  it('takes any key and still answers transactions, all or nothing', async () => {
    await withDynamo(true, async (db) => {
      const ddb = client(db);
      await ddb.send(
        new CreateTableCommand({
          TableName: TABLE,
          AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
          KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
          BillingMode: 'PAY_PER_REQUEST',
        }),
      );
      await waitUntilTableExists(
        { client: ddb, maxWaitTime: 10, minDelay: 0.02, maxDelay: 0.1 },
        { TableName: TABLE },
      );
      const put = (pk: string) => ({
        Put: { TableName: TABLE, Item: { pk: { S: pk } }, ConditionExpression: 'attribute_not_exists(pk)' },
      });
      await ddb.send(new TransactWriteItemsCommand({ TransactItems: [put('a'), put('b')] }));
      // 'a' exists: the whole transaction is cancelled, so 'c' is not written either.
      const refused = ddb.send(new TransactWriteItemsCommand({ TransactItems: [put('c'), put('a')] }));
      await expect(refused).rejects.toBeInstanceOf(TransactionCanceledException);
      const get = async (pk: string) =>
        (
          await ddb.send(
            new GetItemCommand({ TableName: TABLE, Key: { pk: { S: pk } }, ConsistentRead: true }),
          )
        ).Item;
      expect(await get('a')).toEqual({ pk: { S: 'a' } });
      expect(await get('b')).toEqual({ pk: { S: 'b' } });
      expect(await get('c')).toBeUndefined();
      ddb.destroy();
    });
  });

  it('without the variable the same key is refused', async () => {
    await withDynamo(false, async (db) => {
      const ddb = client(db);
      await expect(ddb.send(new ListTablesCommand({}))).rejects.toMatchObject({
        name: 'UnrecognizedClientException',
        $metadata: { httpStatusCode: 400 },
      });
      ddb.destroy();
    });
  });
});
