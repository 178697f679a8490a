/**
 * Least privilege, one call per dependency: each `use*` helper grants a function
 * exactly the actions it needs on one resource AND sets the environment variable
 * that names that resource (functions/adapters/runtime-config.ts), so a function
 * never holds a permission it is not told about. The converse has one exception:
 * reconcile's configuration (reconcileConfigSchema) requires the origin bucket,
 * which its replica stores name as the source of the copies they never make there,
 * so it is told a name it holds no permission on (`nameOriginWithoutAccess`).
 */
import { Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import type { IConstruct } from 'constructs';
import { LIVE_FILES_INDEX, PENDING_INDEX } from '../contracts/ledger-keys.js';
import type { Topology } from '../contracts/topology.js';
import type { Ledger } from './constructs/ledger.js';
import type { MirrorFunction } from './constructs/mirror-function.js';
import type { OriginStore } from './constructs/origin-store.js';
import { acknowledgeWildcardResource } from './nag.js';

/** Deployment settings every handler reads (see runtime-config.ts). */
export interface MirrorSettings {
  readonly feedShards: number;
  readonly maxUploadBytes: number;
  readonly multipartThresholdBytes: number;
  readonly contentTypes: readonly string[];
  readonly presignTtlSeconds: number;
}

export function settingsFromTopology(topology: Topology): MirrorSettings {
  return {
    feedShards: topology.feedShards,
    maxUploadBytes: topology.limits.maxUploadBytes,
    multipartThresholdBytes: topology.limits.multipartThresholdBytes,
    contentTypes: topology.limits.contentTypes,
    presignTtlSeconds: topology.limits.presignTtlSeconds,
  };
}

/** A replica bucket seen from the home stack: its name is derived, never referenced (lib/naming.ts). */
export interface ReplicaBucketRef {
  readonly bucketName: string;
  readonly region: string;
  /** Prefix of every key the mirror writes in the bucket ('' for the whole bucket). */
  readonly keyPrefix: string;
}

/** What a function needs to know about a target: its queue and, for S3 targets, its bucket. */
export interface TargetBinding {
  readonly id: string;
  readonly kind: 's3' | 'pull';
  readonly queue: sqs.IQueue;
  readonly pathPrefix?: string;
  readonly bucket?: ReplicaBucketRef;
  /** Log and count only (topology `dryRun`). @default false */
  readonly dryRun?: boolean;
}

export type LedgerAction =
  | 'dynamodb:GetItem'
  | 'dynamodb:PutItem'
  | 'dynamodb:UpdateItem'
  | 'dynamodb:DeleteItem'
  | 'dynamodb:Query'
  | 'dynamodb:Scan'
  | 'dynamodb:BatchGetItem'
  | 'dynamodb:ConditionCheckItem';

/** The ledger actions of each function. */
export const LEDGER_ACCESS = {
  /**
   * BatchGetItem: a page of `GET /v1/files` reads its heads in one call per 100, the folder rule a
   * path's folders in one. ConditionCheckItem: a commit (delete, restore, a proven duplicate) checks
   * each folder of the path inside its TransactWriteItems, and IAM authorizes a transaction's
   * ConditionCheck by that action alone (its Put and Update by PutItem and UpdateItem).
   */
  api: [
    'dynamodb:GetItem',
    'dynamodb:BatchGetItem',
    'dynamodb:ConditionCheckItem',
    'dynamodb:PutItem',
    'dynamodb:UpdateItem',
    'dynamodb:DeleteItem',
    'dynamodb:Query',
  ],
  /**
   * ConditionCheckItem: the commit's folder checks (see api). BatchGetItem: the blob's pin and the
   * pending pointer of the upload whose URL sent the bytes, in one read (getBlobAndPendingOf).
   */
  ingest: [
    'dynamodb:GetItem',
    'dynamodb:BatchGetItem',
    'dynamodb:ConditionCheckItem',
    'dynamodb:PutItem',
    'dynamodb:UpdateItem',
    'dynamodb:DeleteItem',
    'dynamodb:Query',
  ],
  /**
   * Reads the upload and its recorded parts; ends an upload whose parts S3 refuses or no longer
   * holds (finishUpload, and removePendingUpload: the DeleteItem of its pending pointer).
   */
  completeMultipart: ['dynamodb:GetItem', 'dynamodb:Query', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem'],
  /** BatchGetItem: the path's head, the target's row and the blob in one read (readForReplication). */
  replicate: [
    'dynamodb:GetItem',
    'dynamodb:BatchGetItem',
    'dynamodb:UpdateItem',
    'dynamodb:PutItem',
    'dynamodb:Query',
  ],
  /**
   * Reads the feed, target rows (a page's worth in one BatchGetItem) and heartbeats; writes its
   * watermark rows (`LAG#<target>`) and marks feed entries it re-sent (the outbox).
   */
  lagMonitor: [
    'dynamodb:GetItem',
    'dynamodb:BatchGetItem',
    'dynamodb:Query',
    'dynamodb:PutItem',
    'dynamodb:UpdateItem',
  ],
  /**
   * Scans the heads, reads target rows, forgets a row whose object is gone or altered (forgetTargetState);
   * reads the heads of a replica bucket's listing page in BatchGetItems of 100 (liveFilesAmong: the
   * foreign objects); ends pending uploads a day past their expiry (found through the pending-uploads
   * index, with `queryPendingUploads`; finishUpload, removePendingUpload: the ledger only).
   */
  reconcile: [
    'dynamodb:Scan',
    'dynamodb:BatchGetItem',
    'dynamodb:Query',
    'dynamodb:GetItem',
    'dynamodb:DeleteItem',
    'dynamodb:UpdateItem',
  ],
  /**
   * Pages through the pending-upload pointers (Query on the pending-uploads index, granted with
   * `queryPendingUploads`), reads each upload (GetItem), and saves where
   * its walk stopped (UpdateItem on its checkpoint row). It writes nothing else: the ingest decides.
   */
  pendingSweep: ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
} as const satisfies Record<string, readonly LedgerAction[]>;

/** The ledger actions that write an item (a transaction's elements are authorized one by one). */
const LEDGER_WRITES: ReadonlySet<LedgerAction> = new Set<LedgerAction>([
  'dynamodb:PutItem',
  'dynamodb:UpdateItem',
  'dynamodb:DeleteItem',
  'dynamodb:ConditionCheckItem',
]);

/**
 * Grants item-level actions on the ledger table (the table only: `Table.grant` would add every
 * index, `index/*`) and sets MIRROR_TABLE. `queryLiveFiles` adds Query on the live-files index,
 * for the functions that apply the path policy's folder rule (api, ingest); `scanLiveFiles` adds
 * Scan on it, for the API's listing of the whole mirror (`GET /v1/files` without a prefix).
 */
export function useLedger(
  fn: MirrorFunction,
  ledger: Ledger,
  actions: readonly LedgerAction[],
  options: {
    readonly queryLiveFiles?: boolean;
    readonly scanLiveFiles?: boolean;
    readonly queryPendingUploads?: boolean;
    /**
     * The partition keys (`dynamodb:LeadingKeys` patterns) its writes are confined to: a bug or a
     * compromised dependency in the function cannot rewrite heads, pins or other targets' rows.
     * @default - writes anywhere in the table
     */
    readonly writesUnder?: readonly string[];
    /**
     * Narrower partitions for one write action than `writesUnder` (DeleteItem where items are
     * deleted at all; PutItem where whole items are replaced; UpdateItem where items are deleted
     * but never updated, as pending pointers): its own statement.
     */
    readonly actionsUnder?: Partial<
      Record<'dynamodb:DeleteItem' | 'dynamodb:PutItem' | 'dynamodb:UpdateItem', readonly string[]>
    >;
  } = {},
): void {
  const confined = options.writesUnder;
  const writes = confined === undefined ? [] : actions.filter((a) => LEDGER_WRITES.has(a));
  const reads = actions.filter((a) => !writes.includes(a));
  fn.role.addToPrincipalPolicy(
    new iam.PolicyStatement({ sid: 'Ledger', actions: [...reads], resources: [ledger.table.tableArn] }),
  );
  const narrower = Object.entries(options.actionsUnder ?? {}).filter(([action]) =>
    writes.includes(action as LedgerAction),
  );
  const broad = writes.filter((a) => !narrower.some(([action]) => action === a));
  const confine = (sid: string, granted: readonly string[], keys: readonly string[]) =>
    fn.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid,
        actions: [...granted],
        resources: [ledger.table.tableArn],
        conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [...keys] } },
      }),
    );
  if (confined !== undefined && broad.length > 0) confine('LedgerWrites', broad, confined);
  for (const [action, keys] of narrower)
    confine(`LedgerWrites${action.replace('dynamodb:', '')}`, [action], keys ?? []);
  if (options.queryPendingUploads) {
    fn.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'LedgerPendingUploadsIndex',
        actions: ['dynamodb:Query'],
        resources: [`${ledger.table.tableArn}/index/${PENDING_INDEX.name}`],
      }),
    );
  }
  if (options.queryLiveFiles) {
    fn.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'LedgerLiveFilesIndex',
        actions: ['dynamodb:Query', ...(options.scanLiveFiles ? ['dynamodb:Scan'] : [])],
        resources: [`${ledger.table.tableArn}/index/${LIVE_FILES_INDEX.name}`],
      }),
    );
  }
  fn.addEnvironment('MIRROR_TABLE', ledger.table.tableName);
}

