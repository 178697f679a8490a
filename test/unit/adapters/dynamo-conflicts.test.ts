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
import { DynamoLedger } from '../../../functions/adapters/dynamo-ledger.js';

interface Answer {
  readonly status: number;
  readonly body: object;
}

/** A client whose requests get the answers in turn (the last one again once they run out). */
function clientAnswering(answers: readonly Answer[]) {
  const targets: string[] = [];
  const client = new DynamoDBClient({
    region: 'us-east-1',
    endpoint: 'http://127.0.0.1:9',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    requestHandler: {
      async handle(request: { headers: Record<string, string> }) {
        targets.push(String(request.headers['x-amz-target']).split('.').at(-1) ?? '');
        const answer = answers[Math.min(targets.length - 1, answers.length - 1)] as Answer;
        const body = new TextEncoder().encode(JSON.stringify(answer.body));
        return {
          // An HttpResponse by shape (the SDK checks fields, not the class).
          response: {
            statusCode: answer.status,
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
