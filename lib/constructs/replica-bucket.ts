/**
 * A target's replica bucket, in the target's region: files by logical path,
 * with the version and SHA-256 in object metadata.
 *
 * Not versioned: a replica is derived state. The origin bucket (versioned) and
 * the ledger (the version chain) hold every version; a lost or wrong replica
 * object is repaired by replicating again, and versioning here would only
 * multiply storage by the number of overwrites of each path.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { REPLICA_MULTIPART_ABORT_AFTER_DAYS } from '../../contracts/replica-copy.js';
import { MAX_PRESIGNED_URL_AGE, refuseOldSignatures } from './signature-age.js';

export interface ReplicaBucketProps {
  /** Physical name (lib/naming.ts): the home stack derives the same name to grant access. */
  readonly bucketName: string;
  /** Where server access logs go (a bucket in the same region). */
  readonly accessLogsBucket: s3.IBucket;
  /**
   * Prefix of this bucket's access logs in the log bucket.
   * @default '<construct id in lower case>/'
   */
  readonly accessLogsPrefix?: string;
  /**
   * What happens to the bucket when the stack is deleted.
   * @default RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE
   */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * Browser origins that may read files from this bucket (`GET /v1/files/<path>/content?target=`
   * redirects to a presigned GET here): GET and HEAD only, nothing is written from a browser.
   * @default none: no CORS rule
   */
  readonly corsOrigins?: readonly string[];
  /**
   * Presigned requests signed longer ago than this are refused (the API's URLs never live longer).
   * @default MAX_PRESIGNED_URL_AGE (15 minutes)
   */
  readonly maxPresignedUrlAge?: Duration;
}

export class ReplicaBucket extends Construct {
  /** The replica bucket: SSE-S3, private, TLS-only, access-logged, not versioned (see above). */
  public readonly bucket: s3.Bucket;

  constructor(scope: Construct, id: string, props: ReplicaBucketProps) {
    super(scope, id);
    this.bucket = new s3.Bucket(this, 'Bucket', {
      bucketName: props.bucketName,
      versioned: false,
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      enforceSSL: true,
      // TLS 1.2 at least, presigned requests included: a bucket policy S3 checks whatever the signer asked.
      minimumTLSVersion: 1.2,
      serverAccessLogsBucket: props.accessLogsBucket,
      serverAccessLogsPrefix: props.accessLogsPrefix ?? `${id.toLowerCase()}/`,
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
      cors:
        (props.corsOrigins ?? []).length === 0
          ? undefined
          : [
              {
                allowedOrigins: [...(props.corsOrigins ?? [])],
                allowedMethods: [s3.HttpMethods.GET, s3.HttpMethods.HEAD],
                allowedHeaders: ['range', 'if-none-match', 'if-match'],
                exposedHeaders: [
                  'ETag',
                  'Content-Length',
                  'Content-Range',
                  'x-amz-meta-mirror-sha256',
                  'x-amz-meta-mirror-version',
                ],
                maxAge: 3000,
              },
            ],
      lifecycleRules: [
        // Multipart copies (objects over 5 GiB) left behind: a crashed function's, or a copy its
        // invocation's deadline stopped and no later delivery continued. Days, not one: a copy of
        // the largest object spans many invocations, and the replicate function continues a kept
        // copy only while it is younger than REPLICA_COPY_RESUMABLE_DAYS.
        {
          id: 'abort-incomplete-multipart-uploads',
          abortIncompleteMultipartUploadAfter: Duration.days(REPLICA_MULTIPART_ABORT_AFTER_DAYS),
        },
      ],
    });
    refuseOldSignatures(this.bucket, props.maxPresignedUrlAge ?? MAX_PRESIGNED_URL_AGE);
  }
}
