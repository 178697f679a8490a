/**
 * The replica store's listing: keys under the target's key prefix, URL-encoded on the wire (a key
 * written straight into the bucket may hold characters XML cannot carry), handed to the core as
 * keys and the paths they stand for. S3 writes a space as `+` in that encoding.
 */
import type { ListObjectsV2CommandInput, ListObjectsV2CommandOutput, S3Client } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { decodeListedKey, S3ReplicaStore } from '../../../functions/adapters/s3.js';

function storeAnswering(pages: Partial<ListObjectsV2CommandOutput>[], keyPrefix: string) {
  const asked: ListObjectsV2CommandInput[] = [];
  const s3 = {
    async send(command: { input: ListObjectsV2CommandInput }) {
      asked.push(command.input);
      return pages.shift() ?? {};
    },
  } as unknown as S3Client;
  return { store: new S3ReplicaStore(s3, 'replica-alpha', keyPrefix, { bucket: 'origin' }), asked };
}

describe('S3ReplicaStore.list', () => {
  it('lists under the key prefix, URL-encoded, and gives each key with its path; next is the continuation token', async () => {
    const { store, asked } = storeAnswering(
      [
        {
          Contents: [{ Key: 'mirror/a%20b+c%2B1.jpg' }, { Key: 'mirror/%C3%A9t%C3%A9/x%01.bin' }],
          IsTruncated: true,
          NextContinuationToken: 'token-2',
        },
        { Contents: [{ Key: 'mirror/z.bin' }], IsTruncated: false },
      ],
      'mirror/',
    );
    const first = await store.list({ limit: 2 });
    expect(first).toEqual({
      objects: [
        { key: 'mirror/a b c+1.jpg', path: 'a b c+1.jpg' },
        { key: 'mirror/été/x\u0001.bin', path: 'été/x\u0001.bin' },
      ],
      next: 'token-2',
    });
    const second = await store.list({ after: first.next, limit: 2 });
    expect(second).toEqual({ objects: [{ key: 'mirror/z.bin', path: 'z.bin' }] });
    expect(asked).toEqual([
      {
        Bucket: 'replica-alpha',
        Prefix: 'mirror/',
        MaxKeys: 2,
        ContinuationToken: undefined,
        EncodingType: 'url',
      },
      {
        Bucket: 'replica-alpha',
        Prefix: 'mirror/',
        MaxKeys: 2,
        ContinuationToken: 'token-2',
        EncodingType: 'url',
      },
    ]);
  });

  it('a target without a key prefix lists the whole bucket', async () => {
    const { store, asked } = storeAnswering([{ Contents: [{ Key: 'a.jpg' }] }], '');
    expect(await store.list({ limit: 1000 })).toEqual({ objects: [{ key: 'a.jpg', path: 'a.jpg' }] });
    expect(asked[0]).not.toHaveProperty('Prefix');
  });

  it('decodes S3’s form of URL encoding: + is a space, %2B a plus', () => {
    expect(decodeListedKey('a+b%2Bc%2Fd')).toBe('a b+c/d');
  });
});
