/**
 * cdk-nag 3 runs as a CDK validation plugin: it reports in the synth's
 * validation report (and makes `app.synth()` throw on errors), not through
 * construct annotations, so `Annotations.fromStack(...).findError(...)` sees
 * nothing either way. These tests call the pack directly and synthesize.
 */
import { App, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { AwsSolutionsChecks } from 'cdk-nag';
import { beforeAll, describe, expect, it } from 'vitest';
import type { MirrorApp } from '../../lib/mirror-app.js';
import { buildTestApp, testTopology } from './fixture.js';

const summarize = (report: ReturnType<AwsSolutionsChecks['validateScope']>) =>
  report.violations.map(
    (v) => `${v.severity} ${v.ruleName}: ${v.violatingResources.map((r) => r.constructPath).join(', ')}`,
  );

/** Every cdk-nag acknowledgement in the app, with the path of the construct it is on. */
function acknowledgements(app: App): { path: string; id: string; reason: string }[] {
  return app.node.findAll().flatMap((construct) =>
    construct.node.metadata
      .filter((entry) => entry.type === 'aws:cdk:acknowledged-rules')
      .flatMap((entry) =>
        Object.entries(entry.data as Record<string, string>).map(([id, reason]) => ({
          path: construct.node.path,
          id,
          reason: String(reason),
        })),
      ),
  );
}

describe.each([
  ['iam', testTopology()],
  [
    'jwt',
    testTopology({
      api: { auth: 'jwt', jwtIssuer: 'https://issuer.example.com/', jwtAudience: ['media-mirror'] },
    }),
  ],
])('AwsSolutions checks, %s auth', (_auth, topology) => {
  let mirror: MirrorApp;
  beforeAll(() => {
    mirror = buildTestApp(topology);
  }, 300_000);

  it('report no violation at all (errors nor warnings) on any stack', () => {
    const report = new AwsSolutionsChecks().validateScope(mirror.app);
    expect(summarize(report)).toEqual([]);
    expect(report.success).toBe(true);
  });

  it('the registered plugin lets app.synth() complete', () => {
    expect(mirror.nag).toBeInstanceOf(AwsSolutionsChecks);
    expect(() => mirror.app.synth()).not.toThrow();
  });

  it('every acknowledgement carries a specific reason', () => {
    const reasons: string[] = [];
    for (const { id, reason } of acknowledgements(mirror.app)) {
      expect(id).toMatch(/AwsSolutions-(S1|IAM5\[Resource::.+\]|APIG4)$/);
      expect(String(reason).length, id).toBeGreaterThan(60);
      reasons.push(id);
    }
    expect(reasons.length).toBeGreaterThan(0);
    // Never a blanket IAM5 (every finding is acknowledged one by one) and never on a stack.
    expect(reasons.filter((id) => id.endsWith('AwsSolutions-IAM5'))).toEqual([]);
  });

  it("each wildcard's reason says what it covers: a role's own actions on blobs/*, a replica's prefix or whole bucket (AWS review 8, A5)", () => {
    const all = acknowledgements(mirror.app).map((a) => `${a.path}: ${a.id} ${a.reason}`);
    const blobs = all.filter((r) => /blobs\/\*\]/.test(r) && !r.includes('AgentAccess'));
    // api, ingest, complete-multipart, pending-sweep and one replicate role per S3 target.
    expect(blobs).toHaveLength(4 + 3);
    for (const reason of blobs) expect(reason).toMatch(/: (s3:\w+, )*s3:\w+ there only; the function \w+/);
    expect(blobs.find((r) => r.includes('/Ingest'))).toMatch(/s3:DeleteObjectVersion.*deletes by version id/);
    const replicas = all.filter((r) => r.includes('replicate function of target'));
    expect(replicas.find((r) => r.includes('"target-a"'))).toContain('the whole bucket (no key prefix');
    expect(replicas.find((r) => r.includes('"target-c"'))).toContain("the mirror's key prefix media/ only");
  });
});

describe('the cdk-nag harness itself', () => {
  const controlApp = () => {
    const app = new App();
    const stack = new Stack(app, 'Control');
    new s3.Bucket(stack, 'Bare', { removalPolicy: RemovalPolicy.DESTROY });
    const pack = new AwsSolutionsChecks(app);
    Validations.of(app).addPlugins(pack);
    return { app, stack, pack };
  };

  it('validateScope reports an unacknowledged error', () => {
    const { app, pack } = controlApp();
    const rules = pack.validateScope(app).violations.map((v) => `${v.severity} ${v.ruleName}`);
    expect(rules).toEqual(expect.arrayContaining(['error AwsSolutions-S1', 'error AwsSolutions-S10']));
  });

  it('app.synth() throws on it (so the real app would fail `cdk synth`)', () => {
    const { app } = controlApp();
    expect(() => app.synth()).toThrow(/AwsSolutions-S1/);
  });

  it('it surfaces as a synth exception, not as annotations: Annotations.fromStack cannot be used to look for it', () => {
    const { stack } = controlApp();
    expect(() =>
      Annotations.fromStack(stack).findError('*', Match.stringLikeRegexp('AwsSolutions-.*')),
    ).toThrow(/AwsSolutions-S1/);
  });
});
