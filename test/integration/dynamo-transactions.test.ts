/**
 * The local DynamoDB's transactions (local/dynamo-transactions.ts behind the gate), driven with
 * the real SDK: all or nothing, every condition checked, cancellation reasons, idempotency
 * tokens, and serializability against concurrent transactions and plain reads.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CreateTableCommand,
  DynamoDBClient,
  IdempotentParameterMismatchException,
  TransactionCanceledException,
  waitUntilTableExists,
} from '@aws-sdk/client-dynamodb';
import {
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  TransactGetCommand,
  TransactWriteCommand,
  type TransactWriteCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_CREDENTIALS, type RunningEmulator, startDynamo } from '../../local/emulators.ts';

let dir: string;
let dynamo: RunningEmulator;
let client: DynamoDBDocumentClient;
let tableCount = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mirror-tx-'));
  dynamo = await startDynamo({ dir, port: 0 });
  client = DynamoDBDocumentClient.from(
    new DynamoDBClient({
      region: 'us-east-1',
      endpoint: dynamo.endpoint,
      credentials: { ...LOCAL_CREDENTIALS },
    }),
  );
});

afterAll(async () => {
  client?.destroy();
  await dynamo?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function newTable(): Promise<string> {
  const name = `tx-${++tableCount}`;
  await client.send(
    new CreateTableCommand({
      TableName: name,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [
        { AttributeName: 'pk', AttributeType: 'S' },
        { AttributeName: 'sk', AttributeType: 'S' },
      ],
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
    }),
  );
  await waitUntilTableExists({ client, maxWaitTime: 10, minDelay: 0.02, maxDelay: 0.1 }, { TableName: name });
  return name;
}

const get = async (table: string, pk: string, sk = '-') =>
  (await client.send(new GetCommand({ TableName: table, Key: { pk, sk }, ConsistentRead: true }))).Item;

async function refusal(input: TransactWriteCommandInput): Promise<unknown> {
  return client.send(new TransactWriteCommand(input)).then(
    () => expect.unreachable('the transaction was expected to be refused'),
    (err: unknown) => err,
  );
}

describe('TransactWriteItems on the local DynamoDB', () => {
  it('writes every action, or none when one condition fails, naming each action’s reason', async () => {
    const table = await newTable();
    await client.send(new PutCommand({ TableName: table, Item: { pk: 'head', sk: '-', version: 3 } }));
    await client.send(new PutCommand({ TableName: table, Item: { pk: 'other', sk: '-' } }));

    const err = await refusal({
      TransactItems: [
        { Put: { TableName: table, Item: { pk: 'a', sk: '-', n: 1 } } },
        { Delete: { TableName: table, Key: { pk: 'other', sk: '-' } } },
        {
          ConditionCheck: {
            TableName: table,
            Key: { pk: 'head', sk: '-' },
            ConditionExpression: 'version = :v',
            ExpressionAttributeValues: { ':v': 2 },
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          },
        },
      ],
    });
    expect(err).toBeInstanceOf(TransactionCanceledException);
    const reasons = (err as TransactionCanceledException).CancellationReasons ?? [];
    expect(reasons.map((r) => r.Code)).toEqual(['None', 'None', 'ConditionalCheckFailed']);
    expect(reasons[2]?.Item).toEqual({ pk: { S: 'head' }, sk: { S: '-' }, version: { N: '3' } });
    expect(await get(table, 'a')).toBeUndefined();
    expect(await get(table, 'other')).toEqual({ pk: 'other', sk: '-' });
    expect(await get(table, 'head')).toEqual({ pk: 'head', sk: '-', version: 3 });

    await client.send(
      new TransactWriteCommand({
        TransactItems: [
          {
            Put: {
              TableName: table,
              Item: { pk: 'a', sk: '-', n: 1 },
              ConditionExpression: 'attribute_not_exists(pk)',
            },
          },
          {
            Update: {
              TableName: table,
              Key: { pk: 'head', sk: '-' },
              UpdateExpression: 'SET version = :next',
              ConditionExpression: 'version = :v',
              ExpressionAttributeValues: { ':v': 3, ':next': 4 },
            },
          },
          { Delete: { TableName: table, Key: { pk: 'gone', sk: '-' } } },
        ],
      }),
    );
    expect(await get(table, 'a')).toEqual({ pk: 'a', sk: '-', n: 1 });
    expect(await get(table, 'head')).toEqual({ pk: 'head', sk: '-', version: 4 });
  });

  it('checks every condition, and leaves out the old item unless ALL_OLD asks for it', async () => {
    const table = await newTable();
    await client.send(new PutCommand({ TableName: table, Item: { pk: 'x', sk: '-', v: 1 } }));
    await client.send(new PutCommand({ TableName: table, Item: { pk: 'y', sk: '-', v: 1 } }));
    const err = await refusal({
      TransactItems: [
        {
          Put: {
            TableName: table,
            Item: { pk: 'x', sk: '-', v: 2 },
            ConditionExpression: 'attribute_not_exists(pk)',
          },
        },
        {
          Update: {
            TableName: table,
            Key: { pk: 'y', sk: '-' },
            UpdateExpression: 'SET v = :two',
            ConditionExpression: 'v = :nine',
            ExpressionAttributeValues: { ':two': 2, ':nine': 9 },
          },
        },
      ],
    });
    const reasons = (err as TransactionCanceledException).CancellationReasons ?? [];
    expect(reasons.map((r) => r.Code)).toEqual(['ConditionalCheckFailed', 'ConditionalCheckFailed']);
    expect(reasons.every((r) => r.Item === undefined)).toBe(true);
    expect(await get(table, 'x')).toEqual({ pk: 'x', sk: '-', v: 1 });
    expect(await get(table, 'y')).toEqual({ pk: 'y', sk: '-', v: 1 });
  });

  it('puts back what it applied when a later action fails while applying', async () => {
    const table = await newTable();
    await client.send(
      new PutCommand({ TableName: table, Item: { pk: 'text', sk: '-', label: 'not a number' } }),
    );
    await client.send(new PutCommand({ TableName: table, Item: { pk: 'before', sk: '-', kept: true } }));
    const err = await refusal({
      TransactItems: [
        { Put: { TableName: table, Item: { pk: 'new', sk: '-' } } },
        { Put: { TableName: table, Item: { pk: 'before', sk: '-', kept: false } } },
        // Adding a number to a string fails only when applied: the condition-free check passes.
        {
          Update: {
            TableName: table,
            Key: { pk: 'text', sk: '-' },
            UpdateExpression: 'ADD label :one',
            ExpressionAttributeValues: { ':one': 1 },
          },
        },
      ],
    });
    const reasons = (err as TransactionCanceledException).CancellationReasons ?? [];
    expect(reasons.map((r) => r.Code)).toEqual(['None', 'None', 'ValidationError']);
    expect(await get(table, 'new')).toBeUndefined();
    expect(await get(table, 'before')).toEqual({ pk: 'before', sk: '-', kept: true });
    expect(await get(table, 'text')).toEqual({ pk: 'text', sk: '-', label: 'not a number' });
  });

  it('applies a request with a client token once, and refuses the token for another request', async () => {
    const table = await newTable();
    const addOne: TransactWriteCommandInput = {
      ClientRequestToken: 'token-1',
      TransactItems: [
        {
          Update: {
            TableName: table,
            Key: { pk: 'counter', sk: '-' },
            UpdateExpression: 'ADD n :one',
            ExpressionAttributeValues: { ':one': 1 },
          },
        },
      ],
    };
    await client.send(new TransactWriteCommand(addOne));
    await client.send(new TransactWriteCommand(addOne));
    expect(await get(table, 'counter')).toEqual({ pk: 'counter', sk: '-', n: 1 });

    const other = structuredClone(addOne);
    (other.TransactItems?.[0]?.Update as { ExpressionAttributeValues: object }).ExpressionAttributeValues = {
      ':one': 5,
    };
    expect(await refusal(other)).toBeInstanceOf(IdempotentParameterMismatchException);
    expect(await get(table, 'counter')).toEqual({ pk: 'counter', sk: '-', n: 1 });
  });

  it('refuses two actions on one item and more than 100 actions, writing nothing', async () => {
    const table = await newTable();
    const twice = await refusal({
      TransactItems: [
        { Put: { TableName: table, Item: { pk: 'p', sk: '-' } } },
        { Delete: { TableName: table, Key: { pk: 'p', sk: '-' } } },
      ],
    });
    expect((twice as Error).name).toBe('ValidationException');
    expect((twice as Error).message).toMatch(/multiple operations on one item/);
    const many = await refusal({
      TransactItems: Array.from({ length: 101 }, (_, i) => ({
        Put: { TableName: table, Item: { pk: `m${i}`, sk: '-' } },
      })),
    });
    expect((many as Error).name).toBe('ValidationException');
    expect(await get(table, 'p')).toBeUndefined();
    expect(await get(table, 'm0')).toBeUndefined();
  });

  it('serializes with concurrent transactions and reads: versions gap-free, no lost update, no half-seen commit', async () => {
    const table = await newTable();
    await client.send(new PutCommand({ TableName: table, Item: { pk: 'head', sk: '-', version: 0 } }));
    const writers = 12;
    const commitsEach = 4;

    // Each commit claims version head+1: the version row and the head move together or not at all.
    const commit = async (writer: number) => {
      for (let done = 0; done < commitsEach; ) {
        const head = (await get(table, 'head'))?.version as number;
        const next = head + 1;
        try {
          await client.send(
            new TransactWriteCommand({
              TransactItems: [
                {
                  Put: {
                    TableName: table,
                    Item: { pk: 'version', sk: String(next).padStart(4, '0'), writer },
                    ConditionExpression: 'attribute_not_exists(pk)',
                  },
                },
                {
                  Update: {
                    TableName: table,
                    Key: { pk: 'head', sk: '-' },
                    UpdateExpression: 'SET version = :next',
                    ConditionExpression: 'version = :head',
                    ExpressionAttributeValues: { ':head': head, ':next': next },
                  },
                },
              ],
            }),
          );
          done += 1;
        } catch (err) {
          if (!(err instanceof TransactionCanceledException)) throw err;
        }
      }
    };
    const torn: number[] = [];
    let reading = true;
    const reader = async () => {
      while (reading) {
        const head = (await get(table, 'head'))?.version as number;
        if (head > 0 && (await get(table, 'version', String(head).padStart(4, '0'))) === undefined) {
          torn.push(head);
        }
      }
    };
    const readers = [reader(), reader()];
    await Promise.all(Array.from({ length: writers }, (_, w) => commit(w)));
    reading = false;
    await Promise.all(readers);

    const total = writers * commitsEach;
    expect((await get(table, 'head'))?.version).toBe(total);
    const versions = await client.send(
      new TransactGetCommand({
        TransactItems: Array.from({ length: total }, (_, i) => ({
          Get: { TableName: table, Key: { pk: 'version', sk: String(i + 1).padStart(4, '0') } },
        })),
      }),
    );
    const rows = (versions.Responses ?? []).map((r) => r.Item);
    expect(rows.every((row) => row !== undefined)).toBe(true);
    const perWriter = new Map<number, number>();
    for (const row of rows) perWriter.set(row?.writer, (perWriter.get(row?.writer) ?? 0) + 1);
    expect([...perWriter.values()]).toEqual(Array.from({ length: writers }, () => commitsEach));
    expect(torn).toEqual([]);
  }, 60_000);
});

describe('TransactGetItems on the local DynamoDB', () => {
  it('answers in the order asked, with an empty entry for a missing item', async () => {
    const table = await newTable();
    await client.send(new PutCommand({ TableName: table, Item: { pk: 'one', sk: '-', n: 1 } }));
    const answer = await client.send(
      new TransactGetCommand({
        TransactItems: [
          { Get: { TableName: table, Key: { pk: 'missing', sk: '-' } } },
          { Get: { TableName: table, Key: { pk: 'one', sk: '-' }, ProjectionExpression: 'n' } },
        ],
      }),
    );
    expect(answer.Responses).toEqual([{}, { Item: { n: 1 } }]);
  });
});
