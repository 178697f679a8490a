import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { type ReplicationMessage, replicationMessageSchema } from '../../contracts/replication-message.js';
import type { FanoutQueue } from '../core/ports.js';
import { deduplicationId, messageGroupId } from '../core/shards.js';

/** Target FIFO queues: group = path (in order per path), dedup = path + version (a resend within 5 min is dropped). */
export class SqsFanout implements FanoutQueue {
  private readonly queues: ReadonlyMap<string, string>;

  constructor(
    private readonly sqs: SQSClient,
    targets: readonly { id: string; queueUrl: string }[],
  ) {
    this.queues = new Map(targets.map((t) => [t.id, t.queueUrl]));
  }

  async send(message: ReplicationMessage, options: { resend?: string } = {}): Promise<void> {
    const queueUrl = this.queues.get(message.targetId);
    if (!queueUrl) throw new Error(`no queue configured for target "${message.targetId}"`);
    await this.sqs.send(
      new SendMessageCommand({
        QueueUrl: queueUrl,
        // Built through the contract: exactly its fields, checked, in its order.
        MessageBody: escapeAstral(JSON.stringify(replicationMessageSchema.parse(message))),
        MessageGroupId: messageGroupId(message.path),
        MessageDeduplicationId: deduplicationId(message.path, message.version, options.resend),
      }),
    );
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
