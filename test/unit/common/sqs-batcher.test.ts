/** SqsBatcher: SQS's per-request limits (10 entries, 256 KiB), per queue. */
import { describe, expect, it } from 'vitest';
import { SQS_BATCH_MAX_BYTES, SqsBatcher } from '../../../common/sqs-batcher.js';

describe('SqsBatcher', () => {
  it('never puts more than 256 KiB in one request, nor two queues in one', async () => {
    const requests: { queueUrl: string; sizes: number[] }[] = [];
    const batcher = new SqsBatcher<{ body: string }>(
      async (queueUrl, entries) => {
        requests.push({ queueUrl, sizes: entries.map((e) => e.body.length) });
        return { Successful: entries.map((e) => ({ Id: e.Id })) };
      },
      { bytesOf: (e) => e.body.length },
    );
    const big = 'x'.repeat(100 * 1024);
    await Promise.all([
      ...[big, big, big, 'small'].map((body) => batcher.add('q1', { body })),
      batcher.add('q2', { body: 'other' }),
    ]);
    expect(requests.filter((r) => r.queueUrl === 'q1').map((r) => r.sizes)).toEqual([
      [big.length, big.length],
      [big.length, 5],
    ]);
    expect(requests.filter((r) => r.queueUrl === 'q2').map((r) => r.sizes)).toEqual([[5]]);
    for (const r of requests)
      expect(r.sizes.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(SQS_BATCH_MAX_BYTES);
  });
});
