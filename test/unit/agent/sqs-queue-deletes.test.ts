/**
 * The agent deletes the messages it handled close together in DeleteMessageBatch requests (ten at
 * most), each delete settling by its own entry. Requests are answered by a middleware before they
 * leave the client, with the shape of SQS's DeleteMessageBatchResult (Successful: Id; Failed: Id,
 * SenderFault, Code, Message). A refused delete only means the message comes back: the consumer
 * logs it and goes on, and the redelivery is skipped as a duplicate (applier tests).
 */
import {
  type DeleteMessageBatchCommandInput,
  type DeleteMessageBatchResult,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { SqsQueue } from '../../../agent/aws.ts';
import { Conditions } from '../../../agent/conditions.ts';
import { createMemoryLog } from '../../../agent/log.ts';
import { QueueConsumer } from '../../../agent/queue-consumer.ts';
import { SqsBatchEntryError } from '../../../common/sqs-batcher.ts';

const QUEUE = 'https://sqs.example/onprem-dc1.fifo';

function client(failHandle?: string) {
  const sqs = new SQSClient({
    region: 'us-east-1',
    endpoint: 'http://127.0.0.1:9',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
  const sent: { commandName: string; input: DeleteMessageBatchCommandInput }[] = [];
  sqs.middlewareStack.add(
    (_next, context) => async (args) => {
      const input = args.input as DeleteMessageBatchCommandInput;
      sent.push({ commandName: String(context.commandName), input });
      const entries = input.Entries ?? [];
      const output: DeleteMessageBatchResult = {
        Successful: entries.filter((e) => e.ReceiptHandle !== failHandle).map((e) => ({ Id: e.Id })),
        Failed: entries
          .filter((e) => e.ReceiptHandle === failHandle)
          .map((e) => ({
            Id: e.Id,
            SenderFault: true,
            Code: 'ReceiptHandleIsInvalid',
            Message: 'The input receipt handle is invalid.',
          })),
      };
      return { output: { $metadata: {}, ...output }, response: {} } as never;
    },
    { step: 'initialize', name: 'answer' },
  );
  return { sqs, sent };
}

describe('the agent deletes in batches', () => {
  it('12 deletes made together are 2 DeleteMessageBatch requests (10 and 2), each handle once', async () => {
    const { sqs, sent } = client();
    const queue = new SqsQueue(sqs, QUEUE);
    const handles = Array.from({ length: 12 }, (_, i) => `rh-${i}`);
    await Promise.all(handles.map((h) => queue.delete(h)));
    expect(sent.map((s) => s.commandName)).toEqual([
      'DeleteMessageBatchCommand',
      'DeleteMessageBatchCommand',
    ]);
    expect(sent.map((s) => s.input.Entries?.length)).toEqual([10, 2]);
    expect(sent.flatMap((s) => s.input.Entries ?? []).map((e) => e.ReceiptHandle)).toEqual(handles);
    expect(new Set(sent.map((s) => s.input.QueueUrl))).toEqual(new Set([QUEUE]));
  });

  it('a refused entry rejects its own delete only, with SQS code', async () => {
    const { sqs } = client('rh-1');
    const queue = new SqsQueue(sqs, QUEUE);
    const results = await Promise.allSettled(['rh-0', 'rh-1', 'rh-2'].map((h) => queue.delete(h)));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const error = (results[1] as PromiseRejectedResult).reason;
    expect(error).toBeInstanceOf(SqsBatchEntryError);
    expect(error).toMatchObject({ code: 'ReceiptHandleIsInvalid', senderFault: true });
  });

  it('the consumer logs a refused delete (the message comes back) and deletes the rest', async () => {
    const { sqs, sent } = client('rh-m2');
    const queue = new SqsQueue(sqs, QUEUE);
    const messages = [1, 2, 3].map((n) => ({
      messageId: `m${n}`,
      receiptHandle: `rh-m${n}`,
      body: JSON.stringify({
        targetId: 'onprem-dc1',
        path: `p${n}`,
        version: 1,
        sha256: 'a'.repeat(64),
        size: 1,
        contentType: 'text/plain',
        deleted: false,
        committedAt: '2026-12-02T12:00:00.000Z',
      }),
      receiveCount: 1,
      groupId: `g${n}`,
    }));
    let given = false;
    const port = {
      receive: async () => {
        if (given) {
          await new Promise((r) => setTimeout(r, 5));
          return [];
        }
        given = true;
        return messages;
      },
      delete: (handle: string) => queue.delete(handle),
      setVisibility: async () => undefined,
      backlog: async () => 0,
    };
    const log = createMemoryLog();
    const consumer = new QueueConsumer(
      {
        queue: port,
        targetId: 'onprem-dc1',
        concurrency: 4,
        visibilityTimeoutSeconds: 30,
        waitTimeSeconds: 0,
        conditions: new Conditions(log),
        log,
        work: async () => ({ kind: 'applied', bytes: 1, adopted: false }),
        heldVersion: () => 0,
        onGap: () => undefined,
        onRefused: () => undefined,
      },
      new AbortController().signal,
    );
    const running = consumer.run();
    const deadline = Date.now() + 3000;
    while (consumer.received < 3 || consumer.heldCount > 0) {
      if (Date.now() > deadline) throw new Error('timed out');
      await new Promise((r) => setTimeout(r, 5));
    }
    consumer.stopReceiving();
    await running;
    await consumer.drain();
    // The three deletes went in one request; the refused one was not retried, only logged.
    expect(sent).toHaveLength(1);
    expect(sent[0]?.input.Entries?.map((e) => e.ReceiptHandle)).toEqual(['rh-m1', 'rh-m2', 'rh-m3']);
    expect(JSON.stringify(log.entries)).toContain('will be redelivered and skipped');
  });
});
