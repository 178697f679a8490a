/**
 * The local event-source mapping (local/event-source-mapping.ts) against the local SQS, where it
 * must do what Lambda's SQS event source does: which handler answers delete a batch, which leave
 * it for redelivery (local/README.md, "Lambda SQS event source").
 */
import { CreateQueueCommand, GetQueueAttributesCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import type { SQSEvent } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { SqsEventSourceMapping } from '../../local/event-source-mapping.ts';
import { useLocalSqs } from '../support/local-sqs.ts';
import { waitFor } from '../support/wait.js';

const REGION = 'us-east-1';
const localSqs = useLocalSqs(REGION);

async function standardQueue(name: string, visibilityTimeout: number) {
  const created = await localSqs.client.send(
    new CreateQueueCommand({ QueueName: name, Attributes: { VisibilityTimeout: String(visibilityTimeout) } }),
  );
  const url = created.QueueUrl as string;
  const arn = (
    await localSqs.client.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }))
  ).Attributes?.QueueArn as string;
  return { name, url, arn };
}

describe('the local SQS event source', () => {
  it.each([
    ['a string', 'ok'],
    ['an array', []],
    ['a number', 1],
  ])('a handler answer that is %s fails the whole batch: the message comes back', async (_, answer) => {
    const queue = await standardQueue(`non-object-${typeof answer}-${Array.isArray(answer)}`, 1);
    await localSqs.client.send(new SendMessageCommand({ QueueUrl: queue.url, MessageBody: 'm' }));
    const receiveCounts: string[] = [];
    const mapping = new SqsEventSourceMapping({
      sqs: localSqs.client,
      queue,
      region: REGION,
      waitTimeSeconds: 1,
      onError: () => {},
      fn: {
        name: 'answers-non-object',
        invoke: async (event) => {
          receiveCounts.push(...(event as SQSEvent).Records.map((r) => r.attributes.ApproximateReceiveCount));
          return answer;
        },
      },
    });
    mapping.start();
    try {
      // Deleted after the first invocation, it would never be received a second time.
      await waitFor('the message received again', () => receiveCounts.length >= 2, 8_000);
    } finally {
      await mapping.stop();
    }
    expect(receiveCounts.slice(0, 2)).toEqual(['1', '2']);
    expect(mapping.stats.failedRecords).toBeGreaterThanOrEqual(1);
  });
});