export type OriginBlobAction =
  | 's3:GetObject'
  | 's3:GetObjectVersion'
  | 's3:PutObject'
  | 's3:DeleteObjectVersion'
  | 's3:AbortMultipartUpload';

export interface OriginAccess {
  /** Object actions, on `blobs/*` only. */
  readonly blobs: readonly OriginBlobAction[];
  /**
   * Why the function takes these actions, e.g. "presigns uploads (PutObject)": the AwsSolutions-IAM5
   * acknowledgement of its `blobs/*` grant gives it, after the actions.
   */
  readonly purpose: string;
  /**
   * Also `s3:ListBucket` on the bucket, for one reason: without it S3 answers
   * HeadObject on a missing key with 403 instead of 404, and a handler that must
   * tell "gone" from "forbidden" (the ingest, on a duplicate event for a blob it
   * already deleted) would fail instead.
   * @default false
   */
  readonly headMissingAs404?: boolean;
  /**
   * Also `s3:ListBucketVersions` on the bucket: the lost-notification sweep lists the object
   * versions at a blob's key (one per upload that PUT those bytes) to send each one's event.
   * @default false
   */
  readonly listVersions?: boolean;
}

/** Grants actions on the origin's blobs and sets MIRROR_ORIGIN_BUCKET. */
export function useOrigin(fn: MirrorFunction, origin: OriginStore, access: OriginAccess): void {
  const objects = origin.blobObjectsArn;
  fn.role.addToPrincipalPolicy(
    new iam.PolicyStatement({
      sid: 'OriginBlobs',
      actions: [...access.blobs],
      resources: [objects],
      conditions: inOwnAccount(fn),
    }),
  );
  acknowledgeWildcardResource(
    fn.role,
    objects,
    `Blob keys are blobs/<sha256> of content not yet known at deploy time, so the grant names the blobs/ prefix of the origin bucket: ${access.blobs.join(', ')} there only; the function ${access.purpose}.`,
  );
  if (access.headMissingAs404) {
    fn.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'OriginHeadMissingAs404',
        actions: ['s3:ListBucket'],
        resources: [origin.bucket.bucketArn],
        conditions: inOwnAccount(fn),
      }),
    );
  }
  if (access.listVersions) {
    fn.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'OriginListBlobVersions',
        actions: ['s3:ListBucketVersions'],
        resources: [origin.bucket.bucketArn],
        conditions: inOwnAccount(fn),
      }),
    );
  }
  fn.addEnvironment('MIRROR_ORIGIN_BUCKET', origin.bucket.bucketName);
}

