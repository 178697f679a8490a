/**
 * Builds the whole CDK app from a topology: the home stack in `homeRegion` and
 * one replica stack per distinct S3 target region, checked by cdk-nag.
 */
import { App, type AppProps, Tags, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { Topology } from '../functions/core/topology.js';
import { HomeStack } from './home-stack.js';
import { checkNames, homeStackName, replicaRegions, replicaStackName, s3Targets } from './naming.js';
import { ReplicaStack } from './replica-stack.js';

/**
 * Feature flags the constructs rely on (cdk.json sets none). Context given on
 * the command line or in cdk.json still wins.
 */
export const FEATURE_FLAGS: Readonly<Record<string, unknown>> = {
  // Access-log delivery through a bucket policy, not the legacy ACL.
  '@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy': true,
  '@aws-cdk/aws-s3:createDefaultLoggingPolicy': true,
  '@aws-cdk/aws-iam:minimizePolicies': true,
  '@aws-cdk/core:enablePartitionLiterals': true,
  '@aws-cdk/core:explicitStackTags': true,
};

/** A new App with the mirror's feature flags. */
export function createMirrorApp(props: AppProps = {}): App {
  return new App({ ...props, context: { ...FEATURE_FLAGS, ...props.context } });
}

export interface MirrorAppOptions {
  /**
   * The app to add the stacks to.
   * @default createMirrorApp()
   */
  readonly app?: App;
  /**
   * Account of every stack. Without one the stacks are account-agnostic
   * (synth needs no credentials) and still deployable: names use AWS::AccountId.
   * @default process.env.CDK_DEFAULT_ACCOUNT
   */
  readonly account?: string;
  /**
   * Register cdk-nag's AwsSolutions checks (errors fail the synth).
   * @default true
   */
  readonly nag?: boolean;
}

export interface MirrorApp {
  readonly app: App;
  readonly home: HomeStack;
  /** Replica stacks by region. */
  readonly replicas: ReadonlyMap<string, ReplicaStack>;
  /** The cdk-nag pack registered on the app (undefined when `nag: false`). */
  readonly nag?: AwsSolutionsChecks;
}

export function buildMirrorApp(topology: Topology, options: MirrorAppOptions = {}): MirrorApp {
  checkNames(topology);
  const app = options.app ?? createMirrorApp();
  const account = options.account ?? process.env.CDK_DEFAULT_ACCOUNT;

  const replicas = new Map<string, ReplicaStack>();
  for (const region of replicaRegions(topology)) {
    const name = replicaStackName(topology, region);
    replicas.set(
      region,
      new ReplicaStack(app, name, {
        stackName: name,
        description: `Media Mirror ${topology.name}: replica buckets in ${region}`,
        env: { account, region },
        topology,
        targets: s3Targets(topology).filter((t) => t.region === region),
      }),
    );
  }

  const homeName = homeStackName(topology);
  const home = new HomeStack(app, homeName, {
    stackName: homeName,
    description: `Media Mirror ${topology.name}: origin, ledger, ingest, targets, API and alarms`,
    env: { account, region: topology.homeRegion },
    topology,
  });
  for (const replica of replicas.values()) {
    home.addStackDependency(replica, 'the replicate functions write to the replica buckets');
  }

  Tags.of(app).add('project', 'media-mirror');
  Tags.of(app).add('mirror', topology.name);

  let nag: AwsSolutionsChecks | undefined;
  if (options.nag ?? true) {
    nag = new AwsSolutionsChecks(app);
    Validations.of(app).addPlugins(nag);
  }
  return { app, home, replicas, nag };
}
