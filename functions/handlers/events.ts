/**
 * Schemas for the events the handlers accept, from AWS's documented shapes. The replication
 * message the target queues carry is a contract of its own: contracts/replication-message.ts.
 */
import { z } from 'zod';

/** S3 event notification (eventVersion 2.x) as delivered in an SQS message body. */
export const s3NotificationSchema = z.union([
  z.object({
    Records: z.array(
      z.object({
        eventName: z.string(),
        eventTime: z.string().optional(),
        s3: z.object({
          bucket: z.object({ name: z.string() }),
          object: z.object({
            key: z.string(),
            size: z.number().int().nonnegative().optional(),
            eTag: z.string().optional(),
            versionId: z.string().optional(),
          }),
        }),
      }),
    ),
  }),
  // Sent once when a notification is configured.
  z.object({ Event: z.literal('s3:TestEvent') }),
]);

/** S3 URL-encodes keys in notifications, with "+" for spaces. */
export function decodeS3Key(key: string): string {
  return decodeURIComponent(key.replace(/\+/g, ' '));
}