/**
 * Sets MIRROR_ORIGIN_BUCKET and grants nothing. For reconcile, which never touches
 * the origin (its expiry sweep decides from the ledger alone, core/expiry.ts) but
 * whose configuration requires the name: knowing it gives no access.
 */
export function nameOriginWithoutAccess(fn: MirrorFunction, origin: OriginStore): void {
  fn.addEnvironment('MIRROR_ORIGIN_BUCKET', origin.bucket.bucketName);
}

/** ARN of a replica bucket, from its name. */
export function replicaBucketArn(scope: MirrorFunction, bucket: ReplicaBucketRef): string {
  return Stack.of(scope).formatArn({ service: 's3', region: '', account: '', resource: bucket.bucketName });
}

/** What a grant on replicaObjectsArn covers, in words, for its acknowledgement. */
function replicaScope(bucket: ReplicaBucketRef): string {
  return bucket.keyPrefix === ''
    ? 'the whole bucket (no key prefix: the bucket holds the mirror’s files only)'
    : `the mirror's key prefix ${bucket.keyPrefix} only`;
}

/** ARN pattern of the objects the mirror owns in a replica bucket: `<bucket>/<keyPrefix>*`. */
export function replicaObjectsArn(scope: MirrorFunction, bucket: ReplicaBucketRef): string {
  return `${replicaBucketArn(scope, bucket)}/${bucket.keyPrefix}*`;
}

