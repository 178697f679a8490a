/**
 * The origin bucket in the home region: content-addressed blobs under `blobs/`,
 * uploaded by browsers through presigned URLs, announced to the ingest queue by
 * S3 event notifications.
 */
import { Annotations, Aws, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { BLOB_PREFIX, MULTIPART_ABORT_AFTER_DAYS } from '../../contracts/ledger-keys.js';
import { AccessLogBucket } from './access-log-bucket.js';
import { MAX_PRESIGNED_URL_AGE, refuseOldSignatures } from './signature-age.js';

export interface OriginStoreProps {
  /** Physical bucket name (see `lib/naming.ts`): fixed so the ingest queue's policy can name it. */
  readonly bucketName: string;
  /**
   * Browser origins allowed to PUT and GET blobs with presigned URLs.
   * @default - no CORS rule: browsers cannot upload directly
   */
  readonly corsOrigins?: readonly string[];
  /**
   * Where server access logs go.
   * @default - a new AccessLogBucket in this construct
   */
  readonly accessLogsBucket?: s3.IBucket;
  /**
   * What happens to the bucket when the stack is deleted.
   * @default RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE
   */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * Presigned requests signed longer ago than this are refused (the API's URLs never live longer).
   * @default MAX_PRESIGNED_URL_AGE (15 minutes)
   */
  readonly maxPresignedUrlAge?: Duration;
  /**
   * IAM roles or users (ARNs; `*` and `?` match as in `ArnLike`) that may change the bucket's
   * versioning, lifecycle rules and policy, besides the CloudFormation execution role of the
   * stack's synthesizer. Every other principal is denied them (`OnlyTheDeployChangesBucketConfiguration`).
   * Name here the role CloudFormation runs as when it is not the synthesizer's: `cdk deploy
   * --role-arn`, or the deploying identity itself with a synthesizer that names no role
   * (`CliCredentialsStackSynthesizer`, `LegacyStackSynthesizer`); else a later update of the
   * bucket or its policy is refused, and so is its rollback.
   * @default - none: only the synthesizer's execution role (with the `DefaultStackSynthesizer`,
   *   `cdk-<qualifier>-cfn-exec-role-<account>-<region>`); when the synthesizer names none
   *   either, nothing is denied and the synth warns (`mirror:originConfigurationUnguarded`)
   */
  readonly configurationPrincipalArns?: readonly string[];
}

/** Annotation id of the warning that no principal is denied the origin's configuration changes. */
export const ORIGIN_CONFIGURATION_UNGUARDED = 'mirror:originConfigurationUnguarded';

/**
 * What undoes verified bytes without touching an object: suspended versioning (the next upload
 * overwrites the `null` version), a lifecycle rule that expires versions (`DeleteBucketLifecycle`
 * is authorized as `s3:PutLifecycleConfiguration` too), and a new or deleted bucket policy, which
 * lifts every deny of this construct.
 */
export const ORIGIN_CONFIGURATION_ACTIONS = [
  's3:PutBucketVersioning',
  's3:PutLifecycleConfiguration',
  's3:PutBucketPolicy',
  's3:DeleteBucketPolicy',
] as const;

/**
 * A synthesizer's role ARN keeps the placeholders it could not fill for the CLI to fill at deploy
 * (`${AWS::Partition}` always, `${AWS::AccountId}` of an account-agnostic stack): in a template
 * they are the pseudo parameters of the account and region deployed to, the same values.
 */
function withPseudoParameters(arn: string): string {
  const pseudo = { Partition: Aws.PARTITION, AccountId: Aws.ACCOUNT_ID, Region: Aws.REGION };
  return arn.replace(
    /\$\{AWS::(Partition|AccountId|Region)\}/g,
    (_, name: keyof typeof pseudo) => pseudo[name],
  );
}

export class OriginStore extends Construct {
  /** The origin bucket: versioned, SSE-S3, private, TLS-only, access-logged. */
  public readonly bucket: s3.Bucket;
  /** Where its access logs go. */
  public readonly accessLogsBucket: s3.IBucket;
  /** The ARN of the bucket, computed from its name (usable before the bucket exists). */
  public readonly bucketArnFromName: string;

  constructor(scope: Construct, id: string, props: OriginStoreProps) {
    super(scope, id);
    this.accessLogsBucket = props.accessLogsBucket ?? new AccessLogBucket(this, 'AccessLogs').bucket;
    const corsOrigins = props.corsOrigins ?? [];
    this.bucket = new s3.Bucket(this, 'Bucket', {
      bucketName: props.bucketName,
      versioned: true,
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      enforceSSL: true,
      // TLS 1.2 at least, presigned requests included: a bucket policy S3 checks whatever the signer asked.
      minimumTLSVersion: 1.2,
      serverAccessLogsBucket: this.accessLogsBucket,
      serverAccessLogsPrefix: 'origin/',
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
      lifecycleRules: [
        {
          id: 'abort-incomplete-multipart-uploads',
          // The API stops resuming a multipart upload before this (RESUMABLE_FOR_MS): one constant for both.
          abortIncompleteMultipartUploadAfter: Duration.days(MULTIPART_ABORT_AFTER_DAYS),
        },
        // No rule expires noncurrent versions: the verified version a blob record pins is noncurrent
        // while another version lies over it (a second upload of those bytes, or bad bytes, until
        // the ingest deletes that version by id, or later if its event waits in the DLQ), and such
        // a rule would delete the only copy of committed bytes for good (docs/design-notes.md).
        { id: 'remove-expired-delete-markers', expiredObjectDeleteMarker: true },
      ],
      cors:
        corsOrigins.length === 0
          ? undefined
          : [
              {
                allowedOrigins: [...corsOrigins],
                allowedMethods: [s3.HttpMethods.PUT, s3.HttpMethods.GET, s3.HttpMethods.HEAD],
                allowedHeaders: [
                  'content-type',
                  'content-length',
                  'x-amz-checksum-sha256',
                  'x-amz-meta-mirror-upload',
                ],
                exposedHeaders: ['ETag'],
                maxAge: 3000,
              },
            ],
    });
    this.bucketArnFromName = `arn:${Aws.PARTITION}:s3:::${props.bucketName}`;
    // A DeleteObject without a version id writes a delete marker over the pinned version; nothing
    // of the mirror's does that (the ingest deletes versions by id: s3:DeleteObjectVersion), and
    // no one else may, whatever their identity policy says.
    this.bucket.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'NoDeleteMarkersOverBlobs',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ['s3:DeleteObject'],
        resources: [this.blobObjectsArn],
      }),
    );
    refuseOldSignatures(this.bucket, props.maxPresignedUrlAge ?? MAX_PRESIGNED_URL_AGE);
    this.allowConfigurationChangesOnlyTo(props.configurationPrincipalArns ?? []);
  }

  /**
   * Any identity with `s3:*` (an admin, a CI role, a leaked key) could otherwise destroy verified
   * bytes for good without deleting an object, or lift the denies above. Only the role
   * CloudFormation deploys the stack with keeps these actions, so the stack's own updates (its
   * lifecycle rules, this policy, and their rollback) still go through; it has no custom
   * resource that needs them (the notifications are set on the bucket itself, and nothing
   * deletes its objects at teardown). `aws:PrincipalArn` of a role session is the role's ARN,
   * whatever the session name. Without a known deploy principal nothing is denied: denying all
   * would refuse the stack's own next update of the bucket, and its rollback. The account's root
   * user may still put or delete the policy (S3 keeps that against a lock-out): the break-glass
   * path (docs/deploy.md, "Who may change the origin bucket").
   */
  private allowConfigurationChangesOnlyTo(principalArns: readonly string[]): void {
    const execRole = Stack.of(this).synthesizer.cloudFormationExecutionRole;
    const allowed = [...(execRole === undefined ? [] : [withPseudoParameters(execRole)]), ...principalArns];
    if (allowed.length === 0) {
      Annotations.of(this).addWarningV2(
        ORIGIN_CONFIGURATION_UNGUARDED,
        `The origin bucket's versioning, lifecycle rules and policy are not guarded: the stack's synthesizer ` +
          `names no CloudFormation execution role, so any principal with s3:* may suspend versioning or expire ` +
          `verified versions. Name the role (or user) your deploys run as with -c mirror:originConfigurationPrincipalArns=<arn> ` +
          '(docs/deploy.md, "Who may change the origin bucket").',
      );
      return;
    }
    this.bucket.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'OnlyTheDeployChangesBucketConfiguration',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: [...ORIGIN_CONFIGURATION_ACTIONS],
        resources: [this.bucket.bucketArn],
        conditions: { ArnNotLike: { 'aws:PrincipalArn': allowed.length === 1 ? allowed[0] : allowed } },
      }),
    );
  }

  /**
   * Deleting a blob version by id removes verified bytes for good (a delete marker, denied above,
   * can be undone). Only the ingest does it, for bytes it rejected or found duplicate; no one else
   * may, whatever their identity policy says (`s3:*` of an admin, a CI role, a leaked key).
   * Emptying the bucket at teardown then needs this statement removed first (docs/deploy.md).
   */
  allowVersionDeletesOnlyTo(role: iam.IRole): void {
    this.bucket.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'OnlyTheIngestDeletesBlobVersions',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ['s3:DeleteObjectVersion'],
        resources: [this.blobObjectsArn],
        conditions: { ArnNotEquals: { 'aws:PrincipalArn': role.roleArn } },
      }),
    );
  }

  /** ARN pattern of the blobs' objects (`<bucket>/blobs/*`). */
  get blobObjectsArn(): string {
    return this.bucket.arnForObjects(`${BLOB_PREFIX}*`);
  }

  /**
   * Sends `s3:ObjectCreated:*` events for keys under `blobs/` to a queue.
   *
   * Written on the bucket itself (CloudFormation's NotificationConfiguration), not
   * with `addEventNotification`, which deploys a custom-resource Lambda with a
   * managed policy and `s3:PutBucketNotification` on `*`. S3 checks that it may
   * send to the queue when the configuration is set, so the bucket depends on the
   * queue policy, and that policy names the bucket by its computed ARN: no cycle.
   */
  notifyBlobCreated(queue: sqs.Queue): void {
    queue.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'OriginBucketNotifications',
        principals: [new iam.ServicePrincipal('s3.amazonaws.com')],
        actions: ['sqs:SendMessage'],
        resources: [queue.queueArn],
        conditions: {
          ArnEquals: { 'aws:SourceArn': this.bucketArnFromName },
          StringEquals: { 'aws:SourceAccount': Stack.of(this).account },
        },
      }),
    );
    const cfnBucket = this.bucket.node.defaultChild as s3.CfnBucket;
    cfnBucket.notificationConfiguration = {
      queueConfigurations: [
        {
          event: 's3:ObjectCreated:*',
          queue: queue.queueArn,
          filter: { s3Key: { rules: [{ name: 'prefix', value: BLOB_PREFIX }] } },
        },
      ],
    };
    // Depending on the queue construct covers its children, the queue policy among them.
    cfnBucket.node.addDependency(queue);
  }
}
