/**
 * The one BatchGetItem loop the functions' ledger and the agent share: keys DynamoDB leaves
 * unprocessed are asked again, up to `tries` requests, and what is still left is handed back.
 */
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { describe, expect, it } from 'vitest';
import { batchGetItems } from '../../../common/dynamo-batch-get.ts';

type Key = { pk: string; sk: string };
const TABLE = 'ledger';
const keys: Key[] = [0, 1, 2, 3].map((i) => ({ pk: `P#${i}`, sk: 'S' }));

/** A document client that answers one key per request and leaves the rest unprocessed. */
function oneKeyPerRequest() {
  const requests: { Keys: Key[]; ConsistentRead?: boolean; ProjectionExpression?: string }[] = [];
  const doc = {
    send: async (command: { input: { RequestItems: Record<string, (typeof requests)[number]> } }) => {
      const request = command.input.RequestItems[TABLE];
      if (!request) throw new Error('no request for the table');
      requests.push(request);
      const [first, ...rest] = request.Keys;
      return {
        Responses: { [TABLE]: first ? [{ ...first, found: true }] : [] },
        UnprocessedKeys: rest.length > 0 ? { [TABLE]: { Keys: rest } } : {},
      };
    },
  } as unknown as DynamoDBDocumentClient;
  return { doc, requests };
}

describe('batchGetItems', () => {
  it('without a limit asks again until every key is answered, strongly consistent each time', async () => {
    const { doc, requests } = oneKeyPerRequest();
    const { found, unprocessed } = await batchGetItems(doc, TABLE, keys, { backoffUnitMs: 1 });
    expect(found.map((i) => i.pk)).toEqual(['P#0', 'P#1', 'P#2', 'P#3']);
    expect(unprocessed).toEqual([]);
    expect(requests.map((r) => r.Keys.length)).toEqual([4, 3, 2, 1]);
    expect(requests.every((r) => r.ConsistentRead === true && r.ProjectionExpression === undefined)).toBe(
      true,
    );
  });

  it('stops after `tries` requests and hands back the keys still unprocessed', async () => {
    const { doc, requests } = oneKeyPerRequest();
    const { found, unprocessed } = await batchGetItems(doc, TABLE, keys, {
      tries: 2,
      backoffUnitMs: 1,
      projection: 'pk, appliedVersion',
    });
    expect(requests).toHaveLength(2);
    expect(found.map((i) => i.pk)).toEqual(['P#0', 'P#1']);
    expect(unprocessed).toEqual([keys[2], keys[3]]);
    expect(requests.every((r) => r.ProjectionExpression === 'pk, appliedVersion')).toBe(true);
  });
});
