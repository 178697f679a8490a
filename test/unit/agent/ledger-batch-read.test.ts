/**
 * The agent reads a message's version record and the blob record of the content it names in one
 * BatchGetItem (both rows are in the ledger's table), and the download that follows takes that
 * blob record instead of a GetItem of its own. Keys DynamoDB leaves unprocessed are asked again.
 * Requests are answered by a middleware before they leave the client (documents as
 * lib-dynamodb hands them over; BatchGetItem's Responses and UnprocessedKeys).
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { describe, expect, it } from 'vitest';
import { DynamoLedgerView } from '../../../agent/ledger.ts';
import { blobItemKey, versionItemKey } from '../../../contracts/ledger-keys.ts';

const SHA = 'ab'.repeat(32);
const TABLE = 'ledger';

const versionItem = {
  ...versionItemKey('a.txt', 3),
  path: 'a.txt',
  version: 3,
  sha256: SHA,
  size: 5,
  contentType: 'text/plain',
  committedAt: '2026-12-02T12:00:00.000Z',
  uploadId: 'u-1',
};
const blobItem = {
  ...blobItemKey(SHA),
  sha256: SHA,
  size: 5,
  verifiedAt: '2026-12-02T11:59:59.000Z',
  versionId: 'v-pinned',
};

type Key = { pk: string; sk: string };

function client(unprocessedFirst: number) {
  const dynamo = new DynamoDBClient({
    region: 'us-east-1',
    endpoint: 'http://127.0.0.1:9',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
  const sent: { command: string; input: Record<string, unknown> }[] = [];
  const items = [versionItem, blobItem];
  let unprocessed = unprocessedFirst;
  dynamo.middlewareStack.add(
    (_next, context) => async (args) => {
      const input = args.input as Record<string, unknown>;
      sent.push({ command: String(context.commandName), input });
      if (context.commandName === 'BatchGetItemCommand') {
        const request = (input.RequestItems as Record<string, { Keys: Key[]; ConsistentRead?: boolean }>)[
          TABLE
        ];
        const keys = request?.Keys ?? [];
        // The first `unprocessed` keys are left for the next request, as DynamoDB may under load.
        const left = keys.slice(0, unprocessed);
        const answered = keys.slice(unprocessed);
        unprocessed = 0;
        const output = {
          Responses: { [TABLE]: items.filter((i) => answered.some((k) => k.pk === i.pk && k.sk === i.sk)) },
          UnprocessedKeys: left.length > 0 ? { [TABLE]: { Keys: left, ConsistentRead: true } } : {},
        };
        return { output: { $metadata: {}, ...output }, response: {} } as never;
      }
      const key = input.Key as Key;
      const item = items.find((i) => i.pk === key.pk && i.sk === key.sk);
      return { output: { $metadata: {}, ...(item ? { Item: item } : {}) }, response: {} } as never;
    },
    { step: 'initialize', name: 'answer' },
  );
  return { view: new DynamoLedgerView(dynamo, TABLE, 'onprem-dc1'), sent };
}

describe('the agent reads a version with its blob record', () => {
  it('one strongly consistent BatchGetItem; the download then reads no blob record of its own', async () => {
    const { view, sent } = client(0);
    const record = await view.getVersionWithBlob('a.txt', 3, SHA);
    expect(record).toMatchObject({ path: 'a.txt', version: 3, sha256: SHA, size: 5 });
    expect(sent.map((s) => s.command)).toEqual(['BatchGetItemCommand']);
    expect(sent[0]?.input).toEqual({
      RequestItems: {
        [TABLE]: { Keys: [versionItemKey('a.txt', 3), blobItemKey(SHA)], ConsistentRead: true },
      },
    });
    expect(await view.getBlob(SHA)).toMatchObject({ versionId: 'v-pinned' });
    expect(sent).toHaveLength(1);
    // Taken once: a later download reads the record again.
    expect(await view.getBlob(SHA)).toMatchObject({ versionId: 'v-pinned' });
    expect(sent.map((s) => s.command)).toEqual(['BatchGetItemCommand', 'GetItemCommand']);
  });

  it('keys left unprocessed are asked again', async () => {
    const { view, sent } = client(1);
    expect(await view.getVersionWithBlob('a.txt', 3, SHA)).toMatchObject({ version: 3 });
    expect(sent.map((s) => s.command)).toEqual(['BatchGetItemCommand', 'BatchGetItemCommand']);
    const second = sent[1]?.input.RequestItems as Record<string, { Keys: Key[] }>;
    expect(second[TABLE]?.Keys).toEqual([versionItemKey('a.txt', 3)]);
    expect(await view.getBlob(SHA)).toMatchObject({ versionId: 'v-pinned' });
    expect(sent).toHaveLength(2);
  });

  it('a tombstone is one GetItem of its version, as before', async () => {
    const { view, sent } = client(0);
    await view.getVersionWithBlob('a.txt', 3, null);
    expect(sent.map((s) => s.command)).toEqual(['GetItemCommand']);
  });
});
