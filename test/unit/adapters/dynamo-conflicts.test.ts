/**
 * DynamoDB refuses a request that meets a transaction in progress on one of its items: a plain
 * write with `TransactionConflictException`, a `TransactGetItems` with `TransactionCanceledException`
 * whose reasons say `TransactionConflict`. Nothing was written or read wrong, and the request may be
 * sent again; the SDK's retry strategy does not know these codes, so without the ledger's own
 * marking every such meeting surfaced as an error (an ingest record back on its queue for a
 * visibility timeout, a 500 from the API). The local DynamoDB runs transactions one at a time and
 * never answers either (docs/local-gates.md), so the answers come from a fake HTTP handler here:
 * the SDK's own deserializer and retry run on them.
 */
import { DynamoDBClient, TransactWriteItemsCommand } from '@aws-sdk/client-dynamodb';
import { describe, expect, it } from 'vitest';
import type { ReplicationMessage } from '../../../contracts/replication-message.js';
import { DynamoLedger } from '../../../functions/adapters/dynamo-ledger.js';
import { commitVersion } from '../../../functions/core/commit.js';

interface Answer {
  readonly status: number;
  readonly body: object;
}

/** A client whose requests get the answers in turn (the last one again once they run out). */
function clientAnswering(answers: readonly Answer[]) {
  return clientAnsweringWith((_, n) => answers[Math.min(n, answers.length - 1)] as Answer);
}

/** A client whose n-th request (from 0) gets `answer`'s answer, given the operation and the request's body. */
function clientAnsweringWith(answer: (request: { operation: string; body: unknown }, n: number) => Answer) {
  const targets: string[] = [];
  const client = new DynamoDBClient({
    region: 'us-east-1',
    endpoint: 'http://127.0.0.1:9',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    requestHandler: {
      async handle(request: { headers: Record<string, string>; body?: unknown }) {
        const operation = String(request.headers['x-amz-target']).split('.').at(-1) ?? '';
        targets.push(operation);
        const given = answer(
          { operation, body: request.body === undefined ? undefined : JSON.parse(String(request.body)) },
          targets.length - 1,
        );
        const body = new TextEncoder().encode(JSON.stringify(given.body));
        return {
          // An HttpResponse by shape (the SDK checks fields, not the class).
          response: {
            statusCode: given.status,
            headers: { 'content-type': 'application/x-amz-json-1.0' },
            body,
          },
        };
      },
    } as never,
  });
  return { client, targets };
}

const conflict: Answer = {
  status: 400,
  body: {
    __type: 'com.amazonaws.dynamodb.v20120810#TransactionConflictException',
    message: 'Transaction is ongoing for the item',
  },
};
const cancelledByConflict: Answer = {
  status: 400,
  body: {
    __type: 'com.amazonaws.dynamodb.v20120810#TransactionCanceledException',
    message:
      'Transaction cancelled, please refer cancellation reasons for specific reasons [None, TransactionConflict, None]',
    CancellationReasons: [
      { Code: 'None' },
      { Code: 'TransactionConflict', Message: 'Transaction is ongoing for the item' },
      { Code: 'None' },
    ],
  },
};

