import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import {
  type VerificationPointer,
  type VerificationQueue,
  verificationMessageSchema,
} from '../core/verification.js';

/**
 * Continuations of long verifications, on the ingest queue itself (a standard queue): a new
 * message per invocation, so the receive count never climbs towards the dead-letter queue however
 * many invocations a 5 TiB object takes (docs/scale.md).
 */
export class SqsVerificationQueue implements VerificationQueue {
  constructor(
    private readonly sqs: SQSClient,
    private readonly queueUrl: string,
  ) {}

  async continueVerification(pointer: VerificationPointer): Promise<void> {
    await this.sqs.send(
      new SendMessageCommand({
        QueueUrl: this.queueUrl,
        MessageBody: JSON.stringify(verificationMessageSchema.parse({ verifyBlob: pointer })),
      }),
    );
  }
}
