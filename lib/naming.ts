/**
 * Names that more than one stack must agree on, derived from the topology.
 *
 * Replica buckets live in one stack per region but are written by functions in
 * the home stack. Passing a bucket object across regions would need
 * `crossRegionReferences` (custom resources and SSM parameters in every region);
 * instead both stacks compute the same name from the topology and the
 * `AWS::AccountId` pseudo parameter, which each stack resolves on its own to
 * the one account they are deployed to. No export, no cross-stack reference,
 * and `cdk synth` needs no account.
 */
import { Aws, Token } from 'aws-cdk-lib';
import { type S3TargetConfig, sharedBuckets, type Topology } from '../contracts/topology.js';

/** An AWS account id is 12 digits: the length the pseudo parameter resolves to. */
const ACCOUNT_ID_LENGTH = 12;
const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const FORBIDDEN_PREFIXES = ['xn--', 'sthree-', 'amzn-s3-demo-'];
const FORBIDDEN_SUFFIXES = ['-s3alias', '--ol-s3', '--x-s3', '.mrap', '--table-s3'];

/** Stack names: `<name>-Home` and `<name>-Replica-<region>`. */
export function homeStackName(topology: Topology): string {
  return `${topology.name}-Home`;
}

export function replicaStackName(topology: Topology, region: string): string {
  return `${topology.name}-Replica-${region}`;
}

/** The distinct regions of the S3 targets, in topology order. */
export function replicaRegions(topology: Topology): string[] {
  const regions: string[] = [];
  for (const target of s3Targets(topology)) {
    if (!regions.includes(target.region)) regions.push(target.region);
  }
  return regions;
}

export function s3Targets(topology: Topology): S3TargetConfig[] {
  return topology.targets.filter((t): t is S3TargetConfig => t.kind === 's3');
}

/** A bucket name made of a literal prefix and the account id, checked for S3's rules. */
function withAccount(field: string, prefix: string): string {
  const lower = prefix.toLowerCase();
  checkBucketName(field, `${lower}${'0'.repeat(ACCOUNT_ID_LENGTH)}`);
  return `${lower}${Aws.ACCOUNT_ID}`;
}

function checkBucketName(field: string, name: string): void {
  const problems: string[] = [];
  if (!BUCKET_NAME.test(name)) problems.push('3-63 characters: lower-case letters, digits, dots and dashes');
  if (name.includes('..')) problems.push('no two adjacent dots');
  if (FORBIDDEN_PREFIXES.some((p) => name.startsWith(p)))
    problems.push(`no prefix ${FORBIDDEN_PREFIXES.join(', ')}`);
  if (FORBIDDEN_SUFFIXES.some((s) => name.endsWith(s)))
    problems.push(`no suffix ${FORBIDDEN_SUFFIXES.join(', ')}`);
  if (problems.length > 0) {
    throw new Error(`${field}: "${name}" is not a valid S3 bucket name (${problems.join('; ')})`);
  }
}

/**
 * The origin bucket: `<name>-origin-<account>` in lower case. A fixed name lets
 * the ingest queue's policy name the bucket (aws:SourceArn) without referring
 * to it, so CloudFormation can create the queue policy before the bucket and
 * its event notification (no custom resource needed).
 */
export function originBucketName(topology: Topology): string {
  return withAccount('name', `${topology.name}-origin-`);
}

/** A replica bucket: the topology's `bucketName`, else `<name>-<id>-<account>` in lower case. */
export function replicaBucketName(topology: Topology, target: S3TargetConfig): string {
  const index = topology.targets.indexOf(target);
  const field = `targets.${index < 0 ? '?' : index}.bucketName`;
  if (target.bucketName !== undefined) {
    if (!Token.isUnresolved(target.bucketName)) checkBucketName(field, target.bucketName);
    return target.bucketName;
  }
  return withAccount(`${field} (default <name>-<id>-<account>)`, `${topology.name}-${target.id}-`);
}

/** Throws one error naming every bucket-name problem in the topology. */
export function checkNames(topology: Topology): void {
  const problems: string[] = [];
  const owners: [string, string][] = [];
  const attempt = (fn: () => string, owner: string) => {
    try {
      owners.push([owner, fn()]);
    } catch (error) {
      problems.push((error as Error).message);
    }
  };
  attempt(() => originBucketName(topology), 'the origin bucket');
  for (const target of s3Targets(topology))
    attempt(() => replicaBucketName(topology, target), `target "${target.id}"`);
  problems.push(...sharedBuckets(owners));
  if (problems.length > 0) throw new Error(`invalid topology for the CDK app:\n  ${problems.join('\n  ')}`);
}
