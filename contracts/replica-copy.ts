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
/**
 * Receives of a replication message before it goes to the target's dead-letter queue. Each
 * invocation a large copy spans is one receive (a record the deadline stopped is handed back at
 * once, but SQS still counts it): the largest object S3 holds (5 TiB) at ~400 MB/s (8 part
 * copies of ~50 MB/s, the low estimate in docs/scale.md) in ~14 minutes of work per invocation
 * takes 17; 3 more for transient failures. The price: a message that truly fails waits up to 20
 * visibility timeouts (90 min each) before it is parked, instead of 5.
 */
export const REPLICA_MAX_RECEIVES = 20;
