import {
  SendMessageBatchCommand,
  type SendMessageBatchRequestEntry,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { SqsBatcher } from '../../common/sqs-batcher.js';
import { type ReplicationMessage, replicationMessageSchema } from '../../contracts/replication-message.js';
import type { FanoutQueue } from '../core/ports.js';
import { deduplicationId, messageGroupId } from '../core/shards.js';

/**
 * Target FIFO queues: group = path (in order per path), dedup = path + version (a resend within 5 min is dropped).
 *
 * Sends made close together (the records of an ingest batch, committed side by side) go to each
 * queue as one `SendMessageBatch` (common/sqs-batcher.ts): each send still resolves or rejects by its
 * own entry's outcome, so a record whose message SQS refused fails and is retried as before.
 */
export class SqsFanout implements FanoutQueue {
  private readonly queues: ReadonlyMap<string, string>;
  private readonly batcher: SqsBatcher<Omit<SendMessageBatchRequestEntry, 'Id'>>;

  constructor(sqs: SQSClient, targets: readonly { id: string; queueUrl: string }[]) {
    this.queues = new Map(targets.map((t) => [t.id, t.queueUrl]));
    this.batcher = new SqsBatcher(
      (queueUrl, entries) => sqs.send(new SendMessageBatchCommand({ QueueUrl: queueUrl, Entries: entries })),
      { bytesOf: (entry) => Buffer.byteLength(entry.MessageBody ?? '') },
    );
  }

  async send(message: ReplicationMessage, options: { resend?: string } = {}): Promise<void> {
    const queueUrl = this.queues.get(message.targetId);
    if (!queueUrl) throw new Error(`no queue configured for target "${message.targetId}"`);
    await this.batcher.add(queueUrl, {
      // Built through the contract: exactly its fields, checked, in its order.
      MessageBody: escapeAstral(JSON.stringify(replicationMessageSchema.parse(message))),
      MessageGroupId: messageGroupId(message.path),
      MessageDeduplicationId: deduplicationId(message.path, message.version, options.resend),
    });
  }
}

/**
 * Writes characters outside the Basic Multilingual Plane (emoji, some CJK) as JSON
 * \u escapes. The body parses back to the same string; SQS accepts these characters,
 * but some emulators (fauxqs 1.9) refuse them, so the wire form avoids them.
 */
export function escapeAstral(json: string): string {
  return json.replace(/[\u{10000}-\u{10FFFF}]/gu, (ch) =>
    [...ch.split('')].map((unit) => `\\u${unit.charCodeAt(0).toString(16).padStart(4, '0')}`).join(''),
  );
}
