import { describe, expect, it } from 'vitest';
import { decodeS3Key, s3NotificationSchema } from '../../../functions/handlers/events.js';

/** The example from AWS's "Event message structure" page, with a key that needs decoding. */
const awsExample = {
  Records: [
    {
      eventVersion: '2.1',
      eventSource: 'aws:s3',
      awsRegion: 'us-west-2',
      eventTime: '1970-01-01T00:00:00.000Z',
      eventName: 'ObjectCreated:Put',
      userIdentity: { principalId: 'AIDAJDPLRKLG7UEXAMPLE' },
      requestParameters: { sourceIPAddress: '127.0.0.1' },
      responseElements: {
        'x-amz-request-id': 'C3D13FE58DE4C810',
        'x-amz-id-2': 'FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD',
      },
      s3: {
        s3SchemaVersion: '1.0',
        configurationId: 'testConfigRule',
        bucket: {
          name: 'mybucket',
          ownerIdentity: { principalId: 'A3NL1KOZZKExample' },
          arn: 'arn:aws:s3:::mybucket',
        },
        object: {
          key: 'HappyFace+%C3%A9t%C3%A9.jpg',
          size: 1024,
          eTag: 'd41d8cd98f00b204e9800998ecf8427e',
          versionId: '096fKKXTRTtl3on89fVO.nfljtsv6qko',
          sequencer: '0055AED6DCD90281E5',
        },
      },
    },
  ],
};

describe('S3 notifications', () => {
  it('parses the documented event and decodes its key (+ is a space)', () => {
    const parsed = s3NotificationSchema.parse(awsExample);
    expect('Records' in parsed && parsed.Records[0]?.s3.object.versionId).toBe(
      '096fKKXTRTtl3on89fVO.nfljtsv6qko',
    );
    expect(decodeS3Key(awsExample.Records[0]?.s3.object.key as string)).toBe('HappyFace été.jpg');
    expect(decodeS3Key('a%2Bb')).toBe('a+b');
  });

  it('accepts the test event S3 sends when a notification is configured', () => {
    expect(
      s3NotificationSchema.parse({ Service: 'Amazon S3', Event: 's3:TestEvent', Bucket: 'b' }),
    ).toMatchObject({ Event: 's3:TestEvent' });
  });

  it('rejects a body that is neither', () => {
    expect(s3NotificationSchema.safeParse({ Records: [{ eventName: 'x' }] }).success).toBe(false);
  });
});

describe('routing of file paths', async () => {
  const { routingPath } = await import('../../../functions/handlers/routing.js');
  it.each([
    ['/v1/files/a%2Fb.jpg', '/v1/files/a%2Fb.jpg'],
    ['/v1/files/a%2Fb.jpg/versions', '/v1/files/a%2Fb.jpg/versions'],
    ['/v1/files/a/b.jpg/versions', '/v1/files/a%2Fb.jpg/versions'],
    ['/v1/files/a/b.jpg/content', '/v1/files/a%2Fb.jpg/content'],
    ['/v1/files/a/b.jpg', '/v1/files/a%2Fb.jpg'],
    ['/v1/files/versions', '/v1/files/versions'],
    ['/v1/uploads/x', '/v1/uploads/x'],
  ])('%s routes as %s (encoded or already decoded by a proxy)', (raw, routed) => {
    expect(routingPath(raw)).toBe(routed);
  });
});

describe('fan-out message bodies', async () => {
  const { escapeAstral } = await import('../../../functions/adapters/sqs-fanout.js');
  it('carry emoji and other astral characters as \\u escapes that parse back to the same path (property)', async () => {
    const fc = (await import('fast-check')).default;
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (path) => {
        const wire = escapeAstral(JSON.stringify({ path }));
        expect(/[\u{10000}-\u{10FFFF}]/u.test(wire)).toBe(false);
        expect(JSON.parse(wire).path).toBe(path);
      }),
    );
  });
});
