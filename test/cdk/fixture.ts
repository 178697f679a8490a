/** Shared helpers for the CDK tests: build the app from an inline topology and read its templates. */
import type { App } from 'aws-cdk-lib';
import type { Template } from 'aws-cdk-lib/assertions';
import { AwsCustomResource } from 'aws-cdk-lib/custom-resources';
import { parseTopology, type Topology } from '../../contracts/topology.js';
import {
  AGENT_TRUST_CONTEXT,
  buildMirrorApp,
  createMirrorApp,
  type MirrorApp,
} from '../../lib/mirror-app.js';

/** A topology with two S3 targets in one region (one with a key prefix and an explicit bucket name), one elsewhere, and a pull target. */
export const TEST_TOPOLOGY_INPUT = {
  name: 'TestMirror',
  homeRegion: 'us-east-1',
  feedShards: 8,
  targets: [
    { id: 'target-a', kind: 's3', region: 'eu-west-1' },
    { id: 'target-b', kind: 's3', region: 'ap-south-1', pathPrefix: 'images/' },
    {
      id: 'target-c',
      kind: 's3',
      region: 'eu-west-1',
      bucketName: 'explicit-replica-c',
      keyPrefix: 'media/',
    },
    { id: 'onprem-dc1', kind: 'pull' },
  ],
  limits: {
    maxUploadBytes: 1073741824,
    presignTtlSeconds: 600,
    contentTypes: ['image/*', 'application/pdf'],
  },
  api: { auth: 'iam', corsOrigins: ['https://cms.example.com'] },
} as const;

export function testTopology(overrides: Record<string, unknown> = {}): Topology {
  return parseTopology({ ...TEST_TOPOLOGY_INPUT, ...overrides });
}

export interface BuildOptions {
  /** Run esbuild for every function (slow-ish); otherwise CDK stages no bundle. @default false */
  readonly bundle?: boolean;
  /** Register cdk-nag. @default true */
  readonly nag?: boolean;
}

// Templates must not depend on who runs the tests: no account from the environment.
delete process.env.CDK_DEFAULT_ACCOUNT;

/**
 * The context of the tests' apps: no bundling (an empty list makes CDK skip it in every stack, what
 * `cdk deploy <one stack>` does for the others), and agent roles that accept any trust anchor of the
 * account (the trust tests set their own).
 */
export const TEST_CONTEXT = {
  'aws:cdk:bundling-stacks': [],
  [AGENT_TRUST_CONTEXT.anyTrustAnchor]: true,
} as const;

export function buildTestApp(topology: Topology, options: BuildOptions = {}): MirrorApp {
  const { 'aws:cdk:bundling-stacks': _noBundling, ...bundled } = TEST_CONTEXT;
  const app: App = createMirrorApp({ context: options.bundle ? bundled : TEST_CONTEXT });
  return buildMirrorApp(topology, { app, nag: options.nag ?? true });
}

type Json = Record<string, unknown>;
export type Statement = {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Sid?: string;
  Condition?: unknown;
};

/** The resources of a template of one type, by logical id. */
export function resourcesOfType(template: Template, type: string): Record<string, Json> {
  return template.findResources(type) as Record<string, Json>;
}

export const props = (resource: Json): Json => (resource.Properties ?? {}) as Json;

/** The logical id of a Lambda function whose environment has `key` = `value`. */
export function functionIdsWithEnv(template: Template, key: string, value?: string): string[] {
  return Object.entries(resourcesOfType(template, 'AWS::Lambda::Function'))
    .filter(([, r]) => {
      const vars = ((props(r).Environment as Json | undefined)?.Variables ?? {}) as Json;
      return key in vars && (value === undefined || vars[key] === value);
    })
    .map(([id]) => id);
}

/** Every statement of every policy attached to a function's role. */
export function statementsOfFunction(template: Template, functionId: string): Statement[] {
  const fn = resourcesOfType(template, 'AWS::Lambda::Function')[functionId];
  if (!fn) throw new Error(`no function ${functionId}`);
  const roleId = ((props(fn).Role as Json)['Fn::GetAtt'] as string[])[0] ?? '';
  const policies = Object.values(resourcesOfType(template, 'AWS::IAM::Policy')).filter((p) =>
    ((props(p).Roles ?? []) as Json[]).some((r) => r.Ref === roleId),
  );
  const role = resourcesOfType(template, 'AWS::IAM::Role')[roleId];
  const inline = ((role && props(role).Policies) ?? []) as Json[];
  return [
    ...policies.map((p) => props(p).PolicyDocument as Json),
    ...inline.map((p) => p.PolicyDocument as Json),
  ].flatMap((doc) => doc.Statement as Statement[]);
}

