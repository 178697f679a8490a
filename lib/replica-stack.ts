/** One stack per region that holds S3 targets: their replica buckets and a log bucket. */
import { CfnOutput, Duration, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import type { S3TargetConfig, Topology } from '../contracts/topology.js';
import { AccessLogBucket } from './constructs/access-log-bucket.js';
import { ReplicaBucket } from './constructs/replica-bucket.js';
import { replicaBucketName } from './naming.js';

export interface ReplicaStackProps extends StackProps {
  readonly topology: Topology;
  /** The S3 targets whose buckets live in this stack's region. */
  readonly targets: readonly S3TargetConfig[];
}

export class ReplicaStack extends Stack {
  /** The region's access log bucket. */
  public readonly accessLogs: AccessLogBucket;
  /** Replica buckets by target id. */
  public readonly buckets: ReadonlyMap<string, ReplicaBucket>;

  constructor(scope: Construct, id: string, props: ReplicaStackProps) {
    super(scope, id, props);
    this.accessLogs = new AccessLogBucket(this, 'AccessLogs');
    const buckets = new Map<string, ReplicaBucket>();
    for (const target of props.targets) {
      const replica = new ReplicaBucket(this, `Replica-${target.id}`, {
        bucketName: replicaBucketName(props.topology, target),
        accessLogsBucket: this.accessLogs.bucket,
        accessLogsPrefix: `${target.id}/`,
        corsOrigins: props.topology.api.corsOrigins,
        maxPresignedUrlAge: Duration.seconds(props.topology.limits.presignTtlSeconds),
      });
      buckets.set(target.id, replica);
      new CfnOutput(this, `ReplicaBucket-${target.id}`, {
        description: `Replica bucket of target ${target.id}`,
        value: replica.bucket.bucketName,
      });
    }
    this.buckets = buckets;
  }
}
