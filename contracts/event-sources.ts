/**
 * How each queue feeds its function, stated once for the CDK app (lib/constructs) and the local
 * stack (local/sandbox.ts), so that the local event-source mappings run as the deployed ones.
 */

/** Messages per invocation of each SQS event-source mapping. */
export const EVENT_SOURCE_BATCH_SIZE = Object.freeze({
  ingest: 10,
  /** One: a slow CompleteMultipartUpload never holds back or times out another. */
  completion: 1,
  replicate: 10,
});

/**
 * A queue's visibility timeout for a consumer function's timeout: six times it, Lambda's advice for
 * an SQS event source ("Configuring an Amazon SQS queue to use with Lambda"), so that a batch
 * whose invocation was throttled can still be retried before its messages come back.
 */
export function visibilityTimeoutFor(functionTimeoutSeconds: number): number {
  return functionTimeoutSeconds * 6;
}
