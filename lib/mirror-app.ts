/**
 * Builds the whole CDK app from a topology: the home stack in `homeRegion` and
 * one replica stack per distinct S3 target region, checked by cdk-nag.
 */
import { Annotations, App, type AppProps, Tags, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { apiRateProblem, apiThrottle, type Topology } from '../contracts/topology.js';
import type { AgentTrust } from './constructs/agent-access.js';
import { type ApiLimits, HomeStack } from './home-stack.js';
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
  /**
   * Who may assume each pull target's agent role (see `HomeStackProps`).
   * @default - from the app's context (`agentTrustFromContext`)
   */
  readonly agentTrust?: AgentTrust;
  /**
   * Per pull target, a trust replacing `agentTrust`.
   * @default - from the app's context (`agentTrustFromContext`)
   */
  readonly agentTrustByTarget?: Readonly<Record<string, AgentTrust>>;
  /**
   * The API stage's throttle and the api function's reserved concurrency.
   * @default - the topology's `api` settings (`apiLimitsOf`), each overridden by the app's context
   */
  readonly apiLimits?: ApiLimits;
  /**
   * Deletion protection on the ledger table: turn it on once the first deploy has succeeded.
   * @default - the context key `mirror:ledgerDeletionProtection` (`true`/`false`), else false
   */
  readonly ledgerDeletionProtection?: boolean;
  /**
   * CloudFormation termination protection on every stack: turn it on once the first deploy has
   * succeeded (the CDK CLI deletes a first deploy that rolled back before it retries, which a
   * protected stack refuses).
   * @default - the context key `mirror:terminationProtection` (`true`/`false`), else false
   */
  readonly terminationProtection?: boolean;
  /**
   * Who may change the origin bucket's versioning, lifecycle rules and policy besides the
   * synthesizer's CloudFormation execution role: the role of `cdk deploy --role-arn`, or the
   * deploying identity with a synthesizer that names no role (`HomeStackProps`).
   * @default - the context key `mirror:originConfigurationPrincipalArns`, else none
   */
  readonly originConfigurationPrincipalArns?: readonly string[];
}

/** Context key (`-c mirror:ledgerDeletionProtection=true`) that turns on the ledger's deletion protection. */
export const LEDGER_DELETION_PROTECTION_CONTEXT = 'mirror:ledgerDeletionProtection';
/** Context key (`-c mirror:terminationProtection=true`) that turns on every stack's termination protection. */
export const TERMINATION_PROTECTION_CONTEXT = 'mirror:terminationProtection';

/**
 * Context key: IAM role or user ARNs (a JSON array in cdk.json; `-c` takes them comma-separated)
 * that may change the origin bucket's versioning, lifecycle rules and policy besides the
 * synthesizer's CloudFormation execution role.
 */
export const ORIGIN_CONFIGURATION_PRINCIPALS_CONTEXT = 'mirror:originConfigurationPrincipalArns';

/** The extra principals of the origin's configuration from the app's context; absent is none. */
export function originConfigurationPrincipalsFromContext(app: App): string[] {
  const value: unknown = app.node.tryGetContext(ORIGIN_CONFIGURATION_PRINCIPALS_CONTEXT);
  if (value === undefined) return [];
  const arns =
    typeof value === 'string'
      ? value
          .split(',')
          .map((a) => a.trim())
          .filter((a) => a !== '')
      : value;
  // A typo here is a deploy role denied its own stack's updates, found only at the next deploy.
  const iamPrincipal = /^arn:[a-z*?-]+:iam::[0-9*?]*:(role|user)\/.+|^arn:[a-z*?-]+:iam::[0-9]{12}:root$/;
  if (
    !Array.isArray(arns) ||
    arns.length === 0 ||
    arns.some((a) => typeof a !== 'string' || !iamPrincipal.test(a))
  ) {
    throw new Error(
      `invalid ${ORIGIN_CONFIGURATION_PRINCIPALS_CONTEXT} in the CDK context: expected IAM role or user ARNs ` +
        `(arn:<partition>:iam::<account>:role/<name>), comma-separated or a JSON array, got ${JSON.stringify(value)}`,
    );
  }
  return arns as string[];
}

/** A true/false context key: a boolean, or its text (`-c` gives strings); absent is false. */
function booleanFromContext(app: App, key: string): boolean {
  const value: unknown = app.node.tryGetContext(key);
  if (value === undefined || value === false || value === 'false') return false;
  if (value === true || value === 'true') return true;
  throw new Error(`invalid ${key} in the CDK context: expected true or false, got ${JSON.stringify(value)}`);
}

