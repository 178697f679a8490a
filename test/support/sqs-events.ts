/** Typed SQS events as Lambda delivers them from a FIFO queue (one record per message). */
import type { SQSEvent, SQSRecord } from 'aws-lambda';

const QUEUE_ARN = 'arn:aws:sqs:us-east-1:123456789012:replicate-alpha.fifo';

let sequence = 0;

/** One FIFO record: `groupId` is the message group (a path, for the replication queues). */
export function fifoRecord(
  body: unknown,
  groupId: string,
  options: { messageId?: string; receiveCount?: number; dedupId?: string } = {},
): SQSRecord {
  sequence++;
  const now = String(Date.now());
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return {
    messageId: options.messageId ?? `msg-${sequence}`,
    receiptHandle: `receipt-${sequence}`,
    body: text,
    attributes: {
      ApproximateReceiveCount: String(options.receiveCount ?? 1),
      SentTimestamp: now,
      SenderId: '123456789012',
      ApproximateFirstReceiveTimestamp: now,
      SequenceNumber: String(18_000_000_000_000_000_000n + BigInt(sequence)),
      MessageGroupId: groupId,
      MessageDeduplicationId: options.dedupId ?? `dedup-${sequence}`,
    },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: QUEUE_ARN,
    awsRegion: 'us-east-1',
  };
}

export function sqsEvent(records: readonly SQSRecord[]): SQSEvent {
  return { Records: [...records] };
}
