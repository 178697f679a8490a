/**
 * A bucket policy that refuses a presigned request (`s3:authType` REST-QUERY-STRING) whose signature
 * is older than the API's presigned URLs live (`limits.presignTtlSeconds`, at most 15 minutes). The
 * API never signs for longer, but a URL is a bearer token: should a bug or a borrowed role sign one
 * for the seven days SigV4 allows, S3 refuses it past the mirror's own lifetime (AWS's presigned-URL
 * guardrail; docs/deploy.md, "Presigned URLs"). Requests signed in headers (the functions', the
 * agent's) are not concerned. Signature Version 2 is refused outright.
 */
import { Duration } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as s3 from 'aws-cdk-lib/aws-s3';

/** The longest presigned URL the API may issue (contracts/topology.ts caps `presignTtlSeconds` there). */
export const MAX_PRESIGNED_URL_AGE = Duration.minutes(15);

export function refuseOldSignatures(bucket: s3.Bucket, maxAge: Duration): void {
  denyEverything(bucket, 'NoOldSignatures', {
    StringEquals: { 's3:authType': 'REST-QUERY-STRING' },
    NumericGreaterThan: { 's3:signatureAge': maxAge.toMilliseconds() },
  });
  // Signature Version 2 is deprecated and still accepted in some regions: nothing of the mirror's uses it.
  denyEverything(bucket, 'NoSignatureVersion2', { StringEquals: { 's3:signatureversion': 'AWS' } });
}

/** Every S3 action on the bucket and its objects, denied to everyone under `conditions`. */
function denyEverything(bucket: s3.Bucket, sid: string, conditions: Record<string, unknown>): void {
  bucket.addToResourcePolicy(
    new iam.PolicyStatement({
      sid,
      effect: iam.Effect.DENY,
      principals: [new iam.AnyPrincipal()],
      actions: ['s3:*'],
      resources: [bucket.bucketArn, bucket.arnForObjects('*')],
      conditions,
    }),
  );
}