/** The ledger's deletion protection from the app's context. */
export function ledgerDeletionProtectionFromContext(app: App): boolean {
  return booleanFromContext(app, LEDGER_DELETION_PROTECTION_CONTEXT);
}

/** Every stack's termination protection from the app's context. */
export function terminationProtectionFromContext(app: App): boolean {
  return booleanFromContext(app, TERMINATION_PROTECTION_CONTEXT);
}

/**
 * Context keys (cdk.json, or `-c key=value`) that override the topology's `api` limits for one
 * deploy; each one absent keeps the topology's. `mirror:apiReservedConcurrency=none` reserves
 * nothing (an account whose concurrency quota is too low to reserve any).
 */
export const API_LIMITS_CONTEXT = {
  throttleRateLimit: 'mirror:apiThrottleRateLimit',
  throttleBurstLimit: 'mirror:apiThrottleBurstLimit',
  reservedConcurrency: 'mirror:apiReservedConcurrency',
} as const satisfies Record<keyof ApiLimits, string>;

/** The API's limits from the app's context: numbers, or their text (`-c` gives strings). */
export function apiLimitsFromContext(app: App): ApiLimits {
  const limits: Record<string, number | false> = {};
  const problems: string[] = [];
  for (const [prop, key] of Object.entries(API_LIMITS_CONTEXT)) {
    const value: unknown = app.node.tryGetContext(key);
    if (value === undefined) continue;
    if (prop === 'reservedConcurrency' && value === 'none') {
      limits[prop] = false;
      continue;
    }
    const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
    if (typeof n !== 'number' || !Number.isFinite(n) || n <= 0) {
      problems.push(`${key}: expected a positive number, got ${JSON.stringify(value)}`);
      continue;
    }
    limits[prop] = n;
  }
  if (problems.length > 0)
    throw new Error(`invalid API limits in the CDK context:\n  ${problems.join('\n  ')}`);
  return limits;
}

/**
 * The API's limits: the topology's `api` settings (defaults derived from its `limits`), overridden
 * key by key by the app's context. A rate that cannot carry the largest upload is refused whichever
 * one gave it.
 */
export function apiLimitsOf(topology: Topology, app: App): ApiLimits {
  const fromTopology = apiThrottle(topology);
  const fromContext = apiLimitsFromContext(app);
  const contextRate = fromContext.throttleRateLimit;
  // A burst the topology does not set follows a rate given on the command line.
  const burstOfContextRate =
    contextRate !== undefined && topology.api.throttleBurstLimit === undefined
      ? { throttleBurstLimit: Math.ceil(2 * contextRate) }
      : {};
  const limits: ApiLimits = {
    throttleRateLimit: fromTopology.rateLimit,
    throttleBurstLimit: fromTopology.burstLimit,
    ...(fromTopology.reservedConcurrency === undefined
      ? {}
      : { reservedConcurrency: fromTopology.reservedConcurrency }),
    ...burstOfContextRate,
    ...fromContext,
  };
  const problem = apiRateProblem(topology.limits, limits.throttleRateLimit);
  if (problem !== undefined) {
    throw new Error(
      `invalid API limits in the CDK context:\n  ${API_LIMITS_CONTEXT.throttleRateLimit}: ${problem}`,
    );
  }
  return limits;
}

/** Context keys (cdk.json, or `-c key=value` with a JSON object) that set the agents' trust. */
export const AGENT_TRUST_CONTEXT = {
  /** One Roles Anywhere trust anchor ARN every agent role requires (`aws:SourceArn`). */
  trustAnchorArn: 'mirror:agentTrustAnchorArn',
  /**
   * `true`: without a trust anchor, accept any of this account's anchors on purpose (a first try).
   * Without it, and without an anchor, a Roles Anywhere trust fails the synth.
   */
  anyTrustAnchor: 'mirror:agentTrustAnyAnchor',
  /** `{ "<pull target>": "<certificate CN>" }`: the one certificate subject each agent role accepts. */
  certificateCommonNames: 'mirror:agentCertificateCommonNames',
  /**
   * `true`: with a trust anchor, a pull target without a CN accepts every certificate of that
   * anchor, on purpose. Without it such a target fails the synth.
   */
  anyCertificate: 'mirror:agentTrustAnyCertificate',
  /** `{ "<pull target>": "<IAM user or role ARN>" }`: these targets trust that principal instead of Roles Anywhere. */
  principalArns: 'mirror:agentPrincipalArns',
} as const;