/**
 * The condition of every S3 grant: it holds on buckets of this stack's own account only. Buckets are
 * named by predictable names (a replica's `<name>-<id>-<account>`, or one chosen in the topology): one
 * deleted by hand, whose name another account then takes, gets no copy, no presigned read and no
 * agent download through the mirror's roles (AWS review 8, A2).
 */
export function inOwnAccount(scope: IConstruct): { StringEquals: Record<string, string> } {
  return { StringEquals: { 'aws:ResourceAccount': Stack.of(scope).account } };
}

/** The MIRROR_TARGETS value: a JSON array that CloudFormation completes with queue URLs and bucket names. */
function renderTargets(fn: MirrorFunction, targets: readonly TargetBinding[]): string {
  return Stack.of(fn).toJsonString(
    targets.map((t) => ({
      id: t.id,
      kind: t.kind,
      queueUrl: t.queue.queueUrl,
      ...(t.pathPrefix === undefined ? {} : { pathPrefix: t.pathPrefix }),
      ...(t.bucket === undefined ? {} : { region: t.bucket.region, bucket: t.bucket.bucketName }),
      keyPrefix: t.bucket?.keyPrefix ?? '',
      ...(t.dryRun ? { dryRun: true } : {}),
    })),
  );
}

/** Read access to the mirror's objects in every replica bucket. */
export interface ReplicaReadAccess {
  /**
   * Why the function reads them, e.g. "Presigned GETs of files by path": the
   * start of the reason given for each bucket's AwsSolutions-IAM5 acknowledgement.
   */
  readonly purpose: string;
  /**
   * Also `s3:ListBucket` on each replica bucket, so that HeadObject on a missing
   * key answers 404 instead of 403 (a function that must tell "gone" from
   * "forbidden", like reconcile finding an object deleted from a replica).
   * @default false
   */
  readonly headMissingAs404?: boolean;
  /**
   * Also `s3:ListBucket` on each replica bucket, to list the objects under the target's key prefix
   * (reconcile's foreign objects). The same action as `headMissingAs404`, in the same statement: one
   * with an `s3:prefix` condition would add nothing beside the unconditioned one HeadObject needs.
   * @default false
   */
  readonly listObjects?: boolean;
}

export interface TargetsAccess {
  /** `sqs:SendMessage` on every target queue (fan-out). */
  readonly sendMessage: boolean;
  /**
   * `s3:GetObject` (GET and HEAD) on the mirror's objects in every replica bucket.
   * @default - no access to any replica bucket
   */
  readonly readReplicaObjects?: ReplicaReadAccess;
}

/** Grants access to every target and sets MIRROR_TARGETS to all of them. */
export function useTargets(
  fn: MirrorFunction,
  targets: readonly TargetBinding[],
  access: TargetsAccess,
): void {
  if (access.sendMessage && targets.length > 0) {
    // Only SendMessage: the queue URLs come from MIRROR_TARGETS, so no GetQueueUrl or GetQueueAttributes.
    fn.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'FanOutToTargets',
        actions: ['sqs:SendMessage'],
        resources: targets.map((t) => t.queue.queueArn),
      }),
    );
  }
  const read = access.readReplicaObjects;
  if (read) {
    const buckets: string[] = [];
    for (const target of targets) {
      if (!target.bucket) continue;
      const objects = replicaObjectsArn(fn, target.bucket);
      fn.role.addToPrincipalPolicy(
        new iam.PolicyStatement({
          actions: ['s3:GetObject'],
          resources: [objects],
          conditions: inOwnAccount(fn),
        }),
      );
      acknowledgeWildcardResource(
        fn.role,
        objects,
        `${read.purpose} in the replica bucket of target "${target.id}": paths are user data, so access covers ${replicaScope(target.bucket)}.`,
      );
      buckets.push(replicaBucketArn(fn, target.bucket));
    }
    if ((read.headMissingAs404 || read.listObjects) && buckets.length > 0) {
      fn.role.addToPrincipalPolicy(
        new iam.PolicyStatement({
          sid: read.listObjects ? 'ReplicasList' : 'ReplicasHeadMissingAs404',
          actions: ['s3:ListBucket'],
          resources: buckets,
          conditions: inOwnAccount(fn),
        }),
      );
    }
  }
  fn.addEnvironment('MIRROR_TARGETS', renderTargets(fn, targets));
}

