/**
 * The bucket that receives S3 server access logs of a region's buckets. Versioned: a principal
 * that may write or delete here (a leaked deploy role, a careless clean-up) cannot make a log
 * line disappear for good; the overwritten or deleted version stays recoverable for
 * `noncurrentRetention` (docs/deploy.md, the resources table, "logs").
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { acknowledge } from '../nag.js';

export interface AccessLogBucketProps {
  /**
   * How long access logs are kept.
   * @default Duration.days(365)
   */
  readonly expiration?: Duration;
  /**
   * How long a log overwritten or deleted (and every log, once expired) stays recoverable as a
   * noncurrent version.
   * @default Duration.days(90)
   */
  readonly noncurrentRetention?: Duration;
  /**
   * What happens to the bucket when the stack is deleted.
   * @default RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE
   */
  readonly removalPolicy?: RemovalPolicy;
}

export class AccessLogBucket extends Construct {
  /** The log bucket: SSE-S3 (log delivery supports no other), private, TLS-only, owner-enforced, versioned. */
  public readonly bucket: s3.Bucket;

  constructor(scope: Construct, id: string, props: AccessLogBucketProps = {}) {
    super(scope, id);
    this.bucket = new s3.Bucket(this, 'Bucket', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      versioned: true,
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
      lifecycleRules: [
        { id: 'expire-access-logs', expiration: props.expiration ?? Duration.days(365) },
        {
          id: 'expire-noncurrent-access-logs',
          noncurrentVersionExpiration: props.noncurrentRetention ?? Duration.days(90),
        },
        // S3 refuses ExpiredObjectDeleteMarker beside Days in one rule: a rule of its own.
        { id: 'remove-expired-delete-markers', expiredObjectDeleteMarker: true },
        { id: 'abort-incomplete-multipart-uploads', abortIncompleteMultipartUploadAfter: Duration.days(1) },
      ],
    });
    acknowledge(
      this.bucket,
      'AwsSolutions-S1',
      'This is the server access log bucket itself: logging its own access would write logs about log deliveries without end.',
    );
  }
}