export const actionsOf = (s: Statement): string[] => (Array.isArray(s.Action) ? s.Action : [s.Action]);
export const resourcesOf = (s: Statement): unknown[] =>
  Array.isArray(s.Resource) ? s.Resource : [s.Resource];

/**
 * Turns CloudFormation intrinsics into plain strings the way a deployment would,
 * with stand-ins: `Ref X` → `ref:X`, `GetAtt X.A` → `att:X.A`, `AWS::AccountId` → 123456789012.
 */
export function fakeResolve(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(fakeResolve);
  if (value && typeof value === 'object') return resolveObject(value as Json);
  return value;
}

const PSEUDO_PARAMETERS: Record<string, string> = {
  'AWS::AccountId': '123456789012',
  'AWS::Partition': 'aws',
  'AWS::Region': 'us-east-1',
  'AWS::URLSuffix': 'amazonaws.com',
};

function resolveObject(o: Json): unknown {
  if ('Ref' in o) {
    const ref = o.Ref as string;
    return Object.hasOwn(PSEUDO_PARAMETERS, ref) ? PSEUDO_PARAMETERS[ref] : `ref:${ref}`;
  }
  if ('Fn::GetAtt' in o) return `att:${(o['Fn::GetAtt'] as string[]).join('.')}`;
  if ('Fn::Join' in o) {
    const [delimiter, parts] = o['Fn::Join'] as [string, unknown[]];
    return parts.map((p) => String(fakeResolve(p))).join(delimiter);
  }
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, fakeResolve(v)]));
}

/** A function's environment as the Lambda runtime would see it (with fakeResolve's stand-ins). */
export function environmentOf(template: Template, functionId: string): Record<string, string> {
  const fn = resourcesOfType(template, 'AWS::Lambda::Function')[functionId];
  if (!fn) throw new Error(`no function ${functionId}`);
  const vars = ((props(fn).Environment as Json | undefined)?.Variables ?? {}) as Json;
  return fakeResolve(vars) as Record<string, string>;
}

/**
 * A home-stack resource named by what it is: `ledger[/index/<name>]`, `origin[/<key pattern>]`,
 * `queue:<ingest|completion|target id>`, `dlq:<ingest|completion|target id>` (its dead-letter queue), `replica:<target id>[/<key pattern>]`, `own log group`.
 * Replica buckets are recognised by testTopology's names.
 */
export function resourceName(mirror: MirrorApp, resource: string): string {
  const replica =
    /^arn:aws:s3:::(?:testmirror-(target-[a-z])-123456789012|explicit-replica-(c))(\/.*)?$/.exec(resource);
  if (replica) return `replica:${replica[1] ?? `target-${replica[2]}`}${replica[3] ?? ''}`;
  const attribute = /^att:([A-Za-z0-9]+)\.Arn(\/.*)?$/.exec(resource);
  if (!attribute) return resource;
  const [, id = '', suffix = ''] = attribute;
  if (/Logs[0-9A-F]{8}$/.test(id)) return `own log group${suffix}`;
  if (id.startsWith('LedgerTable')) return `ledger${suffix}`;
  if (id.startsWith('OriginBucket')) return `origin${suffix}`;
  // A dead-letter queue's id starts like its queue's: told apart, or a grant on it would read as one on the queue.
  const queue = /DeadLetter[0-9A-F]{8}$/.test(id) ? 'dlq' : 'queue';
  if (id.startsWith('IngestQueue')) return `${queue}:ingest${suffix}`;
  if (id.startsWith('CompletionQueue')) return `${queue}:completion${suffix}`;
  const target = mirror.home.targets.find((t) => id.startsWith(`Target${t.id.replaceAll('-', '')}Queue`));
  return target ? `${queue}:${target.id}${suffix}` : resource;
}

/**
 * A function's grants as sorted `action resource` lines (resourceName), with ` keys:<patterns>` for
 * a statement confined by `dynamodb:LeadingKeys`; every statement must Allow, with no other condition.
 */
export function grantsOf(mirror: MirrorApp, template: Template, functionId: string): string[] {
  const lines = new Set<string>();
  for (const statement of statementsOfFunction(template, functionId).map((s) =>
    withoutOwnAccount(functionId, s),
  )) {
    const keys = leadingKeysOf(statement);
    if (statement.Effect !== 'Allow' || (statement.Condition !== undefined && keys === undefined))
      throw new Error(`${functionId}: a statement that is not a plain Allow: ${JSON.stringify(statement)}`);
    for (const action of actionsOf(statement)) {
      for (const resource of resourcesOf(statement))
        lines.add(
          `${action} ${resourceName(mirror, String(fakeResolve(resource)))}${keys === undefined ? '' : ` keys:${keys}`}`,
        );
    }
  }
  return [...lines].sort();
}

