/**
 * What the on-premises agent of one pull target may do in AWS: one IAM role with
 * exactly the policy docs/agent.md ("Credentials and what the role allows") lists,
 * and a trust policy for how the server gets credentials (IAM Roles Anywhere by
 * default, or an IAM principal whose access key is on the server).
 *
 * - SQS: receive, delete, change visibility and read the attributes of its own
 *   target queue only.
 * - S3: `s3:GetObject` and `s3:GetObjectVersion` (it downloads the object version
 *   the ledger verified) on the origin's `blobs/*` only; `s3:ListBucket` on the origin,
 *   listings limited to `blobs/` (`StringLikeIfExists` on `s3:prefix`): without it S3
 *   answers a GET of an absent blob with 403, and the agent could not tell a missing
 *   blob (refused as `missing-blob`) from a permission problem (retried). The agent
 *   can read every blob anyway, so listing their keys reveals nothing more.
 * - DynamoDB, on the ledger table, by partition key (`dynamodb:LeadingKeys`):
 *   GetItem and Query on `P#*` (version records), `FEED#*` (the change feed) and
 *   its own `AGENT#<target>` row; GetItem (no Query) on `B#*`, a blob's verified
 *   object version; PutItem and UpdateItem on its own rows only,
 *   `T#<target>#*` (applied state per path) and `AGENT#<target>` (heartbeat), never
 *   setting a secondary index's key attributes (`dynamodb:Attributes`).
 *   No Scan, no DeleteItem, nothing on another target's rows.
 */
import { Duration, Stack, Token } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import {
  AGENT_BLOB_RECORD_KEYS,
  agentReadableKeys,
  agentWritableKeys,
  BLOB_PREFIX,
} from '../../contracts/ledger-keys.js';
import { inOwnAccount } from '../grants.js';
import { acknowledgeWildcardResource } from '../nag.js';
import type { Ledger } from './ledger.js';
import type { OriginStore } from './origin-store.js';

/** The IAM Roles Anywhere service principal. */
export const ROLES_ANYWHERE_PRINCIPAL = 'rolesanywhere.amazonaws.com';

/** What Roles Anywhere must be allowed to do to issue a session (its trust model). */
export const ROLES_ANYWHERE_TRUST_ACTIONS = ['sts:AssumeRole', 'sts:TagSession', 'sts:SetSourceIdentity'];

/** Longest session of an agent role: the agent (through the SDK) refreshes its credentials itself. */
export const AGENT_MAX_SESSION = Duration.hours(1);

/** The SQS actions of an agent, on its own queue. */
export const AGENT_QUEUE_ACTIONS = [
  'sqs:ReceiveMessage',
  'sqs:DeleteMessage',
  'sqs:ChangeMessageVisibility',
  'sqs:GetQueueAttributes',
];

/** The ledger reads of an agent, and the partition keys they may touch. */
export const AGENT_LEDGER_READ_ACTIONS = ['dynamodb:GetItem', 'dynamodb:Query'];
/** The ledger writes of an agent (its own rows only). */
export const AGENT_LEDGER_WRITE_ACTIONS = ['dynamodb:PutItem', 'dynamodb:UpdateItem'];

/** The S3 actions of an agent on the origin's blobs: the verified object version, by id. */
export const AGENT_BLOB_ACTIONS = ['s3:GetObject', 's3:GetObjectVersion'];

/**
 * Trust through IAM Roles Anywhere: the server presents an X.509 certificate
 * issued by a CA registered as a trust anchor, through `aws_signing_helper`.
 */
