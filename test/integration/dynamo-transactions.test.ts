/**
 * The local DynamoDB's transactions (local/dynamo-transactions.ts behind the gate), driven with
 * the real SDK: all or nothing, every condition checked, cancellation reasons, idempotency
 * tokens, and serializability against concurrent transactions and plain reads.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import {
  ConditionalCheckFailedException,
  CreateTableCommand,
  DeleteTableCommand,
  DynamoDBClient,
  IdempotentParameterMismatchException,
  TransactionCanceledException,
  waitUntilTableExists,
  waitUntilTableNotExists,
} from '@aws-sdk/client-dynamodb';
import {
  DeleteCommand,
  DynamoDBDocumentClient,
  GetCommand,
  NumberValue,
  PutCommand,
  TransactGetCommand,
  TransactWriteCommand,
  type TransactWriteCommandInput,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { SignatureV4 } from '@smithy/signature-v4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SigningSha256 } from '../../common/sha256-node.ts';
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

const WAIT = { maxWaitTime: 10, minDelay: 0.02, maxDelay: 0.1 };

/** A table keyed by `pk` (string) and `sk` (string), or by the attributes named. */
async function newTable(
  key: readonly { name: string; type: 'S' | 'N' }[] = [
    { name: 'pk', type: 'S' },
    { name: 'sk', type: 'S' },
  ],
  name = `tx-${++tableCount}`,
): Promise<string> {
  await client.send(
    new CreateTableCommand({
      TableName: name,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: key.map((k) => ({ AttributeName: k.name, AttributeType: k.type })),
      KeySchema: key.map((k, i) => ({ AttributeName: k.name, KeyType: i === 0 ? 'HASH' : 'RANGE' })),
    }),
  );
  await waitUntilTableExists({ client, ...WAIT }, { TableName: name });
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

  it('refuses a client token sent again with the same actions but other parameters', async () => {
    const table = await newTable();
    const put: TransactWriteCommandInput = {
      ClientRequestToken: 'token-params',
      TransactItems: [{ Put: { TableName: table, Item: { pk: 'p', sk: '-' } } }],
    };
    await client.send(new TransactWriteCommand(put));
    const err = await refusal({ ...put, ReturnConsumedCapacity: 'TOTAL' });
    expect(err).toBeInstanceOf(IdempotentParameterMismatchException);
    await client.send(new TransactWriteCommand(put));
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

  it('refuses an Update without an UpdateExpression, writing nothing', async () => {
    const table = await newTable();
    // The SDK sends it as given; DynamoDB refuses it (the member is required), dynalite's
    // UpdateItem would create the item with its key alone.
    const err = await refusal({
      TransactItems: [
        { Put: { TableName: table, Item: { pk: 'other', sk: '-' } } },
        { Update: { TableName: table, Key: { pk: 'u', sk: '-' } } as never },
      ],
    });
    expect((err as Error).name).toBe('ValidationException');
    expect((err as Error).message).toMatch(/updateExpression/);
    expect(await get(table, 'u')).toBeUndefined();
    expect(await get(table, 'other')).toBeUndefined();
  });

  it('refuses two actions on one item whose number key is spelled two ways', async () => {
    const table = await newTable([{ name: 'id', type: 'N' }]);
    const err = await refusal({
      TransactItems: [
        { Put: { TableName: table, Item: { id: 1, v: 'put' } } },
        // DynamoDB normalizes numbers: 1.0 is the key 1, so this is the same item.
        {
          Update: {
            TableName: table,
            Key: { id: NumberValue.from('1.0') },
            UpdateExpression: 'SET w = :w',
            ExpressionAttributeValues: { ':w': 'update' },
          },
        },
      ],
    });
    expect((err as Error).name).toBe('ValidationException');
    expect((err as Error).message).toMatch(/multiple operations on one item/);
    expect((await client.send(new GetCommand({ TableName: table, Key: { id: 1 } }))).Item).toBeUndefined();
  });

  it('reads the key of a table deleted and created again under the same name with another key', async () => {
    const name = `tx-recreated-${++tableCount}`;
    await newTable([{ name: 'pk', type: 'S' }], name);
    await client.send(
      new TransactWriteCommand({ TransactItems: [{ Put: { TableName: name, Item: { pk: 'a' } } }] }),
    );
    await client.send(new DeleteTableCommand({ TableName: name }));
    await waitUntilTableNotExists({ client, ...WAIT }, { TableName: name });
    await newTable(
      [
        { name: 'pk', type: 'S' },
        { name: 'sk', type: 'S' },
      ],
      name,
    );
    await client.send(
      new TransactWriteCommand({
        TransactItems: [
          {
            Put: {
              TableName: name,
              Item: { pk: 'a', sk: '1' },
              ConditionExpression: 'attribute_not_exists(pk)',
            },
          },
          { Put: { TableName: name, Item: { pk: 'a', sk: '2' } } },
        ],
      }),
    );
    expect(await get(name, 'a', '1')).toEqual({ pk: 'a', sk: '1' });
    expect(await get(name, 'a', '2')).toEqual({ pk: 'a', sk: '2' });
  });

  it('refuses a transaction whose items add up to more than 4 MB, writing nothing', async () => {
    const table = await newTable();
    const big = 'x'.repeat(350 * 1024);
    const err = await refusal({
      // 12 × 350 KB: each item is within 400 KB, together they are over 4 MB.
      TransactItems: Array.from({ length: 12 }, (_, i) => ({
        Put: { TableName: table, Item: { pk: `big${i}`, sk: '-', big } },
      })),
    });
    expect((err as Error).name).toBe('ValidationException');
    expect(await get(table, 'big0')).toBeUndefined();
    // 11 of them (3.76 MiB) are taken.
    await client.send(
      new TransactWriteCommand({
        TransactItems: Array.from({ length: 11 }, (_, i) => ({
          Put: { TableName: table, Item: { pk: `big${i}`, sk: '-', big } },
        })),
      }),
    );
    expect((await get(table, 'big10'))?.big).toBe(big);
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

describe('Single conditional writes on the local DynamoDB', () => {
  it('carry the item as it is in ConditionalCheckFailedException when ALL_OLD asks for it', async () => {
    const table = await newTable();
    const item = { pk: 'held', sk: '-', owner: 'first', n: 1 };
    await client.send(new PutCommand({ TableName: table, Item: item }));
    const failed = (promise: Promise<unknown>) =>
      promise.then(
        () => expect.unreachable('the write was expected to be refused'),
        (err: unknown) => err as ConditionalCheckFailedException,
      );
    const put = await failed(
      client.send(
        new PutCommand({
          TableName: table,
          Item: { pk: 'held', sk: '-', owner: 'second' },
          ConditionExpression: 'attribute_not_exists(pk)',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      ),
    );
    expect(put).toBeInstanceOf(ConditionalCheckFailedException);
    expect(put.Item).toEqual({ pk: { S: 'held' }, sk: { S: '-' }, owner: { S: 'first' }, n: { N: '1' } });
    const update = await failed(
      client.send(
        new UpdateCommand({
          TableName: table,
          Key: { pk: 'held', sk: '-' },
          UpdateExpression: 'SET n = :two',
          ConditionExpression: 'n = :zero',
          ExpressionAttributeValues: { ':two': 2, ':zero': 0 },
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      ),
    );
    expect(update.Item).toEqual(put.Item);
    // A delete by the wrong owner, asking for the item or not.
    const deleteAsSecond = (returnOld: boolean) =>
      failed(
        client.send(
          new DeleteCommand({
            TableName: table,
            Key: { pk: 'held', sk: '-' },
            ConditionExpression: '#owner = :me',
            ExpressionAttributeNames: { '#owner': 'owner' },
            ExpressionAttributeValues: { ':me': 'second' },
            ...(returnOld ? { ReturnValuesOnConditionCheckFailure: 'ALL_OLD' as const } : {}),
          }),
        ),
      );
    const del = await deleteAsSecond(true);
    expect(del).toBeInstanceOf(ConditionalCheckFailedException);
    expect(del.Item).toEqual(put.Item);
    // Without ALL_OLD, or on a missing item, there is none.
    const plain = await deleteAsSecond(false);
    expect(plain).toBeInstanceOf(ConditionalCheckFailedException);
    expect(plain.Item).toBeUndefined();
    const missing = await failed(
      client.send(
        new UpdateCommand({
          TableName: table,
          Key: { pk: 'nobody', sk: '-' },
          UpdateExpression: 'SET n = :two',
          ConditionExpression: 'attribute_exists(pk)',
          ExpressionAttributeValues: { ':two': 2 },
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      ),
    );
    expect(missing).toBeInstanceOf(ConditionalCheckFailedException);
    expect(missing.Item).toBeUndefined();
    expect(await get(table, 'held')).toEqual(item);
    expect(await get(table, 'nobody')).toBeUndefined();
  });

  it('refuse a ReturnValuesOnConditionCheckFailure other than ALL_OLD or NONE, writing nothing', async () => {
    const table = await newTable();
    const bogus = { ReturnValuesOnConditionCheckFailure: 'BOGUS' as 'NONE' };
    const writes = [
      new PutCommand({ TableName: table, Item: { pk: 'put', sk: '-' }, ...bogus }),
      new UpdateCommand({
        TableName: table,
        Key: { pk: 'update', sk: '-' },
        UpdateExpression: 'SET n = :one',
        ExpressionAttributeValues: { ':one': 1 },
        ...bogus,
      }),
      new DeleteCommand({ TableName: table, Key: { pk: 'held', sk: '-' }, ...bogus }),
    ];
    await client.send(new PutCommand({ TableName: table, Item: { pk: 'held', sk: '-' } }));
    for (const write of writes) {
      const err = await client.send(write as PutCommand).then(
        () => expect.unreachable(`${write.constructor.name} was expected to be refused`),
        (e: unknown) => e as Error,
      );
      expect(err.name, write.constructor.name).toBe('ValidationException');
      expect(err.message).toBe(
        "1 validation error detected: Value 'BOGUS' at 'returnValuesOnConditionCheckFailure' failed to satisfy constraint: Member must satisfy enum value set: [ALL_OLD, NONE]",
      );
    }
    expect(await get(table, 'put')).toBeUndefined();
    expect(await get(table, 'update')).toBeUndefined();
    expect(await get(table, 'held')).toEqual({ pk: 'held', sk: '-' });
    // NONE, the default, is taken.
    await client.send(
      new PutCommand({
        TableName: table,
        Item: { pk: 'put', sk: '-' },
        ReturnValuesOnConditionCheckFailure: 'NONE',
      }),
    );
    expect(await get(table, 'put')).toEqual({ pk: 'put', sk: '-' });
  });

  it('sends that error with the CRC32 of its own body, which boto3 and the CLI check', async () => {
    const table = await newTable();
    await client.send(new PutCommand({ TableName: table, Item: { pk: 'held', sk: '-' } }));
    const url = new URL(dynamo.endpoint);
    const body = JSON.stringify({
      TableName: table,
      Item: { pk: { S: 'held' }, sk: { S: '-' } },
      ConditionExpression: 'attribute_not_exists(pk)',
      ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
    });
    const signed = await new SignatureV4({
      service: 'dynamodb',
      region: 'us-east-1',
      credentials: { ...LOCAL_CREDENTIALS },
      sha256: SigningSha256,
    }).sign({
      method: 'POST',
      protocol: 'http:',
      hostname: url.hostname,
      path: '/',
      headers: {
        host: url.host,
        'content-type': 'application/x-amz-json-1.0',
        'x-amz-target': 'DynamoDB_20120810.PutItem',
      },
      body,
    });
    const { host: _, ...headers } = signed.headers;
    const answer = await fetch(dynamo.endpoint, { method: 'POST', headers, body });
    const bytes = Buffer.from(await answer.arrayBuffer());
    expect(answer.status).toBe(400);
    expect(JSON.parse(bytes.toString('utf8')).Item).toEqual({ pk: { S: 'held' }, sk: { S: '-' } });
    expect(answer.headers.get('x-amz-crc32')).toBe(String(crc32(bytes)));
  });
});
