/**
 * Each function's IAM policy in the CDK app grants every AWS call its code makes. The local stack
 * runs the same topology as the CDK tests (test/cdk/fixture.ts); its emulators record, per
 * function, each action and resource they are asked for (sandbox `observeCalls`,
 * local/observed-calls.ts: a transaction's elements by their own actions, a copy's read of its
 * source, the event-source mapping's polling under the function's name); and every one must be
 * in that function's grants in the synthesized home stack. A call added to a handler without its
 * grant (last seen: the ConditionCheckItem of a commit's folder checks) fails here, where on AWS
 * it would be an AccessDenied in production.
 *
 * The pull target's agent is checked the same way against its role (lib/constructs/agent-access.ts),
 * conditions included: each ledger request's partition key must pass the role's
 * `dynamodb:LeadingKeys` patterns, and each write name none of the attributes its
 * `dynamodb:Attributes` condition refuses (the secondary indexes' keys).
 *
 * Not covered: requests signed by presigned URLs (the browser's user agent names no function).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Template } from 'aws-cdk-lib/assertions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentAppId } from '../../agent/aws.ts';
import type { ObservedCall } from '../../local/observed-calls.ts';
import { LOCAL_NAMES } from '../../local/resources.ts';
import type { Sandbox } from '../../local/sandbox.ts';
import {
  actionsOf,
  buildTestApp,
  fakeResolve,
  functionIdOf,
  grantsOf,
  props,
  resourceName,
  resourcesOf,
  resourcesOfType,
  type Statement,
  stringLike,
  testTopology,
} from '../cdk/fixture.ts';
import { runCliOn, startTestSandbox } from '../support/local-stack.ts';
import { waitFor } from '../support/wait.js';

const topology = testTopology();
const MiB = 1024 * 1024;
const PULL_TARGET = 'onprem-dc1';
const AGENT = agentAppId(PULL_TARGET);

let dataDir: string;
let sandbox: Sandbox;
let calls: readonly ObservedCall[];

/** The local stack's resource in the vocabulary of fixture.ts's resourceName. */
function nameOf(resource: string): string {
  const [service, ...rest] = resource.split(':');
  const name = rest.join(':');
  if (service === 'dynamodb') return name.replace(LOCAL_NAMES.table, 'ledger');
  if (service === 'sqs') {
    if (name === LOCAL_NAMES.ingestQueue) return 'queue:ingest';
    if (name === LOCAL_NAMES.completionQueue) return 'queue:completion';
    const target = topology.targets.find((t) => name === LOCAL_NAMES.targetQueue(t.id));
    return target ? `queue:${target.id}` : `queue:${name}`;
  }
  const [bucket = '', ...key] = name.split('/');
  const path = key.length > 0 ? `/${key.join('/')}` : '';
  if (bucket === LOCAL_NAMES.originBucket) return `origin${path}`;
  const target = topology.targets.find(
    (t) => t.kind === 's3' && bucket === (t.bucketName ?? LOCAL_NAMES.replicaBucket(t.id)),
  );
  return target ? `replica:${target.id}${path}` : `bucket:${bucket}${path}`;
}

/** `action resource` granted by one of `grants` (`*` at the end of either matches any rest). */
function granted(
  grants: readonly string[],
  action: string,
  resource: string,
  leadingKey: string | undefined,
): boolean {
  const matches = (pattern: string, value: string) =>
    pattern.endsWith('*') ? value.startsWith(pattern.slice(0, -1)) : pattern === value;
  return grants.some((line) => {
    const [grantedAction = '', grantedResource = '', keys] = line.split(' ');
    // A grant confined by dynamodb:LeadingKeys (`keys:<patterns>`) admits only those partitions.
    const keyed =
      keys === undefined ||
      (leadingKey !== undefined &&
        keys
          .slice('keys:'.length)
          .split(',')
          .some((p) => stringLike(p, leadingKey)));
    return matches(grantedAction, action) && matches(grantedResource, resource) && keyed;
  });
}

async function cli(...args: string[]) {
  const run = await runCliOn(sandbox, args, { cwd: dataDir });
  if (run.code !== 0) throw new Error(`media-mirror ${args.join(' ')}: exit ${run.code}: ${run.err}`);
  return run.out;
}

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'observed-grants-'));
  sandbox = await startTestSandbox(join(dataDir, 'stack'), {
    topology,
    env: {},
    observeCalls: true,
    agents: true,
    schedules: { lagIntervalSeconds: 0, reconcileIntervalSeconds: 0, reconcileAtStart: false },
  });
  const small = join(dataDir, 'small.png');
  const large = join(dataDir, 'large.png');
  await writeFile(small, randomBytes(64 * 1024));
  // Past the 16 MiB multipart threshold: the completion function and the replicas' multipart copy.
  await writeFile(large, randomBytes(17 * MiB));
  // Under every target's prefix: images/ (target-b) and media/ (target-c's key prefix is its own).
  await cli('upload', small, 'images/a.png');
  await cli('upload', large, 'images/large.png');
  // The same bytes again: a proof of possession, no bytes sent.
  await cli('upload', small, 'images/b.png');
  await cli('rm', 'images/a.png');
  await cli('restore', 'images/a.png', '1');
  await cli('ls', 'images/');
  await cli('log', 'images/a.png');
  await cli('get', 'images/a.png', join(dataDir, 'got.png'));
  // Every target, the agent's too, holds the last version of each path before the scheduled functions run.
  await waitFor(
    'every target to catch up',
    async () => (await sandbox.measureLag()).every((t) => t.pending === 0) || undefined,
    60_000,
  );
  await sandbox.reconcile();
  await sandbox.sweepPending();
  calls = await sandbox.observedCalls();
}, 180_000);

