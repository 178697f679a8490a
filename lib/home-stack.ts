/**
 * The home stack: origin bucket, ledger, ingest pipeline, one queue (and for S3
 * targets one replicate function) per target, the upload API, and monitoring
 * (lag monitor, reconcile, alarms, dashboard).
 */
import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import type { Topology } from '../functions/core/topology.js';
import { IngestPipeline } from './constructs/ingest-pipeline.js';
import { Ledger } from './constructs/ledger.js';
import { Monitoring, monitoringOptionsFromTopology } from './constructs/monitoring.js';
import { OriginStore } from './constructs/origin-store.js';
import { ReplicaTarget } from './constructs/replica-target.js';
import { type ApiAuth, UploadApi } from './constructs/upload-api.js';
import { type ReplicaBucketRef, settingsFromTopology } from './grants.js';
import { originBucketName, replicaBucketName } from './naming.js';

export interface HomeStackProps extends StackProps {
  readonly topology: Topology;
}

/** The API authorizer the topology asks for; throws if a JWT authorizer lacks its settings. */
export function apiAuthFromTopology(topology: Topology): ApiAuth {
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
  return { kind: 'jwt', issuer: api.jwtIssuer, audience: api.jwtAudience };
}

export class HomeStack extends Stack {
  public readonly origin: OriginStore;
  public readonly ledger: Ledger;
  /** One per topology target, in topology order. */
  public readonly targets: readonly ReplicaTarget[];
  public readonly ingest: IngestPipeline;
  public readonly api: UploadApi;
  public readonly monitoring: Monitoring;

  constructor(scope: Construct, id: string, props: HomeStackProps) {
    super(scope, id, props);
    const { topology } = props;
    const settings = settingsFromTopology(topology);
    const auth = apiAuthFromTopology(topology);

    this.origin = new OriginStore(this, 'Origin', {
      bucketName: originBucketName(topology),
      corsOrigins: topology.api.corsOrigins,
    });
    this.ledger = new Ledger(this, 'Ledger');

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
      });
    });

    this.ingest = new IngestPipeline(this, 'Ingest', {
      ledger: this.ledger,
      origin: this.origin,
      targets: this.targets,
      settings,
    });

    this.api = new UploadApi(this, 'Api', {
      ledger: this.ledger,
      origin: this.origin,
      targets: this.targets,
      settings,
      auth,
      corsOrigins: topology.api.corsOrigins,
    });

    this.monitoring = new Monitoring(this, 'Monitoring', {
      ...monitoringOptionsFromTopology(topology),
      ledger: this.ledger,
      origin: this.origin,
      targets: this.targets,
      ingest: this.ingest,
      settings,
    });

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
    new CfnOutput(this, 'IngestDeadLetterQueue', {
      description: 'ARN of the ingest dead-letter queue (source of a redrive)',
      value: this.ingest.deadLetterQueue.queueArn,
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
}