/**
 * The agents' trust from the app's context: Roles Anywhere by default, limited
 * to `mirror:agentTrustAnchorArn` and, per target, to a certificate CN; a target
 * listed in `mirror:agentPrincipalArns` trusts that IAM principal instead.
 */
export function agentTrustFromContext(app: App): {
  agentTrust: AgentTrust;
  agentTrustByTarget: Record<string, AgentTrust>;
} {
  const problems: string[] = [];
  const anchor = app.node.tryGetContext(AGENT_TRUST_CONTEXT.trustAnchorArn);
  if (anchor !== undefined && typeof anchor !== 'string') {
    problems.push(`${AGENT_TRUST_CONTEXT.trustAnchorArn}: must be a string (a trust anchor ARN)`);
  }
  const anyTrustAnchor = contextFlag(app, AGENT_TRUST_CONTEXT.anyTrustAnchor, problems);
  const anyCertificate = contextFlag(app, AGENT_TRUST_CONTEXT.anyCertificate, problems);
  if (anchor !== undefined && anyTrustAnchor) {
    problems.push(
      `${AGENT_TRUST_CONTEXT.trustAnchorArn} and ${AGENT_TRUST_CONTEXT.anyTrustAnchor}: set one, not both`,
    );
  }
  const names = contextMap(app, AGENT_TRUST_CONTEXT.certificateCommonNames, problems);
  const principals = contextMap(app, AGENT_TRUST_CONTEXT.principalArns, problems);
  for (const id of Object.keys(names)) {
    if (id in principals) problems.push(`pull target "${id}": a certificate CN and a principal ARN both set`);
  }
  if (problems.length > 0)
    throw new Error(`invalid agent trust in the CDK context:\n  ${problems.join('\n  ')}`);

  const trustAnchorArn = typeof anchor === 'string' ? anchor : undefined;
  const rolesAnywhere = (certificateCommonName?: string): AgentTrust => ({
    kind: 'roles-anywhere',
    ...(trustAnchorArn === undefined ? {} : { trustAnchorArn }),
    ...(anyTrustAnchor ? { anyTrustAnchor } : {}),
    ...(certificateCommonName === undefined ? {} : { certificateCommonName }),
    ...(anyCertificate && certificateCommonName === undefined ? { anyCertificate } : {}),
  });
  const agentTrustByTarget: Record<string, AgentTrust> = {};
  for (const [id, cn] of Object.entries(names)) agentTrustByTarget[id] = rolesAnywhere(cn);
  for (const [id, principalArn] of Object.entries(principals)) {
    agentTrustByTarget[id] = { kind: 'principal', principalArn };
  }
  return { agentTrust: rolesAnywhere(), agentTrustByTarget };
}

/** A true/false context value (a boolean in cdk.json, its text from `-c`); absent is false. */
function contextFlag(app: App, key: string, problems: string[]): boolean {
  const value: unknown = app.node.tryGetContext(key);
  if (value !== undefined && ![true, 'true', false, 'false'].includes(value as string)) {
    problems.push(`${key}: must be true or false`);
  }
  return value === true || value === 'true';
}

/** A context value that maps target ids to strings: an object (cdk.json) or its JSON text (`-c`). */
function contextMap(app: App, key: string, problems: string[]): Record<string, string> {
  let value: unknown = app.node.tryGetContext(key);
  if (value === undefined) return {};
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value);
    } catch {
      problems.push(`${key}: not JSON (expected {"<pull target>": "<value>"})`);
      return {};
    }
  }
  if (
    typeof value !== 'object' ||
    value === null ||
    Array.isArray(value) ||
    Object.values(value).some((v) => typeof v !== 'string')
  ) {
    problems.push(`${key}: expected an object of strings, {"<pull target>": "<value>"}`);
    return {};
  }
  return value as Record<string, string>;
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

  const terminationProtection = options.terminationProtection ?? terminationProtectionFromContext(app);
  const replicas = new Map<string, ReplicaStack>();
  for (const region of replicaRegions(topology)) {
    const name = replicaStackName(topology, region);
    replicas.set(
      region,
      new ReplicaStack(app, name, {
        stackName: name,
        description: `Media Mirror ${topology.name}: replica buckets in ${region}`,
        env: { account, region },
        terminationProtection,
        topology,
        targets: s3Targets(topology).filter((t) => t.region === region),
      }),
    );
  }

  const ledgerDeletionProtection =
    options.ledgerDeletionProtection ?? ledgerDeletionProtectionFromContext(app);
  const fromContext =
    options.agentTrust === undefined || options.agentTrustByTarget === undefined
      ? agentTrustFromContext(app)
      : undefined;
  const homeName = homeStackName(topology);
  const home = new HomeStack(app, homeName, {
    stackName: homeName,
    description: `Media Mirror ${topology.name}: origin, ledger, ingest, targets, agent roles, API and alarms`,
    env: { account, region: topology.homeRegion },
    topology,
    agentTrust: options.agentTrust ?? fromContext?.agentTrust,
    agentTrustByTarget: options.agentTrustByTarget ?? fromContext?.agentTrustByTarget,
    apiLimits: options.apiLimits ?? apiLimitsOf(topology, app),
    ledgerDeletionProtection,
    terminationProtection,
    originConfigurationPrincipalArns:
      options.originConfigurationPrincipalArns ?? originConfigurationPrincipalsFromContext(app),
  });
  warnIfUnprotected(home, ledgerDeletionProtection, terminationProtection);
  warnOfLocalOrigins(home, topology.api.corsOrigins);
  warnOfAnyTrustAnchor(home);
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