afterAll(async () => {
  await sandbox?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe('what each function asks of AWS, against its policy in the CDK app', () => {
  it('observes every function of the stack, each by its own name', () => {
    const callers = new Set(calls.map((c) => c.caller));
    expect([...callers].sort()).toEqual(
      [
        'api',
        'ingest',
        'complete-multipart',
        'lag-monitor',
        'reconcile',
        'pending-sweep',
        ...topology.targets.filter((t) => t.kind === 's3').map((t) => `replicate-${t.id}`),
        AGENT,
      ].sort(),
    );
    // A transaction's elements are named by their own actions, as IAM authorizes them.
    expect(calls.some((c) => c.action === 'dynamodb:ConditionCheckItem')).toBe(true);
    expect(calls.some((c) => c.action.startsWith('dynamodb:Transact'))).toBe(false);
  });

  it('every call is granted by the function’s policy in the home stack', () => {
    const mirror = buildTestApp(topology, { nag: false });
    const home = Template.fromStack(mirror.home);
    const grants = new Map<string, string[]>();
    const ungranted = calls
      .filter((c) => c.caller !== AGENT)
      .map((c) => ({ ...c, resource: nameOf(c.resource) }))
      .filter((c) => {
        let own = grants.get(c.caller);
        if (own === undefined) {
          own = grantsOf(mirror, home, functionIdOf(home, c.caller));
          grants.set(c.caller, own);
        }
        return !granted(own, c.action, c.resource, c.leadingKey);
      })
      .map((c) => `${c.caller}: ${c.action} ${c.resource} ${c.leadingKey ?? ''}`);
    expect([...new Set(ungranted)].sort()).toEqual([]);
  });

  it('every call of the agent is allowed by its role, partition keys and written attributes included', () => {
    const mirror = buildTestApp(topology, { nag: false });
    const agent = mirror.home.agentAccess.get(PULL_TARGET);
    if (!agent) throw new Error(`no agent role for ${PULL_TARGET}`);
    const role = resourcesOfType(Template.fromStack(mirror.home), 'AWS::IAM::Role')[
      mirror.home.getLogicalId(agent.role.node.defaultChild as never)
    ];
    const [policy] = (props(role ?? {}).Policies ?? []) as { PolicyDocument: { Statement: Statement[] } }[];
    const statements = policy?.PolicyDocument.Statement ?? [];
    const agentCalls = calls.filter((c) => c.caller === AGENT);
    // What it must have done to mirror the files: read the feed and versions, fetch blobs, report.
    expect([...new Set(agentCalls.map((c) => c.action))]).toEqual(
      expect.arrayContaining([
        'dynamodb:GetItem',
        'dynamodb:Query',
        'dynamodb:PutItem',
        'dynamodb:UpdateItem',
        's3:GetObjectVersion',
        'sqs:ReceiveMessage',
        'sqs:DeleteMessage',
      ]),
    );
    expect(agentCalls.filter((c) => c.resource.startsWith('dynamodb:')).every((c) => c.leadingKey)).toBe(
      true,
    );
    const refused = agentCalls
      .filter((call) => !statements.some((statement) => allowsCall(mirror, statement, call)))
      .map((c) => `${c.action} ${nameOf(c.resource)} ${c.leadingKey ?? ''}`);
    expect([...new Set(refused)].sort()).toEqual([]);
  });
});

/**
 * An Allow statement admits the call: its action, its resource (resourceName's vocabulary) and
 * every condition. The only conditions an agent's role has on what it calls are
 * `ForAllValues:StringLike` on `dynamodb:LeadingKeys`, `ForAllValues:StringNotEquals` on
 * `dynamodb:Attributes` (its writes), `StringEquals` on `aws:ResourceAccount`
 * (always met: one account locally) and `StringLikeIfExists` on `s3:prefix` (listings; the agent
 * lists nothing); any other condition admits nothing here.
 */
function allowsCall(
  mirror: ReturnType<typeof buildTestApp>,
  statement: Statement,
  call: ObservedCall,
): boolean {
  if (statement.Effect !== 'Allow') return false;
  const resource = nameOf(call.resource);
  const resources = resourcesOf(statement).map((r) => resourceName(mirror, String(fakeResolve(r))));
  if (!actionsOf(statement).some((a) => stringLike(a, call.action))) return false;
  if (!resources.some((r) => stringLike(r, resource))) return false;
  const conditions = Object.entries((statement.Condition ?? {}) as Record<string, Record<string, unknown>>);
  return conditions.every(([operator, tests]) =>
    Object.entries(tests).every(([key, value]) =>
      meetsCondition(operator, key, (Array.isArray(value) ? value : [value]).map(String), call),
    ),
  );
}

/** One condition of an agent's statement, for one call (allowsCall names those it knows). */
function meetsCondition(operator: string, key: string, patterns: string[], call: ObservedCall): boolean {
  if (operator === 'ForAllValues:StringLike' && key === 'dynamodb:LeadingKeys')
    return call.leadingKey !== undefined && patterns.some((p) => stringLike(p, call.leadingKey as string));
  // Writes that must not name these attributes (the indexes' keys): every write names some.
  if (operator === 'ForAllValues:StringNotEquals' && key === 'dynamodb:Attributes')
    return call.attributes?.every((a) => !patterns.includes(a)) ?? false;
  // One account locally: every bucket is the stack's own.
  if (operator === 'StringEquals' && key === 'aws:ResourceAccount') return true;
  return operator === 'StringLikeIfExists' && key === 's3:prefix';
}
