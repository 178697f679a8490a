/**
 * BatchGetItem of one table until DynamoDB has answered for every key, or `tries` ran out. Both the
 * functions' ledger and the agent read this way; they differ only in what happens to keys still
 * unprocessed (the ledger keeps asking, the agent reads them one by one), so that is left to them.
 * lib-dynamodb has no such loop: UnprocessedKeys is the caller's to resend.
 */
import { BatchGetCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { backoffMs, sleep } from './retry.ts';

type Item = Record<string, unknown>;

export interface BatchGetOptions {
  /** Only these attributes of each item (a ProjectionExpression). @default every attribute */
  readonly projection?: string | undefined;
  /** BatchGetItem requests at most, the first included. @default no limit */
  readonly tries?: number | undefined;
  /** The first backoff before asking again for unprocessed keys; it doubles, capped at 1 s, with jitter. */
  readonly backoffUnitMs: number;
}

export interface BatchGetResult {
  readonly found: Item[];
  /** Keys DynamoDB still left unprocessed when `tries` ran out (never any without a limit). */
  readonly unprocessed: Item[];
}

export async function batchGetItems(
  doc: DynamoDBDocumentClient,
  table: string,
  keys: readonly Item[],
  options: BatchGetOptions,
): Promise<BatchGetResult> {
  const found: Item[] = [];
  let pending: Item[] = [...keys];
  const tries = options.tries ?? Number.POSITIVE_INFINITY;
  for (let attempt = 0; attempt < tries && pending.length > 0; attempt++) {
    if (attempt > 0) await sleep(backoffMs(attempt, options.backoffUnitMs, 1000));
    const out = await doc.send(
      new BatchGetCommand({
        RequestItems: {
          [table]: {
            Keys: pending,
            ConsistentRead: true,
            ...(options.projection === undefined ? {} : { ProjectionExpression: options.projection }),
          },
        },
      }),
    );
    found.push(...(out.Responses?.[table] ?? []));
    pending = (out.UnprocessedKeys?.[table]?.Keys ?? []) as Item[];
  }
  return { found, unprocessed: pending };
}
