/** Typed SQS events as Lambda delivers them, from a standard or a FIFO queue (one record per message). */
import { createHash } from 'node:crypto';
import type { SQSEvent, SQSRecord } from 'aws-lambda';

const QUEUE_ARN = 'arn:aws:sqs:us-east-1:123456789012:replicate-alpha.fifo';
const STANDARD_QUEUE_ARN = 'arn:aws:sqs:us-east-1:123456789012:mirror-ingest';

let sequence = 0;

/** One record of a standard queue (the ingest's): no group, no sequence number. */
export function standardRecord(
  body: unknown,
  options: { messageId?: string; receiveCount?: number; queueArn?: string } = {},
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
    },
    messageAttributes: {},
    md5OfBody: createHash('md5').update(text).digest('hex'),
    eventSource: 'aws:sqs',
    eventSourceARN: options.queueArn ?? STANDARD_QUEUE_ARN,
    awsRegion: 'us-east-1',
  };
}

/** One FIFO record: `groupId` is the message group (a path, for the replication queues). */
export function fifoRecord(
  body: unknown,
  groupId: string,
  options: { messageId?: string; receiveCount?: number; dedupId?: string } = {},
): SQSRecord {
  const record = standardRecord(body, { ...options, queueArn: QUEUE_ARN });
  return {
    ...record,
    attributes: {
      ...record.attributes,
      SequenceNumber: String(18_000_000_000_000_000_000n + BigInt(sequence)),
      MessageGroupId: groupId,
      MessageDeduplicationId: options.dedupId ?? `dedup-${sequence}`,
    },
  };
}

export function sqsEvent(records: readonly SQSRecord[]): SQSEvent {
  return { Records: [...records] };
}
