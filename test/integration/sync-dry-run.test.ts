/**
 * `media-mirror sync --dry-run` predicts the refusals of the folder/file rule (docs/api.md, "The path
 * policy"): where a pull target takes a path, a file cannot lie under a live file, nor be named
 * like a folder of live files. The dry run sends nothing and reports those files `failed` with the
 * rule, as the real run then does; where no pull target takes the path, the rule does not apply.
 * Through the local stack and the CLI (probe 8, F18). And what sync does not follow (links, FIFOs),
 * and the content it commits without sending it.
 */
import { execFile } from 'node:child_process';
import { symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SyncSummary } from '../../cli/sync.ts';
import { parseTopology } from '../../contracts/topology.ts';
import { writeFiles } from '../support/library.ts';
import { startTestStack, type TestStack } from '../support/local-stack.ts';

const topology = parseTopology({
  homeRegion: 'us-east-1',
  targets: [
    { id: 'eu-west-1', kind: 's3', region: 'eu-west-1' },
    // Only lib/ goes to disk: the rule holds there, not under free/.
    { id: 'onprem', kind: 'pull', pathPrefix: 'lib/' },
  ],
  limits: { maxUploadBytes: 64 * 1024 * 1024, contentTypes: ['*/*'], presignTtlSeconds: 600 },
});

let stack: TestStack;
let work: string;

beforeAll(async () => {
  stack = await startTestStack('sync-dry-run', { topology, env: {}, schedules: false });
  work = stack.dir;
}, 120_000);

afterAll(() => stack?.stop());

const cli = (...args: string[]) => stack.cli(...args);

/** Writes `files` under a new folder `name` of the work folder. */
const library = (name: string, files: Record<string, string>) => writeFiles(join(work, name), files);

const outcomes = (summary: SyncSummary) =>
  Object.fromEntries(summary.reports.map((r) => [r.path, [r.outcome, r.reason]]));

describe('sync --dry-run and the folder/file rule', () => {
  it('reports the files a pull target could not hold as failed, with the rule, as the real run does', async () => {
    for (const prefix of ['lib', 'free']) {
      const seeded = await library(`seed-${prefix}`, { a: 'a file', 'dir/x.txt': 'under dir' });
      const seed = await cli('sync', seeded, prefix, '--no-cache', '--json');
      expect(seed.code, seed.err).toBe(0);
    }
    // `a/b.txt` under the live file `a`; `dir` where live files lie; `ok.txt` is free.
    const local = { 'a/b.txt': 'under a file', dir: 'a file named like a folder', 'ok.txt': 'fine' };

    const lib = await library('local-lib', local);
    const dry = await cli('sync', lib, 'lib', '--no-cache', '--dry-run', '--json');
    expect(dry.code, dry.err).toBe(1);
    const predicted = JSON.parse(dry.out) as SyncSummary;
    expect(predicted).toMatchObject({ files: 3, planned: 1, failed: 2, bytesSent: 0 });
    expect(outcomes(predicted)).toEqual({
      'lib/a/b.txt': ['failed', 'path lies under "lib/a", which is a file (a pull target cannot hold both)'],
      'lib/dir': [
        'failed',
        'path is a folder of other files (a pull target cannot hold "lib/dir" as a file too)',
      ],
      'lib/ok.txt': ['planned', 'new'],
    });
    // The real run: the same two refused by the API, in the same words; the third sent.
    const real = JSON.parse((await cli('sync', lib, 'lib', '--no-cache', '--json')).out) as SyncSummary;
    expect(real).toMatchObject({ files: 3, uploaded: 1, failed: 2 });
    const { 'lib/ok.txt': _planned, ...refusedBefore } = outcomes(predicted);
    const { 'lib/ok.txt': _sent, ...refused } = outcomes(real);
    expect(refused).toEqual(refusedBefore);

    // Under free/ no pull target takes the paths: nothing is predicted refused.
    const free = await library('local-free', local);
    const freeDry = JSON.parse((await cli('sync', free, 'free', '--no-cache', '--dry-run', '--json')).out);
    expect(freeDry).toMatchObject({ files: 3, planned: 3, failed: 0 });
  }, 120_000);
});

describe('what sync does not follow', () => {
  it('a symbolic link (to a file or a folder) and a FIFO are each reported skipped with why, not left out (probe 11, U2)', async () => {
    const elsewhere = await library('moved-to-another-disk', { '1.jpg': 'one', '2.jpg': 'two' });
    const lib = await library('linked-lib', { 'real.txt': 'a real file' });
    await symlink(elsewhere, join(lib, '2024'));
    await symlink(join(lib, 'real.txt'), join(lib, 'cover.txt'));
    await promisify(execFile)('mkfifo', [join(lib, 'pipe')]);
    for (const dry of [true, false]) {
      const run = await cli('sync', lib, 'linked', '--no-cache', '--json', ...(dry ? ['--dry-run'] : []));
      expect(run.code, run.err.slice(-2000)).toBe(0);
      const summary = JSON.parse(run.out) as SyncSummary;
      expect(summary).toMatchObject({ files: 4, skipped: 3, failed: 0 });
      expect(outcomes(summary)).toMatchObject({
        'linked/2024': ['skipped', 'a symbolic link: sync does not follow links'],
        'linked/cover.txt': ['skipped', 'a symbolic link: sync does not follow links'],
        'linked/pipe': ['skipped', 'not a regular file (a FIFO)'],
      });
    }
  }, 120_000);
});

describe('content the mirror holds under any path, in any version', () => {
  it('is committed on proof, no bytes sent, when only an older version or a deleted path holds it (probe V2)', async () => {
    const first = await library('held-old', {
      'a.txt': 'content only v1 will hold',
      'c.txt': 'a deleted path held this',
    });
    expect((await cli('sync', first, 'free/held', '--no-cache', '--json')).code).toBe(0);
    // a.txt moves on to other content (v1 alone names the old), c.txt is deleted.
    const second = await library('held-new', {
      'a.txt': 'newer content',
      'c.txt': 'a deleted path held this',
    });
    expect((await cli('sync', second, 'free/held', '--no-cache', '--json')).code).toBe(0);
    expect((await cli('rm', 'free/held/c.txt')).code).toBe(0);

    const again = await library('held-again', {
      'x.txt': 'content only v1 will hold',
      'y.txt': 'a deleted path held this',
    });
    const run = await cli('sync', again, 'free/copies', '--no-cache', '--json');
    expect(run.code, run.err.slice(-2000)).toBe(0);
    const summary = JSON.parse(run.out) as SyncSummary;
    expect(summary).toMatchObject({ files: 2, deduplicated: 2, uploaded: 0, bytesSent: 0 });
  }, 120_000);
});
