import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { type CompletionQueue, completionMessageSchema } from '../core/completion.js';

/**
 * Multipart completions, from the API to the complete-multipart function through its own standard
 * queue: the API answers at once, and a redelivered message is harmless (core/completion.ts).
 */
export class SqsCompletionQueue implements CompletionQueue {
  constructor(
    private readonly sqs: SQSClient,
    private readonly queueUrl: string,
  ) {}

  async requestCompletion(uploadId: string): Promise<void> {
    await this.sqs.send(
      new SendMessageCommand({
        QueueUrl: this.queueUrl,
        MessageBody: JSON.stringify(completionMessageSchema.parse({ completeUpload: { uploadId } })),
      }),
    );
  }
}
