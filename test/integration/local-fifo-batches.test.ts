/**
 * The local SQS (fauxqs behind its gate) hands out a FIFO queue's message groups as SQS does: a
 * receive returns as many of one group's messages as it can, in order, and messages that come back
 * (visibility timeout, or made visible again) come back in their order. A Lambda batch therefore
 * holds several messages of a group, and a handler that does not fail the rest of a group after a
 * failure breaks the order locally too, as it would on AWS.
 */
import {
  ChangeMessageVisibilityBatchCommand,
  CreateQueueCommand,
  GetQueueAttributesCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
} from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { SqsEventSourceMapping } from '../../local/event-source-mapping.ts';
import { useLocalSqs } from '../support/local-sqs.ts';
import { waitFor } from '../support/wait.js';

const REGION = 'us-east-1';
const localSqs = useLocalSqs(REGION);

async function fifoQueue(name: string, attributes: Record<string, string> = {}) {
  const created = await localSqs.client.send(
    new CreateQueueCommand({
      QueueName: `${name}.fifo`,
      Attributes: { FifoQueue: 'true', VisibilityTimeout: '30', ...attributes },
    }),
  );
  const url = created.QueueUrl as string;
  const arn = (
    await localSqs.client.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }))
  ).Attributes?.QueueArn as string;
  return { url, arn, ref: { name: `${name}.fifo`, url, arn } };
}

/** Sends `a1 b1 a2 a3` style bodies, each in the group its letter names. */
async function send(url: string, bodies: string[]) {
  await localSqs.client.send(
    new SendMessageBatchCommand({
      QueueUrl: url,
      Entries: bodies.map((body, i) => ({
        Id: String(i),
        MessageBody: body,
        MessageGroupId: body.slice(0, 1),
        MessageDeduplicationId: body,
      })),
    }),
  );
}

async function receive(url: string, visibility?: number): Promise<Message[]> {
  const out = await localSqs.client.send(
    new ReceiveMessageCommand({
      QueueUrl: url,
      MaxNumberOfMessages: 10,
      WaitTimeSeconds: 0,
      ...(visibility === undefined ? {} : { VisibilityTimeout: visibility }),
    }),
  );
  return out.Messages ?? [];
}

const bodies = (messages: Message[], group: string) =>
  messages.map((m) => m.Body as string).filter((b) => b.startsWith(group));

describe('local SQS FIFO receives', () => {
  it("a receive returns as many of a group's messages as it can, in order", async () => {
    const q = await fifoQueue('whole-groups');
    await send(q.url, ['a1', 'b1', 'a2', 'a3']);
    const got = await receive(q.url);
    expect(bodies(got, 'a')).toEqual(['a1', 'a2', 'a3']);
    expect(bodies(got, 'b')).toEqual(['b1']);
    // The group is in flight: nothing more of it until its messages are deleted or come back.
    expect(await receive(q.url)).toEqual([]);
  });

  it('messages of a group come back in their order, after the visibility timeout or made visible', async () => {
    const q = await fifoQueue('come-back');
    await send(q.url, ['a1', 'a2', 'a3']);
    expect(bodies(await receive(q.url, 1), 'a')).toEqual(['a1', 'a2', 'a3']);
    await new Promise((r) => setTimeout(r, 1_200));
    const again = await receive(q.url);
    expect(bodies(again, 'a')).toEqual(['a1', 'a2', 'a3']);
    await localSqs.client.send(
      new ChangeMessageVisibilityBatchCommand({
        QueueUrl: q.url,
        Entries: again.map((m, i) => ({
          Id: String(i),
          ReceiptHandle: m.ReceiptHandle,
          VisibilityTimeout: 0,
        })),
      }),
    );
    expect(bodies(await receive(q.url), 'a')).toEqual(['a1', 'a2', 'a3']);
  });

  it('through the event-source mapping, a batch holds a group whole: its poison head takes the rest it failed to the DLQ, as on AWS', async () => {
    const dlq = await fifoQueue('poison-dlq');
    const q = await fifoQueue('poison', {
      VisibilityTimeout: '1',
      RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlq.arn, maxReceiveCount: 2 }),
    });
    await send(q.url, ['a1', 'a2', 'b1']);
    const batches: string[][] = [];
    const applied: string[] = [];
    const mapping = new SqsEventSourceMapping({
      sqs: localSqs.client,
      queue: q.ref,
      region: REGION,
      waitTimeSeconds: 1,
      onError: () => {},
      // Powertools' FIFO rule: after a failure, the rest of that group is failed unprocessed.
      fn: {
        name: 'fifo-consumer',
        invoke: async (event) => {
          const records = (event as { Records: { messageId: string; body: string }[] }).Records;
          batches.push(records.map((r) => r.body));
          const failedGroups = new Set<string>();
          const batchItemFailures: { itemIdentifier: string }[] = [];
          for (const r of records) {
            const group = r.body.slice(0, 1);
            if (failedGroups.has(group) || r.body === 'a1') {
              failedGroups.add(group);
              batchItemFailures.push({ itemIdentifier: r.messageId });
            } else applied.push(r.body);
          }
          return { batchItemFailures };
        },
      },
    });
    mapping.start();
    try {
      await waitFor('a1 and a2 in the DLQ', async () => {
        const out = await localSqs.client.send(
          new GetQueueAttributesCommand({
            QueueUrl: dlq.url,
            AttributeNames: ['ApproximateNumberOfMessages'],
          }),
        );
        return out.Attributes?.ApproximateNumberOfMessages === '2';
      });
    } finally {
      await mapping.stop();
    }
    expect(batches[0]).toEqual(['a1', 'a2', 'b1']);
    // a2 was never applied: each receive counted for it as for a1, so both went to the DLQ.
    expect(applied).toEqual(['b1']);
    expect(bodies(await receive(dlq.url), 'a')).toEqual(['a1', 'a2']);
  });
});
