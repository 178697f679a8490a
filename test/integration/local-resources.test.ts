/**
 * The local stack's buckets (local/resources.ts ensureResources) live in their regions, as on AWS:
 * the origin bucket in the home region, each replica bucket in its target's. A data folder whose
 * bucket was made for another region than the topology now names is refused at the start, saying
 * which, rather than failing every copy later (the local S3 refuses a request signed for another
 * region than the bucket's, as S3 does).
 */
import { GetBucketLocationCommand, HeadBucketCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseTopology } from '../../contracts/topology.ts';
import { makeS3Client } from '../../functions/adapters/s3.js';
import { LOCAL_CREDENTIALS } from '../../local/emulators.ts';
import { ensureResources, LOCAL_NAMES } from '../../local/resources.ts';
import { startEmulators, type TestEmulators } from '../support/emulators.js';

let emulators: TestEmulators;
const made = new Map<string, S3Client>();
const s3In = (region: string): S3Client => {
  let client = made.get(region);
  if (client === undefined) {
    client = makeS3Client({
      region,
      forcePathStyle: true,
      endpoint: emulators.endpoints.s3,
      credentials: { ...LOCAL_CREDENTIALS },
    });
    made.set(region, client);
  }
  return client;
};

beforeAll(async () => {
  emulators = await startEmulators();
});

afterAll(async () => {
  for (const client of made.values()) client.destroy();
  await emulators?.stop();
});

const topologyWith = (region: string) =>
  parseTopology({
    homeRegion: 'us-east-1',
    targets: [
      { id: 'alpha', kind: 's3', region },
      { id: 'gamma', kind: 'pull' },
    ],
  });
const tuning = { ingestVisibilityTimeout: 30, targetVisibilityTimeout: 30 };

describe('local buckets and their regions', () => {
  it("makes each replica bucket in its target's region; a bucket left in another region stops the start, naming both", async () => {
    const clients = { s3: emulators.s3, s3In, sqs: emulators.sqs, dynamodb: emulators.dynamo };
    const resources = await ensureResources(clients, topologyWith('eu-west-1'), tuning);
    const bucket = resources.targets[0]?.bucket as string;
    const location = await s3In('eu-west-1').send(new GetBucketLocationCommand({ Bucket: bucket }));
    expect(location.LocationConstraint).toBe('eu-west-1');
    const origin = await emulators.s3.send(new GetBucketLocationCommand({ Bucket: resources.originBucket }));
    expect(origin.LocationConstraint ?? '').toBe('');

    // Started again as it was: nothing to do.
    await ensureResources(clients, topologyWith('eu-west-1'), tuning);
    // The topology moves the target: the bucket cannot follow.
    await expect(ensureResources(clients, topologyWith('ap-south-1'), tuning)).rejects.toThrow(
      `bucket ${bucket} exists in this data folder in another region than ap-south-1`,
    );
  });

  it('two S3 targets naming one bucket, or a target naming the origin bucket, stop the start before anything is made', async () => {
    const clients = { s3: emulators.s3, s3In, sqs: emulators.sqs, dynamodb: emulators.dynamo };
    // Both would write (and reconcile) the same keys; a replica in the origin bucket would be taken for an upload.
    const shared = parseTopology({
      homeRegion: 'us-east-1',
      targets: [
        { id: 'left', kind: 's3', region: 'us-east-1', bucketName: 'shared-copies' },
        { id: 'right', kind: 's3', region: 'us-east-1', bucketName: 'shared-copies', keyPrefix: 'right/' },
      ],
    });
    await expect(ensureResources(clients, shared, tuning)).rejects.toThrow(
      'target "right": bucket name "shared-copies" is also used by target "left"',
    );
    await expect(emulators.s3.send(new HeadBucketCommand({ Bucket: 'shared-copies' }))).rejects.toMatchObject(
      {
        name: 'NotFound',
      },
    );
    const intoOrigin = parseTopology({
      homeRegion: 'us-east-1',
      targets: [{ id: 'mirror', kind: 's3', region: 'us-east-1', bucketName: LOCAL_NAMES.originBucket }],
    });
    await expect(ensureResources(clients, intoOrigin, tuning)).rejects.toThrow(
      `target "mirror": bucket name "${LOCAL_NAMES.originBucket}" is also used by the origin bucket`,
    );
  });
});
