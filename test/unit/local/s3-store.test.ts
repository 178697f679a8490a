/**
 * The local S3's index: a snapshot (`index.json`) and a journal (`index.log`) of whole new states
 * (local/s3/store.ts). What a PUT costs must not grow with the objects stored, and every
 * acknowledged change must come back after a crash, whatever the journal's last line holds.
 */
import { appendFile, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type Bucket, S3Store } from '../../../local/s3/store.ts';

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function freshDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mirror-s3-store-'));
  dirs.push(dir);
  return dir;
}

function addBucket(store: S3Store, name: string, versioning?: 'Enabled', region?: string): Bucket {
  const bucket: Bucket = {
    name,
    createdAt: new Date(0).toISOString(),
    region,
    versioning,
    cors: undefined,
    objects: new Map(),
  };
  store.buckets.set(name, bucket);
  return bucket;
}

const put = (store: S3Store, bucket: Bucket, key: string, etag: string) =>
  store.putVersion(bucket, key, {
    deleteMarker: false,
    segments: [],
    size: 0,
    etag: `"${etag}"`,
    contentType: undefined,
    headers: [],
    metadata: [],
    checksum: undefined,
    parts: undefined,
  });

/** Each key's versions as (etag, versionId) pairs, newest first. */
const stateOf = (store: S3Store) =>
  [...store.buckets.values()].map((b) => ({
    name: b.name,
    region: b.region,
    versioning: b.versioning,
    objects: [...b.objects].map(([key, versions]) => [key, versions.map((v) => [v.etag, v.versionId])]),
  }));

describe('local S3 index: snapshot and journal', () => {
  it('a write appends its own line and leaves the snapshot alone, however many objects there are', async () => {
    const dir = await freshDir();
    let store = await S3Store.open(dir);
    const bucket = addBucket(store, 'b', 'Enabled');
    await store.persist({ bucket: 'b' });
    for (let i = 0; i < 2_000; i++) put(store, bucket, `k/${i}`, `e${i}`);
    await store.persist(
      { object: ['b', 'k/0'] },
      ...Array.from({ length: 1_999 }, (_, i) => ({ object: ['b', `k/${i + 1}`] as const })),
    );
    // Reopening folds the journal into the snapshot: 2,000 objects in index.json, nothing left over.
    store = await S3Store.open(dir);
    const snapshot = await stat(join(dir, 'index.json'));
    expect(snapshot.size).toBeGreaterThan(2_000 * 100);
    expect((await stat(join(dir, 'index.log'))).size).toBe(0);

    const again = store.buckets.get('b');
    if (again === undefined) throw new Error('bucket b lost on reopen');
    put(store, again, 'one-more', 'last');
    await store.persist({ object: ['b', 'one-more'] });
    const after = await stat(join(dir, 'index.json'));
    expect(after.mtimeMs).toBe(snapshot.mtimeMs);
    expect(after.size).toBe(snapshot.size);
    // One line with one key's versions, not the 2,001 objects.
    const journal = await readFile(join(dir, 'index.log'), 'utf8');
    expect(journal.split('\n').filter(Boolean)).toHaveLength(1);
    expect(journal.length).toBeLessThan(1_000);
  });

  it('every acknowledged change comes back on open; a torn last line (a crash mid-append) is dropped', async () => {
    const dir = await freshDir();
    const store = await S3Store.open(dir);
    const versioned = addBucket(store, 'v', 'Enabled', 'eu-west-1');
    const plain = addBucket(store, 'p');
    await store.persist({ bucket: 'v' }, { bucket: 'p' });
    // Concurrent writers share appends, as concurrent PUTs do.
    await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        put(store, versioned, `key-${i % 10}`, `v${i}`);
        await store.persist({ object: ['v', `key-${i % 10}`] });
      }),
    );
    put(store, plain, 'gone', 'x');
    await store.persist({ object: ['p', 'gone'] });
    store.removeVersion(plain, 'gone', 'null');
    await store.persist({ object: ['p', 'gone'] });
    plain.versioning = undefined;
    plain.cors = [
      {
        allowedOrigins: ['*'],
        allowedMethods: ['GET'],
        allowedHeaders: [],
        exposeHeaders: [],
        maxAgeSeconds: 5,
      },
    ];
    await store.persist({ bucket: 'p' });
    const expected = stateOf(store);
    await appendFile(join(dir, 'index.log'), '[{"object":["v","key-1"],"versions":[{"vers');

    const reopened = await S3Store.open(dir);
    expect(stateOf(reopened)).toEqual(expected);
    expect(reopened.buckets.get('p')?.cors?.[0]?.allowedOrigins).toEqual(['*']);
    // A bucket's region comes back; one created before regions were kept has none (any is taken).
    expect([reopened.buckets.get('v')?.region, reopened.buckets.get('p')?.region]).toEqual([
      'eu-west-1',
      undefined,
    ]);
    expect(reopened.buckets.get('v')?.objects.get('key-3')).toHaveLength(5);
    // The torn line is gone: the next append starts a line of its own.
    const v = reopened.buckets.get('v');
    if (v === undefined) throw new Error('bucket v lost');
    put(reopened, v, 'after', 'a');
    await reopened.persist({ object: ['v', 'after'] });
    expect((await S3Store.open(dir)).buckets.get('v')?.objects.get('after')?.[0]?.etag).toBe('"a"');
  });

  it('a journal grown past its bound is folded into the snapshot while writes go on, and nothing is lost', async () => {
    const dir = await freshDir();
    const store = await S3Store.open(dir, { foldMinBytes: 4_096 });
    const bucket = addBucket(store, 'b', 'Enabled', 'ap-south-1');
    await store.persist({ bucket: 'b' });
    let folds = 0;
    let journalBefore = 0;
    for (let i = 0; i < 300; i++) {
      put(store, bucket, `k${i % 40}`, `e${i}`);
      await store.persist({ object: ['b', `k${i % 40}`] });
      const journal = (await stat(join(dir, 'index.log'))).size;
      if (journal < journalBefore) folds++;
      journalBefore = journal;
    }
    expect(folds).toBeGreaterThan(0);
    const expected = stateOf(store);
    expect(stateOf(await S3Store.open(dir))).toEqual(expected);
  });

  it('a bucket deleted and created again under the same name comes back empty', async () => {
    const dir = await freshDir();
    const store = await S3Store.open(dir);
    const first = addBucket(store, 'again');
    await store.persist({ bucket: 'again' });
    put(store, first, 'k', 'x');
    await store.persist({ object: ['again', 'k'] });
    store.removeVersion(first, 'k', 'null');
    await store.persist({ object: ['again', 'k'] });
    store.buckets.delete('again');
    await store.persist({ bucket: 'again' });
    addBucket(store, 'again', 'Enabled');
    await store.persist({ bucket: 'again' });
    const reopened = await S3Store.open(dir);
    expect(reopened.buckets.get('again')?.versioning).toBe('Enabled');
    expect(reopened.buckets.get('again')?.objects.size).toBe(0);
  });
});
