/**
 * The home stack: origin bucket, ledger, ingest pipeline, one queue (and for S3
 * targets one replicate function, for pull targets one agent role) per target,
 * the upload API, and monitoring (lag monitor, reconcile, alarms, dashboard).
 */
import { CfnOutput, Duration, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import type { Topology } from '../contracts/topology.js';
import { AgentAccess, type AgentTrust, DEFAULT_AGENT_TRUST } from './constructs/agent-access.js';
import { IngestPipeline } from './constructs/ingest-pipeline.js';
import { Ledger } from './constructs/ledger.js';
import { Monitoring, monitoringOptionsFromTopology } from './constructs/monitoring.js';
import { MultipartCompletion } from './constructs/multipart-completion.js';
import { OriginStore } from './constructs/origin-store.js';
import { PendingSweep } from './constructs/pending-sweep.js';
import { ReplicaTarget } from './constructs/replica-target.js';
import { type ApiAuth, UploadApi, type UploadApiProps } from './constructs/upload-api.js';
import { type MirrorSettings, type ReplicaBucketRef, settingsFromTopology } from './grants.js';
import { originBucketName, replicaBucketName } from './naming.js';

export interface HomeStackProps extends StackProps {
  readonly topology: Topology;
  /**
   * Who may assume the role of each pull target's on-prem agent.
   * @default DEFAULT_AGENT_TRUST (IAM Roles Anywhere, any trust anchor of the account)
   */
  readonly agentTrust?: AgentTrust;
  /**
   * Per pull target id, a trust that replaces `agentTrust` for that target (e.g.
   * Roles Anywhere with the CN of that server's certificate). Every key must be
   * a pull target of the topology.
   * @default - `agentTrust` for every pull target
   */
  readonly agentTrustByTarget?: Readonly<Record<string, AgentTrust>>;
  /**
   * The API stage's throttle and the api function's reserved concurrency.
   * @default - UploadApi's defaults (50 requests/s, burst 100, 25 reserved)
   */
  readonly apiLimits?: ApiLimits;
  /**
   * Deletion protection on the ledger table (see `LedgerProps.deletionProtection`).
   * @default false
   */
  readonly ledgerDeletionProtection?: boolean;
  /**
   * Who may change the origin bucket's versioning, lifecycle rules and policy besides the
   * synthesizer's CloudFormation execution role (see `OriginStoreProps.configurationPrincipalArns`).
   * @default - none besides that role
   */
  readonly originConfigurationPrincipalArns?: readonly string[];
}

/** What bounds the API: the stage's throttle and the api function's reserved concurrency. */
export type ApiLimits = Pick<
  UploadApiProps,
  'throttleRateLimit' | 'throttleBurstLimit' | 'reservedConcurrency'
>;

/** The agent trust of each pull target; throws if `byTarget` names something that is not one. */
function agentTrustOfTargets(
  topology: Topology,
  trust: AgentTrust = DEFAULT_AGENT_TRUST,
  byTarget: Readonly<Record<string, AgentTrust>> = {},
): Map<string, AgentTrust> {
  const pull = topology.targets.filter((t) => t.kind === 'pull').map((t) => t.id);
  const unknown = Object.keys(byTarget).filter((id) => !pull.includes(id));
  if (unknown.length > 0) {
    throw new Error(
      `invalid agent trust: ${unknown.map((id) => `"${id}"`).join(', ')} is not a pull target (pull targets: ${pull.join(', ') || 'none'})`,
    );
  }
  return new Map(pull.map((id) => [id, byTarget[id] ?? trust]));
}

/** The API authorizer the topology asks for; throws if a JWT authorizer lacks its settings. */
function apiAuthFromTopology(topology: Topology): ApiAuth {
  const { api } = topology;
  if (api.auth === 'iam') return { kind: 'iam' };
  const problems: string[] = [];
  if (!api.jwtIssuer) problems.push('api.jwtIssuer: required when api.auth is "jwt"');
  if (!api.jwtAudience || api.jwtAudience.length === 0) {
    problems.push(
      'api.jwtAudience: required when api.auth is "jwt" (API Gateway JWT authorizers need at least one audience)',
    );
  }
  if (problems.length > 0 || !api.jwtIssuer || !api.jwtAudience) {
    throw new Error(`invalid topology for the CDK app:\n  ${problems.join('\n  ')}`);
  }
  return { kind: 'jwt', issuer: api.jwtIssuer, audience: api.jwtAudience, scopes: api.jwtScopes };
}

export class HomeStack extends Stack {
  public readonly origin: OriginStore;
  public readonly ledger: Ledger;
  /** One per topology target, in topology order. */
  public readonly targets: readonly ReplicaTarget[];
  /** The role of each pull target's on-prem agent, by target id, in topology order. */
  public readonly agentAccess: ReadonlyMap<string, AgentAccess>;
  public readonly ingest: IngestPipeline;
  /** Re-sends the S3 event of pending uploads whose bytes are stored (lost notifications). */
  public readonly pendingSweep: PendingSweep;
  /** Runs S3's CompleteMultipartUpload for the completions the API queues. */
  public readonly completion: MultipartCompletion;
  public readonly api: UploadApi;
  public readonly monitoring: Monitoring;

  constructor(scope: Construct, id: string, props: HomeStackProps) {
    super(scope, id, props);
    const { topology } = props;
    const settings = settingsFromTopology(topology);
    const auth = apiAuthFromTopology(topology);
    const agentTrust = agentTrustOfTargets(topology, props.agentTrust, props.agentTrustByTarget);

    this.origin = new OriginStore(this, 'Origin', {
      bucketName: originBucketName(topology),
      corsOrigins: topology.api.corsOrigins,
      maxPresignedUrlAge: Duration.seconds(topology.limits.presignTtlSeconds),
      configurationPrincipalArns: props.originConfigurationPrincipalArns,
    });
    this.ledger = new Ledger(this, 'Ledger', {
      deletionProtection: props.ledgerDeletionProtection ?? false,
    });

    this.targets = topology.targets.map((target) => {
      const bucket: ReplicaBucketRef | undefined =
        target.kind === 's3'
          ? {
              bucketName: replicaBucketName(topology, target),
              region: target.region,
              keyPrefix: target.keyPrefix,
            }
          : undefined;
      return new ReplicaTarget(this, `Target-${target.id}`, {
        target,
        bucket,
        ledger: this.ledger,
        origin: this.origin,
        settings,
        maxConcurrency: target.kind === 's3' ? target.maxConcurrency : undefined,
      });
    });

    const agentAccess = new Map<string, AgentAccess>();
    for (const target of this.targets) {
      if (target.kind !== 'pull') continue;
      agentAccess.set(
        target.id,
        new AgentAccess(this, `AgentAccess-${target.id}`, {
          targetId: target.id,
          queue: target.queue,
          ledger: this.ledger,
          origin: this.origin,
          trust: agentTrust.get(target.id),
        }),
      );
    }
    this.agentAccess = agentAccess;

    this.ingest = new IngestPipeline(this, 'Ingest', {
      ledger: this.ledger,
      origin: this.origin,
      targets: this.targets,
      settings,
      maxConcurrency: topology.ingest.maxConcurrency,
    });
    this.origin.allowVersionDeletesOnlyTo(this.ingest.ingest.role);

    this.completion = new MultipartCompletion(this, 'Completion', {
      ledger: this.ledger,
      origin: this.origin,
    });

    this.pendingSweep = new PendingSweep(this, 'PendingSweep', {
      ledger: this.ledger,
      origin: this.origin,
      ingestQueue: this.ingest.queue,
      completionQueue: this.completion.queue,
    });

    this.api = new UploadApi(this, 'Api', {
      ledger: this.ledger,
      origin: this.origin,
      completionQueue: this.completion.queue,
      targets: this.targets,
      settings,
      auth,
      corsOrigins: topology.api.corsOrigins,
      ...props.apiLimits,
    });

    this.monitoring = this.createMonitoring(topology, settings);

    new CfnOutput(this, 'ApiUrl', { description: 'Base URL of the upload API', value: this.api.url });
    new CfnOutput(this, 'OriginBucket', {
      description: 'Origin bucket',
      value: this.origin.bucket.bucketName,
    });
    new CfnOutput(this, 'LedgerTable', { description: 'Ledger table', value: this.ledger.table.tableName });
    for (const target of this.targets) {
      new CfnOutput(this, `TargetQueue-${target.id}`, {
        description: `FIFO queue of target ${target.id} (${target.kind})`,
        value: target.queue.queueUrl,
      });
      new CfnOutput(this, `TargetDeadLetterQueue-${target.id}`, {
        description: `ARN of the dead-letter queue of target ${target.id} (source of a redrive)`,
        value: target.deadLetterQueue.queueArn,
      });
    }
    for (const agent of this.agentAccess.values()) {
      new CfnOutput(this, `AgentRole-${agent.targetId}`, {
        description: `ARN of the IAM role the on-prem agent of pull target ${agent.targetId} assumes (${
          agent.trust.kind === 'roles-anywhere' ? 'IAM Roles Anywhere' : 'from its IAM principal'
        })`,
        value: agent.role.roleArn,
      });
    }
    new CfnOutput(this, 'IngestDeadLetterQueue', {
      description: 'ARN of the ingest dead-letter queue (source of a redrive)',
      value: this.ingest.deadLetterQueue.queueArn,
    });
    new CfnOutput(this, 'CompletionDeadLetterQueue', {
      description: 'ARN of the multipart completion dead-letter queue (source of a redrive)',
      value: this.completion.deadLetterQueue.queueArn,
    });
    new CfnOutput(this, 'ReconcileFunction', {
      description: 'Reconcile function: invoke with {"targetIds": [...], "dryRun": true} to run it on demand',
      value: this.monitoring.reconciler.function.functionName,
    });
    new CfnOutput(this, 'Dashboard', {
      description: 'CloudWatch dashboard: lag per target, backlog, failures',
      value: this.monitoring.dashboard.dashboardName,
    });
    if (this.monitoring.topic) {
      new CfnOutput(this, 'AlarmTopic', {
        description: 'SNS topic every alarm notifies',
        value: this.monitoring.topic.topicArn,
      });
    }
  }

  /** Alarms, dashboard, lag monitor and reconcile over what the constructor built. */
  private createMonitoring(topology: Topology, settings: MirrorSettings): Monitoring {
    return new Monitoring(this, 'Monitoring', {
      ...monitoringOptionsFromTopology(topology),
      ledger: this.ledger,
      origin: this.origin,
      targets: this.targets,
      ingest: this.ingest,
      api: { httpApi: this.api.httpApi, function: this.api.handler.function },
      completionDeadLetterQueue: this.completion.deadLetterQueue,
      pendingSweep: { function: this.pendingSweep.sweeper.function, interval: this.pendingSweep.interval },
      settings,
    });
  }
}
