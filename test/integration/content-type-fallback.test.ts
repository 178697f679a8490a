/**
 * A file whose extension maps to a type the deployment does not accept (a Google Takeout sidecar,
 * `IMG_0001.jpg.json`) goes in as `application/octet-stream`, the type an unknown extension gets,
 * instead of being left out: `sync` (and its dry run) and `upload` without `--content-type` say so
 * per file. An explicit `--content-type` the API refuses is still refused. Through the local stack
 * and the CLI (probe U9).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SyncFileReport, SyncSummary } from '../../cli/sync.ts';
import { parseTopology } from '../../contracts/topology.ts';
import { writeFiles } from '../support/library.ts';
import { startTestStack, type TestStack } from '../support/local-stack.ts';

const topology = parseTopology({
  homeRegion: 'us-east-1',
  targets: [{ id: 'eu-west-1', kind: 's3', region: 'eu-west-1' }],
  limits: { contentTypes: ['image/*', 'application/octet-stream'], presignTtlSeconds: 600 },
});

let stack: TestStack;
let work: string;

beforeAll(async () => {
  stack = await startTestStack('type-fallback', { topology, env: {}, schedules: false });
  work = stack.dir;
}, 120_000);

afterAll(() => stack?.stop());

const cli = (...args: string[]) => stack.cli(...args);

/** The content type the mirror recorded for a path's newest version. */
async function storedType(path: string): Promise<string> {
  const log = await cli('log', path, '--json');
  expect(log.code, log.err).toBe(0);
  return JSON.parse(log.out).versions[0].contentType;
}

describe('a type the API does not accept, guessed from the extension', () => {
  it('sync sends the file as application/octet-stream and says so; the dry run predicts the same', async () => {
    const lib = await writeFiles(join(work, 'takeout'), {
      'IMG_0001.jpg': 'a photo',
      'IMG_0001.jpg.json': '{"title":"IMG_0001.jpg"}',
      'page.html': '<p>an unknown extension</p>',
    });
    const fellBack = (s: SyncSummary) =>
      s.reports.filter((r) => r.fellBackFrom !== undefined).map((r) => [r.path, r.fellBackFrom]);
    const sidecar = (s: SyncSummary) =>
      s.reports.find((r) => r.path === 'takeout/IMG_0001.jpg.json') as SyncFileReport;

    const dry = await cli('sync', lib, 'takeout', '--no-cache', '--dry-run', '--json');
    expect(dry.code, dry.err).toBe(0);
    const predicted = JSON.parse(dry.out) as SyncSummary;
    expect(predicted).toMatchObject({ files: 3, planned: 3, skipped: 0, failed: 0 });
    expect(sidecar(predicted)).toMatchObject({ outcome: 'planned', reason: 'new' });
    expect(fellBack(predicted)).toEqual([['takeout/IMG_0001.jpg.json', 'application/json']]);
    const people = await cli('sync', lib, 'takeout', '--no-cache', '--dry-run');
    expect(people.out).toMatch(
      /application\/octet-stream for 1 file\(s\) whose extension's type the mirror does not accept \(application\/json\)/,
    );

    const run = await cli('sync', lib, 'takeout', '--no-cache', '--json');
    expect(run.code, run.err).toBe(0);
    const real = JSON.parse(run.out) as SyncSummary;
    expect(real).toMatchObject({ files: 3, uploaded: 3, skipped: 0, failed: 0 });
    expect(sidecar(real)).toMatchObject({ outcome: 'uploaded', version: 1 });
    expect(fellBack(real)).toEqual(fellBack(predicted));
    expect(await storedType('takeout/IMG_0001.jpg.json')).toBe('application/octet-stream');
    expect(await storedType('takeout/IMG_0001.jpg')).toBe('image/jpeg');
    expect(await storedType('takeout/page.html')).toBe('application/octet-stream');
  });

  it('upload without --content-type falls back the same way; an explicit one the API refuses is exit 1, nothing committed', async () => {
    const dir = await writeFiles(join(work, 'single'), { 'meta.json': '{"a":1}' });
    const file = join(dir, 'meta.json');

    const implicit = await cli('upload', file, 'single/meta.json', '--json');
    expect(implicit.code, implicit.err).toBe(0);
    expect(JSON.parse(implicit.out)).toMatchObject({
      status: 'committed',
      version: 1,
      contentType: 'application/octet-stream',
      fellBackFrom: 'application/json',
    });
    expect(await storedType('single/meta.json')).toBe('application/octet-stream');
    const people = await cli('upload', file, 'single/meta-again.json');
    expect(people.code, people.err).toBe(0);
    expect(people.out).toMatch(/as application\/octet-stream: application\/json is not accepted/);

    const explicit = await cli(
      'upload',
      file,
      'single/typed.json',
      '--content-type',
      'application/json',
      '--json',
    );
    expect(explicit.code).toBe(1);
    expect(explicit.err).toMatch(
      /415 unsupported_content_type: contentType application\/json is not accepted/,
    );
    expect(JSON.parse(explicit.out)).toMatchObject({
      error: { code: 'unsupported_content_type', status: 415, exitCode: 1 },
    });
    expect((await cli('log', 'single/typed.json')).code).toBe(3);
  });
});