/**
 * A replicate function's one target: consume its queue is granted by the event
 * source; here, write access to its bucket only, MIRROR_TARGET_ID, and
 * MIRROR_TARGETS listing that target alone (it learns no other queue or bucket).
 */
export function useOwnTarget(
  fn: MirrorFunction,
  target: TargetBinding & { readonly bucket: ReplicaBucketRef },
): void {
  const objects = replicaObjectsArn(fn, target.bucket);
  fn.role.addToPrincipalPolicy(
    new iam.PolicyStatement({
      sid: 'ReplicaObjects',
      // ListMultipartUploadParts: a large copy the deadline stopped is continued from the parts it holds.
      actions: [
        's3:PutObject',
        's3:GetObject',
        's3:DeleteObject',
        's3:AbortMultipartUpload',
        's3:ListMultipartUploadParts',
      ],
      resources: [objects],
      conditions: inOwnAccount(fn),
    }),
  );
  acknowledgeWildcardResource(
    fn.role,
    objects,
    `The replicate function of target "${target.id}" writes files by path (user data) in its own replica bucket only: ${replicaScope(target.bucket)}.`,
  );
  // HeadObject on a path not yet replicated must answer 404 (absent), not 403: S3 does so only with ListBucket.
  fn.role.addToPrincipalPolicy(
    new iam.PolicyStatement({
      sid: 'ReplicaHeadMissingAs404',
      actions: ['s3:ListBucket'],
      resources: [replicaBucketArn(fn, target.bucket)],
      conditions: inOwnAccount(fn),
    }),
  );
  fn.addEnvironment('MIRROR_TARGET_ID', target.id);
  fn.addEnvironment('MIRROR_TARGETS', renderTargets(fn, [target]));
}

/**
 * Grants `sqs:SendMessage` on the completion queue and sets MIRROR_COMPLETION_QUEUE_URL: the API
 * queues multipart completions there, the pending sweep sends lost ones again.
 */
export function useCompletionQueue(fn: MirrorFunction, queue: sqs.IQueue): void {
  sendsTo(fn, queue, 'SendCompletions', 'MIRROR_COMPLETION_QUEUE_URL');
}

/**
 * Grants `sqs:SendMessage` on the ingest queue and sets MIRROR_INGEST_QUEUE_URL: the ingest sends
 * the continuation of a verification too long for one invocation there, the pending sweep the S3
 * events it finds lost. Either message is a claim the ingest checks: it names an object, never a
 * hash state.
 */
export function useIngestQueue(fn: MirrorFunction, queue: sqs.IQueue): void {
  sendsTo(fn, queue, 'SendToIngestQueue', 'MIRROR_INGEST_QUEUE_URL');
}

/** `sqs:SendMessage` on `queue` and its URL in `envVar` (SQS-managed encryption: no key to grant). */
function sendsTo(fn: MirrorFunction, queue: sqs.IQueue, sid: string, envVar: string): void {
  fn.role.addToPrincipalPolicy(
    new iam.PolicyStatement({ sid, actions: ['sqs:SendMessage'], resources: [queue.queueArn] }),
  );
  fn.addEnvironment(envVar, queue.queueUrl);
}

/** Sets the deployment settings (no resource, nothing to grant). */
export function useSettings(fn: MirrorFunction, settings: MirrorSettings): void {
  fn.addEnvironment('MIRROR_FEED_SHARDS', String(settings.feedShards));
  fn.addEnvironment('MIRROR_MAX_UPLOAD_BYTES', String(settings.maxUploadBytes));
  fn.addEnvironment('MIRROR_MULTIPART_THRESHOLD_BYTES', String(settings.multipartThresholdBytes));
  fn.addEnvironment('MIRROR_CONTENT_TYPES', JSON.stringify(settings.contentTypes));
  fn.addEnvironment('MIRROR_PRESIGN_TTL_SECONDS', String(settings.presignTtlSeconds));
}