export interface RolesAnywhereTrust {
  readonly kind: 'roles-anywhere';
  /**
   * Accept sessions from this trust anchor only (`ArnEquals aws:SourceArn`). Required unless
   * `anyTrustAnchor` says otherwise: a role that trusts every anchor trusts every CA anyone
   * registers in the account, and every certificate such a CA issues.
   * @default - none: the construct refuses the trust
   */
  readonly trustAnchorArn?: string;
  /**
   * Accept sessions from any trust anchor of this account (`StringEquals aws:SourceAccount`) whose
   * profile lists the role: only when that is meant, e.g. a first try in a sandbox account.
   * @default false
   */
  readonly anyTrustAnchor?: boolean;
  /**
   * Accept only a certificate whose subject CN is this value
   * (`StringEquals aws:PrincipalTag/x509Subject/CN`): the one server of this
   * target, when several targets' servers share a trust anchor.
   * Required with a `trustAnchorArn` unless `anyCertificate` says otherwise: one CA commonly
   * issues every server's certificate, and without the CN each of them could assume this role.
   * @default - none: the construct refuses an anchor without it
   */
  readonly certificateCommonName?: string;
  /**
   * With a `trustAnchorArn`, accept every certificate that anchor accepts, on purpose: a CA that
   * issues certificates for this one server only.
   * @default false
   */
  readonly anyCertificate?: boolean;
}

/**
 * Trust an IAM principal, for servers that hold an access key: typically an IAM
 * user allowed nothing but `sts:AssumeRole` on this role.
 */
export interface PrincipalTrust {
  readonly kind: 'principal';
  /** ARN of the IAM user (or role) that assumes the agent role: `arn:aws:iam::<account>:user/<name>`. */
  readonly principalArn: string;
}

/** Who may assume an agent role. */
export type AgentTrust = RolesAnywhereTrust | PrincipalTrust;

/**
 * The default trust: IAM Roles Anywhere, which needs a trust anchor (`trustAnchorArn`) or the
 * explicit `anyTrustAnchor`; without either the construct refuses it.
 */
export const DEFAULT_AGENT_TRUST: AgentTrust = { kind: 'roles-anywhere' };

export interface AgentAccessProps {
  /** The pull target whose agent assumes the role (the topology's target id). */
  readonly targetId: string;
  /** The target's queue: the only queue the agent may consume. */
  readonly queue: sqs.IQueue;
  /** The ledger: read by partition key, written on the target's own rows only. */
  readonly ledger: Ledger;
  /** The origin: the agent reads `blobs/*`, nothing else. */
  readonly origin: OriginStore;
  /**
   * Who may assume the role.
   * @default DEFAULT_AGENT_TRUST (IAM Roles Anywhere; refused without a trust anchor)
   */
  readonly trust?: AgentTrust;
}

/** A target id as it appears in the policy: no character StringLike or the key scheme would read as special. */
const SAFE_TARGET_ID = /^[A-Za-z0-9-]+$/;
const TRUST_ANCHOR_ARN = /^arn:aws[a-z-]*:rolesanywhere:[a-z0-9-]+:\d{12}:trust-anchor\/[0-9a-f-]+$/;
const PRINCIPAL_ARN = /^arn:aws[a-z-]*:iam::\d{12}:(user|role)\/[\w+=,.@/-]+$/;

export class AgentAccess extends Construct {
  /** The pull target. */
  public readonly targetId: string;
  /** Who may assume the role. */
  public readonly trust: AgentTrust;
  /** The role the agent assumes: inline policy only, sessions of at most an hour. */
  public readonly role: iam.Role;
  /** Its permissions (the role's one inline policy, `AgentAccess`). */
  public readonly policy: iam.PolicyDocument;

