/**
 * `media-mirror sync --from s3://...` spools objects in `$TMPDIR/media-mirror-sync-*`: stopped
 * by Ctrl-C (SIGINT) or SIGTERM mid-run, the installed-style bin (bin/media-mirror.js, run as a
 * process of its own with a TMPDIR of its own) leaves no such folder behind, prints with `--json`
 * the summary of the run as it stands (what was sent, what was not finished), and still ends by
 * the signal. A run after it finishes the import.
 */
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { CreateBucketCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SyncSummary } from '../../cli/sync.ts';
import { parseTopology } from '../../contracts/topology.ts';
import type { Sandbox } from '../../local/sandbox.ts';
import { binArgs, runCliOn, s3Env, startTestStack, type TestStack } from '../support/local-stack.ts';
import { spawnWatched, type WatchedChild } from '../support/spawn-watched.ts';
import { waitFor } from '../support/wait.ts';

const topology = parseTopology({
  homeRegion: 'us-east-1',
  targets: [{ id: 'eu-west-1', kind: 's3', region: 'eu-west-1' }],
  limits: { maxUploadBytes: 64 * 1024 * 1024, contentTypes: ['image/*'], presignTtlSeconds: 600 },
});
const OBJECTS = 40;

let stack: TestStack;
let work: string;
let sandbox: Sandbox;
let s3: S3Client;

beforeAll(async () => {
  stack = await startTestStack('sync-int', { topology, env: {}, schedules: false });
  ({ sandbox, s3, dir: work } = stack);
  await s3.send(new CreateBucketCommand({ Bucket: 'old-library' }));
  // Enough objects (each distinct) that the run is far from done when the signal comes.
  for (let i = 0; i < OBJECTS; i++) {
    const body = Buffer.alloc(256 * 1024, i);
    await s3.send(new PutObjectCommand({ Bucket: 'old-library', Key: `media/${i}.jpg`, Body: body }));
  }
}, 180_000);

afterAll(() => stack?.stop());

/** What each interrupted run reported committed (found unchanged, or sent and seen committed). */
const committedBefore: number[] = [];

const spools = async (dir: string) =>
  (await readdir(dir)).filter((name) => name.startsWith('media-mirror-sync-'));

const until = <T>(what: string, probe: () => Promise<T | undefined>) => waitFor(what, probe, 90_000);

/** Starts `sync --from` with a TMPDIR of its own; resolves once its spool folder holds an object. */
async function startSync(tmp: string): Promise<WatchedChild> {
  const run = spawnWatched(
    binArgs(
      sandbox,
      'sync',
      '--from',
      's3://old-library/media',
      'imported',
      '--no-cache',
      '--jobs',
      '2',
      '--json',
    ),
    { cwd: work, env: { PATH: process.env.PATH, TMPDIR: tmp, ...s3Env(sandbox) } },
  );
  await until(`a spooled object in ${tmp} (stderr: ${run.err()})`, async () => {
    for (const spool of await spools(tmp)) if ((await readdir(join(tmp, spool))).length > 0) return true;
    return undefined;
  });
  return run;
}

describe('sync --from interrupted', () => {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`leaves no media-mirror-sync-* folder behind on ${signal}`, async () => {
      const tmp = join(work, `tmp-${signal}`);
      await mkdir(tmp);
      const run = await startSync(tmp);
      expect(await spools(tmp)).toHaveLength(1);
      run.child.kill(signal);
      const [code, endedBy] = await run.exited;
      expect(await spools(tmp)).toEqual([]);
      // Still ended by the signal, as an uncaught one ends a process (a shell shows 130 / 143).
      expect({ code, endedBy }).toEqual({ code: null, endedBy: signal });
      // The run as it stood, in one JSON document: every file is counted once.
      const summary = JSON.parse(run.out()) as SyncSummary;
      const interrupted = summary.interrupted;
      if (interrupted === undefined) throw new Error(`no interrupted summary: ${run.out()}`);
      expect(summary.files).toBe(OBJECTS);
      expect(interrupted.notFinished).toBeGreaterThan(0);
      const { unchanged, uploaded, deduplicated, skipped, failed } = summary;
      expect(unchanged + uploaded + deduplicated + skipped + failed + interrupted.notFinished).toBe(OBJECTS);
      const awaiting = summary.reports.filter((r) => r.reason?.startsWith('sent; its commit was not seen'));
      expect(awaiting).toHaveLength(interrupted.awaitingCommit);
      for (const r of awaiting) expect([r.outcome, r.version]).toEqual(['uploaded', undefined]);
      committedBefore.push(
        unchanged + summary.reports.filter((r) => r.outcome !== 'failed' && r.version !== undefined).length,
      );
    }, 180_000);
  }

  it('a run after the interrupts finishes the import, every object at its path', async () => {
    const done = await runCliOn(
      sandbox,
      ['sync', '--from', 's3://old-library/media', 'imported', '--no-cache', '--json'],
      { cwd: work, env: s3Env(sandbox) },
    );
    expect(done.code, done.err).toBe(0);
    const summary = JSON.parse(done.out) as SyncSummary;
    expect(summary.interrupted).toBeUndefined();
    expect([summary.files, summary.failed]).toEqual([OBJECTS, 0]);
    expect(summary.unchanged + summary.uploaded + summary.deduplicated).toBe(OBJECTS);
    // What the interrupted runs saw committed is not sent again.
    expect(committedBefore).toHaveLength(2);
    expect(summary.unchanged).toBeGreaterThanOrEqual(Math.max(...committedBefore));
  }, 180_000);
});
