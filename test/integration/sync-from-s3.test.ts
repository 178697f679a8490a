/**
 * `media-mirror sync --from s3://bucket/prefix <prefix>` through the local stack: a library that
 * lives in a bucket (here on the stack's own S3) comes into the mirror; content the mirror holds
 * costs no bytes; a second run reads nothing (the cache keys on ETag and size); a changed object
 * is read and sent again, alone.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { CreateBucketCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseTopology } from '../../contracts/topology.ts';
import type { Sandbox } from '../../local/sandbox.ts';
import { s3Env, startTestStack, type TestStack } from '../support/local-stack.ts';

const topology = parseTopology({
  homeRegion: 'us-east-1',
  targets: [{ id: 'eu-west-1', kind: 's3', region: 'eu-west-1' }],
  limits: {
    maxUploadBytes: 64 * 1024 * 1024,
    multipartThresholdBytes: 6 * 1024 * 1024,
    contentTypes: ['image/*', 'text/plain'],
    presignTtlSeconds: 600,
  },
});

let stack: TestStack;
let work: string;
let sandbox: Sandbox;
let s3: S3Client;

beforeAll(async () => {
  stack = await startTestStack('sync-s3', { topology, env: {}, schedules: false });
  ({ sandbox, s3, dir: work } = stack);
}, 120_000);

afterAll(() => stack?.stop());

/** The CLI's own S3 client reads the bucket on the stack's S3. */
const cli = (...args: string[]) => stack.cliWith(s3Env(sandbox))(...args);

const sha = (b: string | Buffer) => createHash('sha256').update(b).digest('hex');
const put = (key: string, body: string) =>
  s3.send(new PutObjectCommand({ Bucket: 'old-library', Key: key, Body: body }));

describe('sync --from s3:// through the local stack', () => {
  it('imports a bucket prefix: sends what the mirror lacks, then nothing; a changed object alone again', async () => {
    // Content the mirror already holds, at another path: the bucket's copy of it costs no bytes.
    expect((await cli('upload', await fileWith('held.txt', 'held elsewhere\n'), 'other/held.txt')).code).toBe(
      0,
    );
    await s3.send(new CreateBucketCommand({ Bucket: 'old-library' }));
    await put('media/2019/a.jpg', 'photo a\n'.repeat(500));
    await put('media/2019/b.png', 'photo b\n'.repeat(300));
    await put('media/notes.txt', 'held elsewhere\n');
    await put('media/empty-folder/', '');
    await put('media/tool.exe', 'not accepted here');
    await put('elsewhere/c.jpg', 'not under the prefix');

    const dry = await cli('sync', '--from', 's3://old-library/media', 'imported', '--dry-run', '--json');
    expect(dry.code, dry.err).toBe(0);
    expect(JSON.parse(dry.out)).toMatchObject({ files: 4, planned: 3, skipped: 1, bytesSent: 0 });

    const first = await cli('sync', '--from', 's3://old-library/media', 'imported', '--json');
    expect(first.code, first.err).toBe(0);
    const one = JSON.parse(first.out);
    expect(one).toMatchObject({
      dir: 's3://old-library/media/',
      prefix: 'imported/',
      files: 4,
      uploaded: 2,
      deduplicated: 1,
      skipped: 1,
      failed: 0,
    });
    // The dry run's hashes are cached: the objects were read once then, and sent now.
    expect(one.bytesSent).toBe(8 * 500 + 8 * 300);
    expect(
      one.reports.find((r: { file: string }) => r.file === 's3://old-library/media/tool.exe').reason,
    ).toMatch(/not accepted/);

    const listed = JSON.parse((await cli('ls', 'imported/', '--json')).out).files;
    expect(listed.map((f: { path: string; sha256: string }) => [f.path, f.sha256])).toEqual([
      ['imported/2019/a.jpg', sha('photo a\n'.repeat(500))],
      ['imported/2019/b.png', sha('photo b\n'.repeat(300))],
      ['imported/notes.txt', sha('held elsewhere\n')],
    ]);

    // Nothing changed: nothing read, nothing sent.
    const again = JSON.parse(
      (await cli('sync', '--from', 's3://old-library/media', 'imported', '--json')).out,
    );
    expect(again).toMatchObject({
      files: 4,
      unchanged: 3,
      uploaded: 0,
      skipped: 1,
      bytesHashed: 0,
      bytesSent: 0,
    });

    // One object rewritten: a new ETag, read and sent alone.
    await put('media/2019/b.png', 'photo b, edited\n');
    const third = JSON.parse(
      (await cli('sync', '--from', 's3://old-library/media', 'imported', '--json')).out,
    );
    expect(third).toMatchObject({ unchanged: 2, uploaded: 1, bytesHashed: 16, bytesSent: 16, failed: 0 });
    const log = JSON.parse((await cli('log', 'imported/2019/b.png', '--json')).out);
    expect(log.versions[0]).toMatchObject({ version: 2, sha256: sha('photo b, edited\n') });
  });

  it("keeps each object's own content type, where S3 holds one the mirror takes (probe 11, U4)", async () => {
    await s3.send(new CreateBucketCommand({ Bucket: 'typed-library' }));
    const typed = (key: string, body: string, ContentType: string) =>
      s3.send(new PutObjectCommand({ Bucket: 'typed-library', Key: key, Body: body, ContentType }));
    await typed('scans/poster.dat', 'a poster', 'image/jpeg');
    await typed('scans/readme', 'read me', 'Text/Plain; charset=utf-8');
    // S3's default when none was given: the extension decides.
    await typed('scans/cover.png', 'a cover', 'binary/octet-stream');
    await typed('scans/tool', 'a tool', 'application/x-msdownload');

    for (const dryRun of [true, false]) {
      const run = await cli(
        'sync',
        '--from',
        's3://typed-library/scans',
        'typed',
        '--json',
        ...(dryRun ? ['--dry-run'] : []),
      );
      expect(run.code, run.err).toBe(0);
      const summary = JSON.parse(run.out);
      expect(summary).toMatchObject({ files: 4, skipped: 1, failed: 0 });
      expect(summary.reports.find((r: { path: string }) => r.path === 'typed/tool')).toMatchObject({
        outcome: 'skipped',
        reason: expect.stringContaining('application/x-msdownload is not accepted'),
      });
    }
    for (const [path, type] of [
      ['typed/poster.dat', 'image/jpeg'],
      ['typed/readme', 'text/plain'],
      ['typed/cover.png', 'image/png'],
    ]) {
      const log = JSON.parse((await cli('log', path as string, '--json')).out);
      expect(log.versions[0]?.contentType, path).toBe(type);
    }
    // Unchanged since: nothing read again, nothing sent, the same skip.
    const again = JSON.parse(
      (await cli('sync', '--from', 's3://typed-library/scans', 'typed', '--json')).out,
    );
    expect(again).toMatchObject({ files: 4, unchanged: 3, skipped: 1, bytesHashed: 0, bytesSent: 0 });
  });

  it('refuses what is not a bucket URL, and a second argument beside --from (exit 2, nothing sent)', async () => {
    const bad = await cli('sync', '--from', 'http://old-library/media', 'imported');
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('--from must be s3://<bucket>');
    const two = await cli('sync', '--from', 's3://old-library/media', 'dir', 'imported');
    expect(two.code).toBe(2);
    expect(two.err).toContain('one argument');
  });
});

async function fileWith(name: string, body: string): Promise<string> {
  const { writeFile } = await import('node:fs/promises');
  const file = join(work, name);
  await writeFile(file, body);
  return file;
}
