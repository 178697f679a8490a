/**
 * Hands messages back to their queue at once: a visibility timeout of 0 makes a received message
 * deliverable again now instead of after the queue's visibility timeout. The replicate function
 * uses it for records it stopped before its deadline (not failed: nothing to wait out). The event
 * source mapping's consume grant includes sqs:ChangeMessageVisibility on the function's own queue.
 */
import { ChangeMessageVisibilityBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';

/** SQS's most entries per batch request. */
const BATCH = 10;

export class SqsRelease {
  constructor(
    private readonly sqs: SQSClient,
    private readonly queueUrl: string,
  ) {}

  /** Makes each received message visible again now; throws naming the handles SQS refused. */
  async release(receiptHandles: readonly string[]): Promise<void> {
    const refused: string[] = [];
    for (let i = 0; i < receiptHandles.length; i += BATCH) {
      const handles = receiptHandles.slice(i, i + BATCH);
      const out = await this.sqs.send(
        new ChangeMessageVisibilityBatchCommand({
          QueueUrl: this.queueUrl,
          Entries: handles.map((ReceiptHandle, n) => ({
            Id: String(n),
            ReceiptHandle,
            VisibilityTimeout: 0,
          })),
        }),
      );
      for (const failed of out.Failed ?? [])
        refused.push(`${failed.Id}: ${failed.Code} ${failed.Message ?? ''}`);
    }
    if (refused.length > 0)
      throw new Error(`SQS kept ${refused.length} message(s) hidden: ${refused.join('; ')}`);
  }
}