/** Off by default only because a first deploy that rolls back must be deletable (docs/deploy.md). */
function warnIfUnprotected(
  home: HomeStack,
  ledgerDeletionProtection: boolean,
  terminationProtection: boolean,
): void {
  const unprotected = [
    ...(ledgerDeletionProtection ? [] : [`${LEDGER_DELETION_PROTECTION_CONTEXT}=true`]),
    ...(terminationProtection ? [] : [`${TERMINATION_PROTECTION_CONTEXT}=true`]),
  ];
  if (unprotected.length === 0) return;
  Annotations.of(home).addWarningV2(
    'mirror:unprotected',
    `Not protected against deletion: once the first deploy has succeeded, deploy with ${unprotected
      .map((k) => `-c ${k}`)
      .join(
        ' ',
      )} and keep ${unprotected.length > 1 ? 'them' : 'it'} under "context" in cdk.json (docs/deploy.md, step 6).`,
  );
}

/**
 * `mirror:agentTrustAnyAnchor=true` is for a first try: each agent role then trusts every CA
 * registered in the account for IAM Roles Anywhere, and every certificate any of them issues. Kept
 * in cdk.json, it would reach production in silence (AWS review 8, A3).
 */
function warnOfAnyTrustAnchor(home: HomeStack): void {
  const open = [...home.agentAccess.values()]
    .filter((a) => a.trust.kind === 'roles-anywhere' && a.trust.anyTrustAnchor === true)
    .map((a) => a.targetId);
  if (open.length === 0) return;
  Annotations.of(home).addWarningV2(
    'mirror:agentTrustAnyAnchor',
    `The agent roles of ${open.join(', ')} trust any trust anchor of the account (${AGENT_TRUST_CONTEXT.anyTrustAnchor}=true): ` +
      `every CA registered for IAM Roles Anywhere, and every certificate it issues, may assume them. Before production, ` +
      `name the anchor (-c ${AGENT_TRUST_CONTEXT.trustAnchorArn}=<arn>) and each server's certificate CN ` +
      `(-c ${AGENT_TRUST_CONTEXT.certificateCommonNames}='{"<pull target>":"<CN>"}'), docs/deploy.md.`,
  );
}

/**
 * The shipped topology lets the local page (http://localhost:8787) call the API; deployed, those
 * origins are of no use to your web app (its own origin is missing) and let any page on a user's
 * machine use the API's CORS grant.
 */
function warnOfLocalOrigins(home: HomeStack, origins: readonly string[]): void {
  if (origins.includes('*')) {
    Annotations.of(home).addWarningV2(
      'mirror:anyCorsOrigin',
      "api.corsOrigins allows any origin ('*'): any web page a user opens can call the deployed API and " +
        "PUT to the buckets with the credentials or token it is given. List your web app's https:// origin instead (docs/deploy.md).",
    );
  }
  const local = origins.filter((o) => {
    if (o === '*') return false;
    try {
      const url = new URL(o);
      return url.protocol !== 'https:' || ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname);
    } catch {
      return true;
    }
  });
  if (local.length === 0) return;
  Annotations.of(home).addWarningV2(
    'mirror:localCorsOrigins',
    `api.corsOrigins allows ${local.join(', ')} (plain HTTP or this machine: the local stack's page) on the deployed ` +
      "API and buckets: list your web app's https:// origin instead, in a topology of its own (-c mirror:configFile=..., docs/deploy.md).",
  );
}
