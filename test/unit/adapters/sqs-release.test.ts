/**
 * SqsRelease hands received messages back to their queue at once (visibility timeout 0), in
 * batches of SQS's 10, and says which it could not. Requests are answered by a middleware before
 * they leave the client, so what is asserted is what SQS would receive.
 */
import { type ChangeMessageVisibilityBatchCommandInput, SQSClient } from '@aws-sdk/client-sqs';
import { describe, expect, it } from 'vitest';
import { SqsRelease } from '../../../functions/adapters/sqs-release.js';

function client(failId?: string) {
  const sqs = new SQSClient({
    region: 'us-east-1',
    endpoint: 'http://127.0.0.1:9',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
  const sent: ChangeMessageVisibilityBatchCommandInput[] = [];
  sqs.middlewareStack.add(
    () => async (args) => {
      const input = args.input as ChangeMessageVisibilityBatchCommandInput;
      sent.push(input);
      const failed = (input.Entries ?? [])
        .filter((e) => e.ReceiptHandle === failId)
        .map((e) => ({ Id: e.Id, Code: 'ReceiptHandleIsInvalid', SenderFault: true, Message: 'expired' }));
      return { output: { $metadata: {}, Successful: [], Failed: failed }, response: {} } as never;
    },
    { step: 'initialize', name: 'answer' },
  );
  return { sqs, sent };
}

describe('SqsRelease', () => {
  it('sets each message visible now, ten per request', async () => {
    const { sqs, sent } = client();
    const handles = Array.from({ length: 12 }, (_, i) => `receipt-${i}`);
    await new SqsRelease(sqs, 'https://sqs.example/q.fifo').release(handles);
    expect(sent.map((s) => s.Entries?.length)).toEqual([10, 2]);
    expect(sent.flatMap((s) => s.Entries ?? []).map((e) => [e.ReceiptHandle, e.VisibilityTimeout])).toEqual(
      handles.map((h) => [h, 0]),
    );
    expect(new Set(sent.map((s) => s.QueueUrl))).toEqual(new Set(['https://sqs.example/q.fifo']));
  });

  it('a message SQS refuses is named in the error', async () => {
    const { sqs } = client('receipt-1');
    await expect(new SqsRelease(sqs, 'q').release(['receipt-0', 'receipt-1'])).rejects.toThrow(
      /kept 1 message\(s\) hidden: 1: ReceiptHandleIsInvalid expired/,
    );
  });
});
