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
