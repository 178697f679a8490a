/**
 * Replica buckets abort a multipart upload left incomplete this many days after it began
 * (lib/constructs/replica-bucket.ts sets the lifecycle rule). A large copy stopped by an
 * invocation's deadline keeps its upload for the next delivery to continue
 * (functions/adapters/s3.ts); the rule bounds what an abandoned one costs.
 */
export const REPLICA_MULTIPART_ABORT_AFTER_DAYS = 7;
/**
 * A kept copy is continued only this long after it began: a day short of the rule, so a
 * continued copy never races the rule's abort.
 */
export const REPLICA_COPY_RESUMABLE_DAYS = REPLICA_MULTIPART_ABORT_AFTER_DAYS - 1;
