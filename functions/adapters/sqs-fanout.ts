import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { ReplicationMessage } from '../core/model.js';
import { deduplicationId, messageGroupId } from '../core/paths.js';
import type { FanoutQueue } from '../core/ports.js';

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
        MessageBody: JSON.stringify(message),
        MessageGroupId: messageGroupId(message.path),
        MessageDeduplicationId: deduplicationId(message.path, message.version, options.resend),
      }),
    );
  }
}
