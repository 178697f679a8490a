/**
 * The replicate function stops a batch before its timeout (functions/handlers/fifo-groups.ts) and
 * hands the records it did not finish back to the queue: the template must give it room for that.
 * Its stop comes well inside its timeout, the queue hides a record longer than any invocation can
 * hold it (so no record is delivered twice at once), and the mapping reports partial failures.
 */
import { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { REPLICA_COPY_RESUMABLE_DAYS, REPLICA_MAX_RECEIVES } from '../../contracts/replica-copy.js';
import { DEFAULT_STOP_BEFORE_MS } from '../../functions/handlers/fifo-groups.js';
import { ReplicaBucket } from '../../lib/constructs/replica-bucket.js';
import { buildTestApp, props, resourcesOfType, testTopology } from './fixture.js';

type Json = Record<string, unknown>;

describe('replicate: timeout, stop and visibility timeout agree', () => {
  const mirror = buildTestApp(testTopology(), { nag: false });
  const template = Template.fromStack(mirror.home);
  const functions = resourcesOfType(template, 'AWS::Lambda::Function');
  const queues = resourcesOfType(template, 'AWS::SQS::Queue');
  const mappings = Object.values(resourcesOfType(template, 'AWS::Lambda::EventSourceMapping'));
  const s3Targets = mirror.home.targets.filter((t) => t.kind === 's3');

  it('every S3 target has one', () => {
    expect(s3Targets.map((t) => t.id).sort()).toEqual(['target-a', 'target-b', 'target-c']);
  });

  for (const id of ['target-a', 'target-b', 'target-c']) {
    it(`${id}: stops ${DEFAULT_STOP_BEFORE_MS / 1000} s before a 900 s timeout; its queue hides a record for 6 timeouts`, () => {
      const target = s3Targets.find((t) => t.id === id);
      const fnId = mirror.home.getLogicalId(target?.replicator?.function.node.defaultChild as never);
      const queueId = mirror.home.getLogicalId(target?.queue.node.defaultChild as never);
      const timeout = props(functions[fnId] as Json).Timeout as number;
      const visibility = props(queues[queueId] as Json).VisibilityTimeout as number;
      expect(timeout).toBe(900);
      // The default stop (30 s, at most a quarter of the invocation) leaves most of the timeout to work.
      expect(Math.min(DEFAULT_STOP_BEFORE_MS, (timeout * 1000) / 4)).toBe(30_000);
      // SQS must not redeliver a record while the invocation that holds it may still run;
      // records stopped by the deadline are handed back at once instead of waiting this out.
      expect(visibility).toBe(6 * timeout);
      // A large copy continues over many invocations, each a receive: 5 TiB needs ~17 of them.
      expect(props(queues[queueId] as Json).RedrivePolicy).toMatchObject({
        maxReceiveCount: REPLICA_MAX_RECEIVES,
      });
      expect(REPLICA_MAX_RECEIVES).toBeGreaterThanOrEqual(17);
      const mapping = mappings.find((m) => JSON.stringify(props(m).FunctionName).includes(fnId));
      expect(props(mapping as Json)).toMatchObject({
        BatchSize: 10,
        FunctionResponseTypes: ['ReportBatchItemFailures'],
        ScalingConfig: { MaximumConcurrency: 5 },
      });
    });
  }
});

describe('replica buckets: a copy stopped by the deadline is kept, an abandoned one is not kept forever', () => {
  const mirror = buildTestApp(testTopology(), { nag: false });
  const stacks = [mirror.home, ...mirror.replicas.values()];
  const replicaBuckets = stacks.flatMap((stack) =>
    stack.node
      .findAll()
      .filter((c): c is ReplicaBucket => c instanceof ReplicaBucket)
      .map((c) => ({ stack, bucket: c.bucket })),
  );

  it('every S3 target has a replica bucket', () => {
    expect(replicaBuckets.length).toBeGreaterThanOrEqual(3);
  });

  it('each aborts incomplete multipart uploads 7 days after they began, a day after a kept copy stops being continued', () => {
    for (const { stack, bucket } of replicaBuckets) {
      const id = stack.getLogicalId(bucket.node.defaultChild as never);
      const bucketProps = props(resourcesOfType(Template.fromStack(stack), 'AWS::S3::Bucket')[id] as Json);
      const rules = (bucketProps.LifecycleConfiguration as { Rules: Json[] }).Rules;
      const abort = rules.filter((r) => r.AbortIncompleteMultipartUpload !== undefined);
      expect(abort, id).toEqual([
        expect.objectContaining({
          AbortIncompleteMultipartUpload: { DaysAfterInitiation: 7 },
          Status: 'Enabled',
        }),
      ]);
      expect(REPLICA_COPY_RESUMABLE_DAYS).toBeLessThan(7);
    }
  });
});