  constructor(scope: Construct, id: string, props: AgentAccessProps) {
    super(scope, id);
    const { targetId, queue, ledger, origin } = props;
    const trust = props.trust ?? DEFAULT_AGENT_TRUST;
    checkProps(targetId, trust, Stack.of(this).account);
    this.targetId = targetId;
    this.trust = trust;

    const blobs = origin.blobObjectsArn;
    this.policy = new iam.PolicyDocument({
      statements: [
        new iam.PolicyStatement({
          sid: 'OwnQueue',
          actions: AGENT_QUEUE_ACTIONS,
          resources: [queue.queueArn],
        }),
        new iam.PolicyStatement({
          sid: 'OriginBlobs',
          actions: AGENT_BLOB_ACTIONS,
          resources: [blobs],
          conditions: inOwnAccount(this),
        }),
        // IfExists: a GET carries no s3:prefix, and S3's "404 or 403" check of it must see the grant.
        new iam.PolicyStatement({
          sid: 'OriginListBlobs',
          actions: ['s3:ListBucket'],
          resources: [origin.bucket.bucketArn],
          conditions: { ...inOwnAccount(this), StringLikeIfExists: { 's3:prefix': [`${BLOB_PREFIX}*`] } },
        }),
        new iam.PolicyStatement({
          sid: 'LedgerRead',
          actions: AGENT_LEDGER_READ_ACTIONS,
          resources: [ledger.table.tableArn],
          conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': agentReadableKeys(targetId) } },
        }),
        // GetItem only: a Query of B#<sha256> would also list the uploads waiting for that blob.
        new iam.PolicyStatement({
          sid: 'LedgerReadBlobRecords',
          actions: ['dynamodb:GetItem'],
          resources: [ledger.table.tableArn],
          conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': AGENT_BLOB_RECORD_KEYS } },
        }),
        // A version and its blob record in one BatchGetItem: IAM checks every key of the request
        // against one statement's LeadingKeys, so neither statement above allows that pair alone.
        // Still reads by key only, no Query of B#<sha256>.
        new iam.PolicyStatement({
          sid: 'LedgerBatchRead',
          actions: ['dynamodb:BatchGetItem'],
          resources: [ledger.table.tableArn],
          conditions: {
            'ForAllValues:StringLike': {
              'dynamodb:LeadingKeys': [...agentReadableKeys(targetId), ...AGENT_BLOB_RECORD_KEYS],
            },
          },
        }),
        // Its own rows, and never with a secondary index's keys: such a row would be listed as a
        // live file (GET /v1/files) or read as a pending upload by both sweeps, so an agent could
        // pad every listing or stall the sweeps with rows of its own partitions.
        new iam.PolicyStatement({
          sid: 'LedgerWriteOwnRows',
          actions: AGENT_LEDGER_WRITE_ACTIONS,
          resources: [ledger.table.tableArn],
          conditions: {
            'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': agentWritableKeys(targetId) },
            'ForAllValues:StringNotEquals': { 'dynamodb:Attributes': [...ledger.indexKeyAttributes] },
          },
        }),
      ],
    });

    this.role = new iam.Role(this, 'Role', {
      description: `Assumed by the on-premises agent of pull target ${targetId} (docs/agent.md)`,
      assumedBy: trustPrincipal(trust, Stack.of(this).account),
      maxSessionDuration: AGENT_MAX_SESSION,
      inlinePolicies: { AgentAccess: this.policy },
    });
    acknowledgeWildcardResource(
      this.role,
      blobs,
      `The on-prem agent of pull target "${targetId}" downloads blobs/<sha256> of versions committed after deploy time; read-only (s3:GetObject, s3:GetObjectVersion) and limited to the blobs/ prefix of the origin bucket.`,
    );
  }
}

function checkProps(targetId: string, trust: AgentTrust, account: string): void {
  const problems: string[] = [];
  if (Token.isUnresolved(targetId) || !SAFE_TARGET_ID.test(targetId)) {
    problems.push(
      `targetId: "${targetId}" must be letters, digits and dashes (it is matched with StringLike in dynamodb:LeadingKeys)`,
    );
  }
  if (trust.kind === 'roles-anywhere') {
    problems.push(...rolesAnywhereProblems(trust));
  } else if (!Token.isUnresolved(trust.principalArn) && !PRINCIPAL_ARN.test(trust.principalArn)) {
    problems.push(
      `trust.principalArn: "${trust.principalArn}" is not the ARN of an IAM user or role (arn:aws:iam::<account>:user/<name>)`,
    );
  } else if (!Token.isUnresolved(account) && !Token.isUnresolved(trust.principalArn)) {
    const of = trust.principalArn.split(':')[4];
    if (of !== account)
      problems.push(
        `trust.principalArn: "${trust.principalArn}" is of account ${of}, not of this stack's ${account}`,
      );
  }
  if (problems.length > 0) {
    throw new Error(`invalid agent access for pull target "${targetId}":\n  ${problems.join('\n  ')}`);
  }
}

