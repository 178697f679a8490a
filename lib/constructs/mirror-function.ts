/**
 * One Lambda function of the mirror: its own role (no managed policies), its own
 * log group with a retention, bundled from `functions/handlers/<name>.ts` by a
 * local esbuild as ESM for Node 24 on ARM64.
 */
import { CfnResource, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { LAMBDA_MAIN_FIELDS, LAMBDA_REQUIRE_SHIM } from '../lambda-bundle.js';
import { type HandlerName, handlerEntry, LOCK_FILE, REPO_ROOT } from '../paths.js';

/** Lambda's cap on a function's environment variables, keys and values together: a hard quota. */
export const LAMBDA_ENVIRONMENT_BYTES = 4096;
/**
 * The longest value CloudFormation fills in at deploy time, by the type of resource a `Ref` names:
 * a queue's URL (`https://sqs.<region>.amazonaws.com/<account>/` and a generated name of at most
 * 80 characters), a bucket's name (at most 63). Anything else (a table name, an attribute, an
 * import) counts as 130 bytes, on the high side of a generated name, so a topology that passes
 * the synth fits.
 */
const DEPLOY_TIME_BYTES: Readonly<Record<string, number>> = {
  'AWS::SQS::Queue': 134,
  'AWS::S3::Bucket': 63,
};
/** CloudFormation's pseudo parameters a name may hold (a replica bucket's name holds the account). */
const PSEUDO_PARAMETER_BYTES: Readonly<Record<string, number>> = {
  'AWS::AccountId': 12,
  'AWS::Region': 14,
  'AWS::Partition': 10,
  'AWS::URLSuffix': 16,
};
const OTHER_DEPLOY_TIME_BYTES = 130;

/** Bytes a resolved CloudFormation value comes to once deployed; `typeOf` names a `Ref`'s resource type. */
function deployedBytes(value: unknown, typeOf: (logicalId: string) => string | undefined): number {
  if (typeof value === 'string') return Buffer.byteLength(value, 'utf8');
  if (typeof value === 'number' || typeof value === 'boolean') return String(value).length;
  const intrinsic = value as { 'Fn::Join'?: [string, unknown[]]; Ref?: string } | null;
  const join = intrinsic?.['Fn::Join'];
  if (join !== undefined) {
    const [separator, parts] = join;
    return (
      parts.reduce<number>((n, part) => n + deployedBytes(part, typeOf), 0) +
      separator.length * (parts.length - 1)
    );
  }
  const ref = intrinsic?.Ref;
  if (ref === undefined) return OTHER_DEPLOY_TIME_BYTES;
  const type = typeOf(ref);
  return (
    PSEUDO_PARAMETER_BYTES[ref] ??
    (type === undefined ? undefined : DEPLOY_TIME_BYTES[type]) ??
    OTHER_DEPLOY_TIME_BYTES
  );
}

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
   * What Lambda does when it sees the function invoked again by a chain of its own (Lambda → SQS →
   * Lambda): after about 16 such invocations, `TERMINATE` stops the chain (the message goes to
   * the queue's DLQ). `ALLOW` for a function that continues its own bounded work that way.
   * @default lambda.RecursiveLoop.TERMINATE
   */
  readonly recursiveLoop?: lambda.RecursiveLoop;
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
      ...(props.recursiveLoop === undefined ? {} : { recursiveLoop: props.recursiveLoop }),
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
    // Every target adds to MIRROR_TARGETS: past Lambda's 4 KB the deploy itself fails and rolls the
    // stack back, which neither the synth nor the local stack (no such limit) would show.
    this.node.addValidation({ validate: () => this.environmentProblems() });
  }

  /** The environment's size once deployed, against Lambda's 4 KB; empty when it fits. */
  private environmentProblems(): string[] {
    const cfn = this.function.node.defaultChild as lambda.CfnFunction;
    const resolved = Stack.of(this).resolve(cfn.environment) as
      | { variables?: Record<string, unknown> }
      | undefined;
    const variables = Object.entries(resolved?.variables ?? {});
    const stack = Stack.of(this);
    const types = new Map(
      stack.node
        .findAll()
        .filter(CfnResource.isCfnResource)
        .map((r) => [stack.resolve(r.logicalId) as string, r.cfnResourceType]),
    );
    const size = (value: unknown) => deployedBytes(value, (id) => types.get(id));
    const bytes = variables.reduce((n, [key, value]) => n + Buffer.byteLength(key, 'utf8') + size(value), 0);
    if (bytes <= LAMBDA_ENVIRONMENT_BYTES) return [];
    const largest = variables
      .map(([key, value]) => ({ key, bytes: size(value) }))
      .sort((a, b) => b.bytes - a.bytes)
      .slice(0, 3)
      .map((v) => `${v.key} ~${v.bytes}`)
      .join(', ');
    return [
      `the environment of ${this.node.path} would take about ${bytes} bytes once deployed; Lambda allows ${LAMBDA_ENVIRONMENT_BYTES} in all (largest: ${largest}). Fewer targets in mirror.config.json, or shorter key and path prefixes`,
    ];
  }

  /** Sets an environment variable. Prefer the `use*` helpers, which grant and set together. */
  addEnvironment(key: string, value: string): void {
    this.function.addEnvironment(key, value);
  }
}