/** The condition every S3 grant carries: it holds on buckets of the stack's own account only. */
export const OWN_ACCOUNT = { StringEquals: { 'aws:ResourceAccount': '123456789012' } };

/**
 * The statement without its own-account condition, which every S3 statement must carry (a bucket
 * named by a predictable name may be taken by another account once deleted: AWS review 8, A2) and
 * no other statement has; throws otherwise.
 */
export function withoutOwnAccount(owner: string, statement: Statement): Statement {
  const s3 = actionsOf(statement).some((a) => a.startsWith('s3:'));
  const condition = { ...((fakeResolve(statement.Condition) ?? {}) as Record<string, unknown>) };
  const own = JSON.stringify(condition.StringEquals) === JSON.stringify(OWN_ACCOUNT.StringEquals);
  if (s3 !== own)
    throw new Error(
      `${owner}: ${s3 ? 'an S3 grant not confined to' : 'a grant other than S3 names'} this account: ${JSON.stringify(statement)}`,
    );
  if (!own) return statement;
  delete condition.StringEquals;
  const { Condition: _dropped, ...rest } = statement;
  return Object.keys(condition).length === 0 ? rest : { ...rest, Condition: condition };
}

/** The `ForAllValues:StringLike` `dynamodb:LeadingKeys` patterns of a statement whose only condition that is. */
function leadingKeysOf(statement: Statement): string | undefined {
  const condition = statement.Condition as Record<string, Record<string, unknown>> | undefined;
  if (condition === undefined || Object.keys(condition).join() !== 'ForAllValues:StringLike')
    return undefined;
  const tests = condition['ForAllValues:StringLike'] ?? {};
  if (Object.keys(tests).join() !== 'dynamodb:LeadingKeys') return undefined;
  const patterns = tests['dynamodb:LeadingKeys'];
  return (Array.isArray(patterns) ? patterns : [patterns]).map(String).join(',');
}

/**
 * The logical id of CDK's AwsCustomResource function: one per stack (a singleton named by a fixed
 * uuid), which sets each dead-letter queue's RedriveAllowPolicy (`QueueWithDlq`). It runs CDK's
 * handler, not one of the mirror's, and the local stack has no counterpart.
 */
export function sdkCallFunctionId(template: Template): string {
  const prefix = `AWS${AwsCustomResource.PROVIDER_FUNCTION_UUID.replaceAll('-', '')}`;
  const ids = Object.keys(resourcesOfType(template, 'AWS::Lambda::Function')).filter((id) =>
    id.startsWith(prefix),
  );
  if (ids.length !== 1) throw new Error(`expected one AwsCustomResource function, found ${ids.length}`);
  return ids[0] as string;
}

/** The home stack's functions that run the mirror's own handlers (functions/handlers): all but sdkCallFunctionId's. */
export function mirrorFunctionIds(template: Template): string[] {
  const sdkCall = sdkCallFunctionId(template);
  return Object.keys(resourcesOfType(template, 'AWS::Lambda::Function')).filter((id) => id !== sdkCall);
}

/** The logical id of the home stack's function that the local stack names `name` (local/sandbox.ts). */
export function functionIdOf(template: Template, name: string): string {
  const replicate = /^replicate-(.+)$/.exec(name);
  if (replicate) {
    const ids = functionIdsWithEnv(template, 'MIRROR_TARGET_ID', replicate[1]);
    if (ids.length !== 1)
      throw new Error(`expected one replicate function for ${replicate[1]}, found ${ids.length}`);
    return ids[0] as string;
  }
  const patterns: Record<string, RegExp> = {
    api: /^ApiHandlerFunction/,
    ingest: /^IngestFunction/,
    'complete-multipart': /^Completion.*Function/,
    'lag-monitor': /LagMonitorFunction/,
    reconcile: /ReconcileFunction/,
    'pending-sweep': /^PendingSweep.*Function/,
  };
  const pattern = patterns[name];
  if (pattern === undefined) throw new Error(`no function of the home stack is called ${name}`);
  const ids = Object.keys(resourcesOfType(template, 'AWS::Lambda::Function')).filter((id) =>
    pattern.test(id),
  );
  if (ids.length !== 1) throw new Error(`expected one function matching ${pattern}, found ${ids.join(', ')}`);
  return ids[0] as string;
}

/** IAM's StringLike: `*` any run of characters, `?` one character, everything else literal. */
export const stringLike = (pattern: string, value: string): boolean =>
  new RegExp(
    `^${pattern
      .split('')
      .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
      .join('')}$`,
    's',
  ).test(value);
