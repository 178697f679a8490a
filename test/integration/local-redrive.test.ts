/**
 * The local queues redrive to their DLQs after as many receives as the deployed ones
 * (lib/constructs/queue-with-dlq.ts, replica-target.ts): an S3 target's queue after
 * REPLICA_MAX_RECEIVES (a large copy spans many invocations, each a receive), the others after 5.
 */
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPLICA_MAX_RECEIVES } from '../../contracts/replica-copy.ts';
import { parseTopology } from '../../contracts/topology.ts';
import { ensureResources } from '../../local/resources.ts';
import { startEmulators, type TestEmulators } from '../support/emulators.js';

let emulators: TestEmulators;

beforeAll(async () => {
  emulators = await startEmulators();
});

afterAll(async () => {
  await emulators?.stop();
});

const topology = parseTopology({
  homeRegion: 'us-east-1',
  targets: [
    { id: 'alpha', kind: 's3', region: 'eu-west-1' },
    { id: 'gamma', kind: 'pull' },
  ],
});

async function maxReceiveCount(url: string): Promise<unknown> {
  const out = await emulators.sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['RedrivePolicy'] }),
  );
  return (JSON.parse(out.Attributes?.RedrivePolicy ?? '{}') as { maxReceiveCount?: unknown }).maxReceiveCount;
}

describe('local redrive policies', () => {
  it('as deployed: S3 targets after REPLICA_MAX_RECEIVES, the rest after 5', async () => {
    const clients = { s3: emulators.s3, sqs: emulators.sqs, dynamodb: emulators.dynamo };
    const resources = await ensureResources(clients, topology, {
      ingestVisibilityTimeout: 30,
      targetVisibilityTimeout: 30,
    });
    const [alpha, gamma] = resources.targets;
    expect(Number(await maxReceiveCount(alpha?.queue.url as string))).toBe(REPLICA_MAX_RECEIVES);
    expect(Number(await maxReceiveCount(gamma?.queue.url as string))).toBe(5);
    expect(Number(await maxReceiveCount(resources.ingest.queue.url))).toBe(5);
    expect(Number(await maxReceiveCount(resources.completion.queue.url))).toBe(5);
  });
});