describe('requests that meet a transaction in progress are sent again', () => {
  it('readCommitState: a TransactGetItems cancelled by a conflict is retried, and reads what holds', async () => {
    const { client, targets } = clientAnswering([
      cancelledByConflict,
      {
        status: 200,
        body: {
          Responses: [
            {
              Item: {
                pk: { S: 'P#a.jpg' },
                sk: { S: 'HEAD' },
                path: { S: 'a.jpg' },
                version: { N: '3' },
                sha256: { S: 'cd'.repeat(32) },
                size: { N: '10' },
                contentType: { S: 'image/jpeg' },
                committedAt: { S: '2026-12-01T00:00:00.000Z' },
                uploadId: { S: 'upload-3' },
              },
            },
            { Item: { pk: { S: 'FEED#0' }, sk: { S: 'COUNTER' }, lastSeq: { N: '7' } } },
            {},
          ],
        },
      },
    ]);
    const state = await new DynamoLedger(client, 'ledger').readCommitState('a.jpg', 0);
    expect(state).toMatchObject({ version: 3, feedSeq: 7, uploadId: 'upload-3' });
    expect(targets).toEqual(['TransactGetItems', 'TransactGetItems']);
  });

  it('a plain write refused with TransactionConflictException is retried', async () => {
    const { client, targets } = clientAnswering([conflict, conflict, { status: 200, body: {} }]);
    await new DynamoLedger(client, 'ledger').removePendingUpload('ab'.repeat(32), 'upload-1');
    expect(targets).toEqual(['DeleteItem', 'DeleteItem', 'DeleteItem']);
  });

  it('gives up after the retry strategy’s attempts, with the conflict as the error', async () => {
    const { client, targets } = clientAnswering([conflict]);
    await expect(
      new DynamoLedger(client, 'ledger').removePendingUpload('ab'.repeat(32), 'upload-1'),
    ).rejects.toMatchObject({ name: 'TransactionConflictException' });
    expect(targets.length).toBe(await client.config.maxAttempts());
    expect(targets.length).toBeGreaterThan(1);
  });

  it('a TransactWriteItems cancelled by a failed condition is not sent again by the SDK (the commit decides)', async () => {
    const { client, targets } = clientAnswering([
      {
        status: 400,
        body: {
          __type: 'com.amazonaws.dynamodb.v20120810#TransactionCanceledException',
          message: 'Transaction cancelled [ConditionalCheckFailed]',
          CancellationReasons: [{ Code: 'ConditionalCheckFailed' }],
        },
      },
    ]);
    new DynamoLedger(client, 'ledger');
    await expect(
      client.send(
        new TransactWriteItemsCommand({
          TransactItems: [
            {
              ConditionCheck: {
                TableName: 'ledger',
                Key: { pk: { S: 'a' }, sk: { S: 'b' } },
                ConditionExpression: 'attribute_exists(pk)',
              },
            },
          ],
        }),
      ),
    ).rejects.toMatchObject({ name: 'TransactionCanceledException' });
    expect(targets).toEqual(['TransactWriteItems']);
  });
});

describe('a commit whose transaction meets another one on a folder of its path', () => {
  // On DynamoDB, every commit under a folder a pull target takes holds a ConditionCheck on that
  // folder's head (and a new file an Update of its rule row), so concurrent commits under one
  // folder cancel each other with TransactionConflict on those items (docs/scale.md, "Per folder").
  it('is retried and lands: a conflict on the folder check is not a path_conflict', async () => {
    const sent: ReplicationMessage[] = [];
    let writes = 0;
    const { client, targets } = clientAnsweringWith(({ operation, body }) => {
      if (operation === 'TransactGetItems') return { status: 200, body: { Responses: [{}, {}, {}] } };
      if (operation === 'UpdateItem') return { status: 200, body: {} };
      if (operation !== 'TransactWriteItems') throw new Error(`unexpected ${operation}`);
      if (writes++ > 0) return { status: 200, body: {} };
      const items = (body as { TransactItems: Record<string, unknown>[] }).TransactItems;
      const reasons = items.map((item) =>
        'ConditionCheck' in item
          ? { Code: 'TransactionConflict', Message: 'Transaction is ongoing for the item' }
          : { Code: 'None' },
      );
      expect(reasons.some((r) => r.Code === 'TransactionConflict')).toBe(true);
      return {
        status: 400,
        body: {
          __type: 'com.amazonaws.dynamodb.v20120810#TransactionCanceledException',
          message: 'Transaction cancelled, please refer cancellation reasons for specific reasons',
          CancellationReasons: reasons,
        },
      };
    });
    const version = await commitVersion(
      {
        ledger: new DynamoLedger(client, 'ledger'),
        fanout: { send: async (message) => void sent.push(message) },
        clock: { now: () => new Date('2026-12-01T00:00:00.000Z') },
        feedShards: 4,
        targets: [{ id: 'onprem', kind: 'pull' }],
      },
      {
        uploadId: 'upload-1',
        path: 'uploads/2026/a.jpg',
        sha256: 'ab'.repeat(32),
        size: 10,
        contentType: 'image/jpeg',
        deleted: false,
        folderRule: { folders: ['uploads', 'uploads/2026'] },
      },
    );
    expect(version).toMatchObject({ path: 'uploads/2026/a.jpg', version: 1, uploadId: 'upload-1' });
    expect(targets).toEqual([
      'TransactGetItems',
      'TransactWriteItems',
      'TransactGetItems',
      'TransactWriteItems',
      'UpdateItem',
    ]);
    expect(sent.map((m) => [m.targetId, m.version])).toEqual([['onprem', 1]]);
  });
});
