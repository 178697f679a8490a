/**
 * The lost-notification sweep in the home stack: its schedule, its function's environment (its
 * handler's configuration reads it), and that its policy grants what the table in
 * function-policies.test.ts says and nothing that could write (checked there action by action).
 */
import { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { pendingSweepConfigSchema, readConfig } from '../../functions/adapters/runtime-config.js';
import type { MirrorApp } from '../../lib/mirror-app.js';
import { buildTestApp, environmentOf, props, resourcesOfType, testTopology } from './fixture.ts';

type Json = Record<string, unknown>;

let mirror: MirrorApp;
let home: Template;
let fnId: string;

beforeAll(() => {
  mirror = buildTestApp(testTopology(), { nag: false });
  home = Template.fromStack(mirror.home);
  const ids = Object.keys(resourcesOfType(home, 'AWS::Lambda::Function')).filter((id) =>
    id.startsWith('PendingSweep'),
  );
  expect(ids).toHaveLength(1);
  fnId = ids[0] as string;
});

describe('the lost-notification sweep', () => {
  it('runs every 15 minutes from an EventBridge rule, a failed run not retried', () => {
    const rules = Object.values(resourcesOfType(home, 'AWS::Events::Rule'))
      .map((r) => props(r))
      .filter((r) =>
        (r.Targets as Json[]).some(
          (t) => JSON.stringify(t.Arn) === JSON.stringify({ 'Fn::GetAtt': [fnId, 'Arn'] }),
        ),
      );
    expect(rules).toHaveLength(1);
    expect(rules[0]).toMatchObject({ ScheduleExpression: 'rate(15 minutes)', State: 'ENABLED' });
    home.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      Principal: 'events.amazonaws.com',
      FunctionName: { 'Fn::GetAtt': [fnId, 'Arn'] },
    });
    home.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: { Ref: fnId },
      MaximumRetryAttempts: 0,
      // A throttled run is dropped once the next is due (AWS review 9, B2).
      MaximumEventAgeInSeconds: 15 * 60,
    });
  });

  it('is told the ledger, the origin bucket, the ingest and completion queues, which its handler’s configuration requires', () => {
    const env = environmentOf(home, fnId);
    const config = readConfig(pendingSweepConfigSchema, { ...env, AWS_REGION: 'us-east-1' });
    expect(config.table).toMatch(/^ref:LedgerTable/);
    expect(config.originBucket).toMatch(/^ref:OriginBucket/);
    expect(config.ingestQueueUrl).toMatch(/^ref:IngestQueue/);
    expect(config.completionQueueUrl).toMatch(/^ref:CompletionQueue/);
    // On AWS the grace is the code's default (10 minutes): the variable is for the local stack.
    expect(config.graceMs).toBeUndefined();
  });
});
