/**
 * Replicate fed by the local stack's FIFO queue (fauxqs behind its gate) through the local
 * event-source mapping: paths (message groups) go on side by side; a failed copy returns the rest
 * of its own path only, which comes back after the visibility timeout and is then applied in order.
 */
import { CreateQueueCommand, GetQueueAttributesCommand, SendMessageBatchCommand } from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { SqsRelease } from '../../functions/adapters/sqs-release.js';
import { SqsEventSourceMapping } from '../../local/event-source-mapping.ts';
import { lambdaContext } from '../support/api-events.js';
import { useLocalSqs } from '../support/local-sqs.ts';
import { messageOf, replicateWorld, version } from '../support/replicate-world.js';
import { waitFor } from '../support/wait.js';

const REGION = 'us-east-1';
const localSqs = useLocalSqs(REGION);

describe('replicate through the local FIFO queue', () => {
  it('a failed path is retried in order after the visibility timeout while the other path is applied at once', async () => {
    const created = await localSqs.client.send(
      new CreateQueueCommand({
        QueueName: 'replicate-batch.fifo',
        Attributes: { FifoQueue: 'true', VisibilityTimeout: '2' },
      }),
    );
    const url = created.QueueUrl as string;
    let failuresLeft = 1;
    const applied: { at: number; copy: string }[] = [];
    const world = replicateWorld({
      copy: async (m) => {
        if (m.path === 'a.jpg' && m.version === 1 && failuresLeft-- > 0) throw new Error('target busy');
        applied.push({ at: Date.now(), copy: `${m.path} ${m.version}` });
      },
    });
    const entries = [
      ['a.jpg', 1],
      ['b.jpg', 1],
      ['a.jpg', 2],
      ['b.jpg', 2],
    ] as const;
    await localSqs.client.send(
      new SendMessageBatchCommand({
        QueueUrl: url,
        Entries: entries.map(([path, n], i) => ({
          Id: String(i),
          MessageBody: JSON.stringify(messageOf(version(path, n))),
          MessageGroupId: path,
          MessageDeduplicationId: `${path}-${n}`,
        })),
      }),
    );
    const mapping = new SqsEventSourceMapping({
      sqs: localSqs.client,
      queue: {
        name: 'replicate-batch.fifo',
        url,
        arn: `arn:aws:sqs:${REGION}:000000000000:replicate-batch.fifo`,
      },
      fn: { name: 'replicate-alpha', invoke: (event) => world.handler(event as never, lambdaContext()) },
      region: REGION,
      waitTimeSeconds: 1,
      onError: () => {},
    });
    const started = Date.now();
    mapping.start();
    try {
      await waitFor('every version applied', () => applied.length === 4, 20_000, 50);
    } finally {
      await mapping.stop();
    }
    const order = applied.map((a) => a.copy);
    // b.jpg went on while a.jpg waited out its visibility timeout; a.jpg then came back in order.
    expect(order).toEqual(['b.jpg 1', 'b.jpg 2', 'a.jpg 1', 'a.jpg 2']);
    expect((applied[1]?.at ?? 0) - started).toBeLessThan(1_500);
    // a.jpg v1 came back (with v2 when both were in the batch; how many a receive holds is SQS's choice).
    expect(mapping.stats.failedRecords).toBeGreaterThanOrEqual(1);
    expect(world.calls).toContain('recordTargetFailure a.jpg 1');
    const left = await localSqs.client.send(
      new GetQueueAttributesCommand({
        QueueUrl: url,
        AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
      }),
    );
    expect(left.Attributes).toMatchObject({
      ApproximateNumberOfMessages: '0',
      ApproximateNumberOfMessagesNotVisible: '0',
    });
  });

  it('a path stopped by the deadline is handed back at once and applied at the next poll, long before its visibility timeout', async () => {
    const created = await localSqs.client.send(
      new CreateQueueCommand({
        QueueName: 'replicate-deadline.fifo',
        Attributes: { FifoQueue: 'true', VisibilityTimeout: '120' },
      }),
    );
    const url = created.QueueUrl as string;
    let slowLeft = 1;
    const applied: string[] = [];
    const world = replicateWorld({
      // Each invocation has 3 s: it stops 2 s before its end, and gives copies in flight 0.2 s.
      deadline: { stopBeforeMs: 2_000, graceMs: 200 },
      copy: async (m, signal) => {
        if (m.path === 'slow.jpg' && m.version === 1 && slowLeft-- > 0) {
          await new Promise((resolve, reject) => {
            const timer = setTimeout(resolve, 30_000);
            signal?.addEventListener('abort', () => {
              clearTimeout(timer);
              reject(Object.assign(new Error('aborted'), { name: 'AbortError' }));
            });
          });
        }
        applied.push(`${m.path} ${m.version}`);
      },
      requeue: new SqsRelease(localSqs.client, url),
    });
    const entries = [
      ['slow.jpg', 1],
      ['fast.jpg', 1],
      ['slow.jpg', 2],
    ] as const;
    await localSqs.client.send(
      new SendMessageBatchCommand({
        QueueUrl: url,
        Entries: entries.map(([path, n], i) => ({
          Id: String(i),
          MessageBody: JSON.stringify(messageOf(version(path, n))),
          MessageGroupId: path,
          MessageDeduplicationId: `${path}-${n}`,
        })),
      }),
    );
    const mapping = new SqsEventSourceMapping({
      sqs: localSqs.client,
      queue: {
        name: 'replicate-deadline.fifo',
        url,
        arn: `arn:aws:sqs:${REGION}:000000000000:replicate-deadline.fifo`,
      },
      fn: {
        name: 'replicate-alpha',
        invoke: (event) => {
          const endsAt = Date.now() + 3_000;
          return world.handler(event as never, {
            ...lambdaContext(),
            getRemainingTimeInMillis: () => endsAt - Date.now(),
          });
        },
      },
      region: REGION,
      waitTimeSeconds: 1,
      onError: () => {},
    });
    const started = Date.now();
    mapping.start();
    try {
      await waitFor('every version applied', () => applied.length === 3, 30_000, 50);
    } finally {
      await mapping.stop();
    }
    // fast.jpg was not held back by slow.jpg; slow.jpg came back in order, well inside the
    // queue's 120 s visibility timeout: it was handed back, not left to time out.
    expect(applied).toEqual(['fast.jpg 1', 'slow.jpg 1', 'slow.jpg 2']);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(world.released.length).toBeGreaterThanOrEqual(1);
    expect(world.metrics.total('ReplicationsDeferred')).toBeGreaterThanOrEqual(1);
    expect(world.calls.filter((c) => c.startsWith('recordTargetFailure'))).toEqual([]);
    const left = await localSqs.client.send(
      new GetQueueAttributesCommand({
        QueueUrl: url,
        AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
      }),
    );
    expect(left.Attributes).toMatchObject({
      ApproximateNumberOfMessages: '0',
      ApproximateNumberOfMessagesNotVisible: '0',
    });
  });
});