function rolesAnywhereProblems(trust: RolesAnywhereTrust): string[] {
  const problems: string[] = [];
  const anchor = trust.trustAnchorArn;
  if (anchor === undefined && trust.anyTrustAnchor !== true) {
    problems.push(
      'trust: IAM Roles Anywhere without a trust anchor would accept every CA registered in the account. Name ' +
        'one (trustAnchorArn; in the CDK context mirror:agentTrustAnchorArn), trust an IAM principal instead ' +
        '(mirror:agentPrincipalArns), or accept any anchor of the account on purpose (anyTrustAnchor; ' +
        'mirror:agentTrustAnyAnchor=true); docs/deploy.md',
    );
  }
  if (anchor !== undefined && trust.anyTrustAnchor === true) {
    problems.push('trust: a trust anchor and anyTrustAnchor both set');
  }
  if (anchor !== undefined && !Token.isUnresolved(anchor) && !TRUST_ANCHOR_ARN.test(anchor)) {
    problems.push(
      `trust.trustAnchorArn: "${anchor}" is not a trust anchor ARN (arn:aws:rolesanywhere:<region>:<account>:trust-anchor/<id>)`,
    );
  }
  const cn = trust.certificateCommonName;
  if (anchor !== undefined && cn === undefined && trust.anyCertificate !== true) {
    // A deploy that names the anchor but forgets the CNs would otherwise widen every role's trust
    // to the whole CA, silently (only `cdk diff` shows a trust policy change).
    problems.push(
      "trust: a trust anchor without a certificate CN lets every certificate its CA issues (any other server's " +
        "too) assume this role. Name this server's certificate CN (certificateCommonName; in the CDK context " +
        'mirror:agentCertificateCommonNames {"<pull target>": "<CN>"}), or accept any certificate of the ' +
        'anchor on purpose (anyCertificate; mirror:agentTrustAnyCertificate=true); docs/deploy.md',
    );
  }
  if (cn !== undefined && trust.anyCertificate === true) {
    problems.push('trust: a certificate CN and anyCertificate both set');
  }
  if (cn !== undefined && !Token.isUnresolved(cn) && (cn.trim() === '' || /[*?]/.test(cn))) {
    problems.push(`trust.certificateCommonName: "${cn}" must be a non-empty name without * or ?`);
  }
  return problems;
}

function trustPrincipal(trust: AgentTrust, account: string): iam.IPrincipal {
  // A principal of this account only: a mistyped account id, or an ARN pasted from another account,
  // must not make the role assumable from outside (AWS review 9, B6).
  if (trust.kind === 'principal')
    return new iam.ArnPrincipal(trust.principalArn).withConditions({
      StringEquals: { 'aws:PrincipalAccount': account },
    });
  const conditions: Record<string, Record<string, string>> = {};
  const equals: Record<string, string> = {};
  if (trust.trustAnchorArn !== undefined) conditions.ArnEquals = { 'aws:SourceArn': trust.trustAnchorArn };
  // Any anchor, but of this account only.
  else equals['aws:SourceAccount'] = account;
  if (trust.certificateCommonName !== undefined) {
    equals['aws:PrincipalTag/x509Subject/CN'] = trust.certificateCommonName;
  }
  if (Object.keys(equals).length > 0) conditions.StringEquals = equals;
  return new TrustStatementPrincipal(
    new iam.ServicePrincipal(ROLES_ANYWHERE_PRINCIPAL),
    ROLES_ANYWHERE_TRUST_ACTIONS,
    conditions,
  );
}

/**
 * A principal whose trust statement carries several actions and conditions in one
 * statement: Roles Anywhere needs `sts:SetSourceIdentity` besides AssumeRole and
 * TagSession, which no CDK principal adds.
 */
class TrustStatementPrincipal extends iam.PrincipalBase {
  constructor(
    private readonly inner: iam.IPrincipal,
    private readonly actions: readonly string[],
    private readonly trustConditions: iam.Conditions,
  ) {
    super();
  }

  get policyFragment(): iam.PrincipalPolicyFragment {
    return this.inner.policyFragment;
  }

  override addToAssumeRolePolicy(document: iam.PolicyDocument): void {
    document.addStatements(
      new iam.PolicyStatement({
        actions: [...this.actions],
        principals: [this.inner],
        ...(Object.keys(this.trustConditions).length > 0 ? { conditions: this.trustConditions } : {}),
      }),
    );
  }

  dedupeString(): string | undefined {
    return undefined;
  }
}
