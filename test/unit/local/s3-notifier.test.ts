import { describe, expect, it } from 'vitest';
import type { S3ObjectCreated } from '../../../local/emulators.ts';
import { buildS3Record } from '../../../local/s3-notifier.ts';

const event: S3ObjectCreated & { size: number; eTag: string } = {
  eventName: 'ObjectCreated:Put',
  bucket: 'mirror-origin',
  key: 'blobs/a b',
  size: 3,
  eTag: 'abc',
  sourceIp: '127.0.0.1',
  requestId: 'R1',
  time: new Date('2026-11-29T00:00:00Z'),
};
const options = { region: 'us-east-1', configurationId: 'c' };

describe('S3 notification records', () => {
  it('name the object version created in a versioned bucket, as AWS documents', () => {
    const record = buildS3Record({ ...event, versionId: 'v-123' }, options);
    expect(record.s3.object).toMatchObject({ key: 'blobs/a+b', size: 3, eTag: 'abc', versionId: 'v-123' });
  });

  it('carry no versionId for an unversioned bucket', () => {
    const record = buildS3Record(event, options);
    expect('versionId' in record.s3.object).toBe(false);
  });
});

describe('S3 notifier delivery', () => {
  it('a notification whose send fails is sent again, as S3 retries delivery to its destination', async () => {
    const { createS3Notifier } = await import('../../../local/s3-notifier.ts');
    let attempts = 0;
    const sent: string[] = [];
    const errors: string[] = [];
    const sqs = {
      send: async (command: { input: { MessageBody: string } }) => {
        attempts++;
        if (attempts === 1) throw new Error('ServiceUnavailable');
        sent.push(command.input.MessageBody);
        return {};
      },
    };
    const notifier = createS3Notifier({
      sqs: sqs as never,
      bucket: 'mirror-origin',
      prefix: 'blobs/',
      queueUrl: 'q',
      region: 'us-east-1',
      head: async () => ({ size: 3, eTag: 'abc' }),
      onError: (e) => errors.push(e.message),
    });
    notifier.notify({ ...event, key: 'blobs/abc' });
    await notifier.drain();
    expect(sent).toHaveLength(1);
    expect(JSON.parse(sent[0] as string).Records[0].s3.object.key).toBe('blobs/abc');
    expect(errors).toEqual([]);
  });
});
