/**
 * One Lambda function of the mirror: its own role (no managed policies), its own
 * log group with a retention, bundled from `functions/handlers/<name>.ts` by a
 * local esbuild as ESM for Node 24 on ARM64.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { LAMBDA_MAIN_FIELDS, LAMBDA_REQUIRE_SHIM } from '../lambda-bundle.js';
import { type HandlerName, handlerEntry, LOCK_FILE, REPO_ROOT } from '../paths.js';

/** Lambda's newest Node.js runtime (cdk-nag AwsSolutions-L1 wants the latest). */
export const NODE_RUNTIME: lambda.Runtime = lambda.Runtime.NODEJS_24_X;

export interface MirrorFunctionProps {
  /** Which handler in `functions/handlers/` to bundle. */
  readonly handler: HandlerName;
  /** What the function does, shown in the console. */
  readonly description: string;
  /**
   * Function timeout.
   * @default Duration.seconds(30)
   */
  readonly timeout?: Duration;
  /**
   * Memory, in MiB (CPU and network bandwidth scale with it).
   * @default 512
   */
  readonly memorySize?: number;
  /**
   * Concurrent executions reserved for this function (and the most it may run at once).
   * @default - none reserved: it shares the account's unreserved pool
   */
  readonly reservedConcurrency?: number;
  /**
   * How long the function's logs are kept.
   * @default logs.RetentionDays.THREE_MONTHS
   */
  readonly logRetention?: logs.RetentionDays;
  /**
   * What happens to the log group when the stack is deleted.
   * @default RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE
   */
  readonly logRemovalPolicy?: RemovalPolicy;
}

export class MirrorFunction extends Construct {
  /** The Lambda function. */
  public readonly function: NodejsFunction;
  /** Its execution role: only what the `use*` helpers in `lib/grants.ts` grant, plus writing its own logs. */
  public readonly role: iam.Role;
  /** Its log group. */
  public readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: MirrorFunctionProps) {
    super(scope, id);
    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetention ?? logs.RetentionDays.THREE_MONTHS,
      removalPolicy: props.logRemovalPolicy ?? RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
    });
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Execution role of the ${props.handler} function (${props.description})`,
    });
    // Instead of AWSLambdaBasicExecutionRole (logs:* on every log group): this log group only.
    this.logGroup.grantWrite(this.role);

    this.function = new NodejsFunction(this, 'Function', {
      entry: handlerEntry(props.handler),
      handler: 'handler',
      description: props.description,
      runtime: NODE_RUNTIME,
      architecture: lambda.Architecture.ARM_64,
      timeout: props.timeout ?? Duration.seconds(30),
      memorySize: props.memorySize ?? 512,
      ...(props.reservedConcurrency === undefined
        ? {}
        : { reservedConcurrentExecutions: props.reservedConcurrency }),
      role: this.role,
      logGroup: this.logGroup,
      projectRoot: REPO_ROOT,
      depsLockFilePath: LOCK_FILE,
      environment: { NODE_OPTIONS: '--enable-source-maps' },
      bundling: {
        format: OutputFormat.ESM,
        mainFields: [...LAMBDA_MAIN_FIELDS],
        banner: LAMBDA_REQUIRE_SHIM,
        minify: true,
        sourceMap: true,
        sourcesContent: false,
        // Bundle the pinned AWS SDK: presigning behaviour depends on its exact version (docs/platform.md).
        bundleAwsSDK: true,
        externalModules: [],
        forceDockerBundling: false,
      },
    });
  }

  /** Sets an environment variable. Prefer the `use*` helpers, which grant and set together. */
  addEnvironment(key: string, value: string): void {
    this.function.addEnvironment(key, value);
  }
}
