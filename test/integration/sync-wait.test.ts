/**
 * `media-mirror sync --wait` through the local stack, with an S3 replica target and a pull
 * target whose agent mirrors into a folder: the command returns only once both hold every file
 * (read back from the replica bucket and the agent's folder right after it returns); with the
 * agent stopped, `--wait-timeout` ends it with exit 6 naming the target and the files behind;
 * once the agent runs again, a re-run with nothing to send waits for the unchanged files too.
 * And the lag monitor's own figures, as `GET /v1/targets` serves them, vouch for whole targets.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type WaitClient, waitForTargets } from '../../cli/sync-wait.ts';
import { systemClock } from '../../cli/upload.ts';
import { parseTopology } from '../../contracts/topology.ts';
import type { Sandbox } from '../../local/sandbox.ts';
import { MirrorApi } from '../../web/client/api.ts';
import { untilCacheable, writeFiles } from '../support/library.ts';
import { startTestStack, type TestStack } from '../support/local-stack.ts';

const S3_TARGET = 'eu-west-1';
const PULL_TARGET = 'onprem';
const topology = parseTopology({
  homeRegion: 'us-east-1',
  targets: [
    { id: S3_TARGET, kind: 's3', region: 'eu-west-1' },
    { id: PULL_TARGET, kind: 'pull' },
  ],
  limits: { maxUploadBytes: 64 * 1024 * 1024, contentTypes: ['image/*'], presignTtlSeconds: 600 },
});

let stack: TestStack;
let work: string;
let sandbox: Sandbox;
let s3For: TestStack['s3For'];

beforeAll(async () => {
  stack = await startTestStack('sync-wait', {
    topology,
    env: {},
    schedules: false,
    agents: { heartbeatSeconds: 1, waitTimeSeconds: 1, shutdownGraceSeconds: 2 },
  });
  ({ sandbox, s3For, dir: work } = stack);
}, 120_000);

afterAll(() => stack?.stop());

const cli = (...args: string[]) => stack.cli(...args);

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Writes `files` under a new folder `name` of the work folder. */
const library = (name: string, files: Record<string, Buffer>) => writeFiles(join(work, name), files);

/** The replica bucket's object at `path`, or undefined. */
async function atReplica(path: string): Promise<Buffer | undefined> {
  const target = sandbox.endpoints.targets[S3_TARGET];
  try {
    const got = await s3For(target?.bucket).send(
      new GetObjectCommand({ Bucket: target?.bucket, Key: `${target?.keyPrefix ?? ''}${path}` }),
    );
    return Buffer.from(
      await (got.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
    );
  } catch {
    return undefined;
  }
}

/** The agent's copy of `path` in its folder, or undefined. */
async function atAgent(path: string): Promise<Buffer | undefined> {
  const agent = sandbox.agents.get(PULL_TARGET);
  return readFile(join(agent?.dir as string, path)).catch(() => undefined);
}

const bytes = (label: string, size: number) => Buffer.alloc(size, label);

describe('sync --wait', () => {
  it('returns only once the S3 replica and the agent hold every file', async () => {
    const files = {
      'a.jpg': bytes('a', 10),
      'b.jpg': bytes('b', 70_000),
      'deep/c.jpg': bytes('c', 300_000),
      'deep/copy-of-a.jpg': bytes('a', 10),
    };
    const dir = await library('first', files);
    const run = await cli('sync', dir, 'photos', '--wait', '--json');
    expect(run.code, run.err.slice(-2000)).toBe(0);
    // Read back at once: the command must not have returned before both targets held them.
    for (const [rel, content] of Object.entries(files)) {
      const path = `photos/${rel}`;
      expect(sha((await atReplica(path)) ?? Buffer.alloc(0)), `${path} at ${S3_TARGET}`).toBe(sha(content));
      expect(sha((await atAgent(path)) ?? Buffer.alloc(0)), `${path} at ${PULL_TARGET}`).toBe(sha(content));
    }
    const summary = JSON.parse(run.out);
    expect(summary).toMatchObject({ files: 4, failed: 0 });
    expect(summary.wait).toMatchObject({ timedOut: false, behindFiles: 0, behind: [], dryRunTargets: [] });
    expect(summary.wait.targets).toEqual([
      { id: S3_TARGET, kind: 's3', files: 4, held: 4, seconds: expect.any(Number) },
      { id: PULL_TARGET, kind: 'pull', files: 4, held: 4, seconds: expect.any(Number) },
    ]);
    // Progress (JSON lines on stderr): the wait is a phase of its own, and `done` comes after it.
    const phases = run.err
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { phase: string; filesDone: number; filesTotal: number });
    const names = phases.map((p) => p.phase).filter((p, i, all) => p !== all[i - 1]);
    expect(names.slice(-2)).toEqual(['replicating', 'done']);
    expect(phases.at(-1)).toMatchObject({ phase: 'done', filesDone: 4, filesTotal: 4 });
  }, 180_000);

  it('sends an edit that kept the size and modification time, and two files that swapped names (probe 11, U3)', async () => {
    // As extracted from an archive, or copied with `cp -p`: same size, same modification time.
    const when = new Date('2024-06-01T12:00:00Z');
    const dir = await library('kept-stamps', { 'a.jpg': bytes('a', 4096), 'b.jpg': bytes('b', 4096) });
    for (const name of ['a.jpg', 'b.jpg']) await utimes(join(dir, name), when, when);
    const first = await cli('sync', dir, 'kept', '--wait', '--json');
    expect(first.code, first.err.slice(-2000)).toBe(0);

    // Edited in place with its time put back (as `exiftool -P` does), then the two names swapped.
    const edited = bytes('A', 4096);
    await writeFile(join(dir, 'a.jpg'), edited);
    await utimes(join(dir, 'a.jpg'), when, when);
    await rename(join(dir, 'a.jpg'), join(dir, 'swap.tmp'));
    await rename(join(dir, 'b.jpg'), join(dir, 'a.jpg'));
    await rename(join(dir, 'swap.tmp'), join(dir, 'b.jpg'));
    await untilCacheable();
    const second = await cli('sync', dir, 'kept', '--wait', '--json');
    expect(second.code, second.err.slice(-2000)).toBe(0);
    expect(JSON.parse(second.out)).toMatchObject({ files: 2, unchanged: 0, failed: 0 });
    for (const [name, content] of [
      ['a.jpg', bytes('b', 4096)],
      ['b.jpg', edited],
    ] as const) {
      expect(sha((await atReplica(`kept/${name}`)) ?? Buffer.alloc(0)), name).toBe(sha(content));
      expect(sha((await atAgent(`kept/${name}`)) ?? Buffer.alloc(0)), name).toBe(sha(content));
    }
    // Nothing touched since: the next run hashes nothing.
    const third = await cli('sync', dir, 'kept', '--json');
    expect(JSON.parse(third.out)).toMatchObject({ files: 2, unchanged: 2, bytesHashed: 0 });
  }, 180_000);

  it('with the agent stopped, ends with exit 6 naming it and the files behind; waits again once it runs', async () => {
    const agent = sandbox.agents.get(PULL_TARGET);
    if (agent === undefined) throw new Error('the stack has no agent');
    await agent.stop();
    const files = { 'x.jpg': bytes('x', 2_000), 'y.jpg': bytes('y', 3_000) };
    const dir = await library('second', files);
    const started = Date.now();
    // --wait-timeout implies --wait.
    const late = await cli('sync', dir, 'later', '--wait-timeout', '4');
    expect(late.code, late.err.slice(-2000)).toBe(6);
    expect(Date.now() - started).toBeGreaterThanOrEqual(4_000);
    expect(late.err).toContain(
      'media-mirror: not every target holds the files after 4 s: onprem (2 of 2 behind, e.g. later/x.jpg, later/y.jpg)',
    );
    expect(late.out).toMatch(/^target eu-west-1 \(s3\): 2\/2 file\(s\) held, after \d+\.\d s$/m);
    expect(late.out).toContain('target onprem (pull): 0/2 file(s) held, not all within 4 s');
    expect(late.out).toContain('behind: later/x.jpg v1: onprem has v0');
    // The replica has them; the stopped agent's folder does not.
    for (const [rel, content] of Object.entries(files)) {
      expect(sha((await atReplica(`later/${rel}`)) ?? Buffer.alloc(0))).toBe(sha(content));
      expect(await atAgent(`later/${rel}`)).toBeUndefined();
    }

    await agent.start();
    const again = await cli('sync', dir, 'later', '--wait', '--json');
    expect(again.code, again.err.slice(-2000)).toBe(0);
    const summary = JSON.parse(again.out);
    expect(summary).toMatchObject({ files: 2, unchanged: 2, uploaded: 0, bytesSent: 0 });
    expect(summary.wait.targets).toContainEqual({
      id: PULL_TARGET,
      kind: 'pull',
      files: 2,
      held: 2,
      seconds: expect.any(Number),
    });
    for (const [rel, content] of Object.entries(files)) {
      expect(sha((await atAgent(`later/${rel}`)) ?? Buffer.alloc(0))).toBe(sha(content));
    }
  }, 180_000);

  it("names the agent's refusal of a file it cannot write, as S3 targets' failures are named (probe 11, U6)", async () => {
    const agent = sandbox.agents.get(PULL_TARGET);
    if (agent === undefined) throw new Error('the stack has no agent');
    // Someone's folder, holding their file, where the mirror's file goes on the on-prem server.
    await mkdir(join(agent.dir, 'blocked', 'x.jpg'), { recursive: true });
    await writeFile(join(agent.dir, 'blocked', 'x.jpg', 'theirs.txt'), 'not the mirror’s');
    const dir = await library('blocked', { 'x.jpg': bytes('z', 1_000) });
    const run = await cli('sync', dir, 'blocked', '--wait-timeout', '6', '--json');
    expect(run.code, run.err.slice(-2000)).toBe(6);
    const summary = JSON.parse(run.out);
    expect(summary.wait.behind).toEqual([
      {
        path: 'blocked/x.jpg',
        version: 1,
        targets: [
          {
            id: PULL_TARGET,
            appliedVersion: 0,
            failure: expect.stringContaining('"blocked/x.jpg" is a folder here, so it cannot be a file'),
          },
        ],
      },
    ]);
    const status = await cli('status', 'blocked/x.jpg', '--json');
    const onprem = JSON.parse(status.out).targets.find((t: { id: string }) => t.id === PULL_TARGET);
    expect(onprem.failure).toMatchObject({ version: 1, reason: expect.stringContaining('is a folder here') });
    // Once the folder is gone, the next delivery applies it and the failure is gone with it.
    await rm(join(agent.dir, 'blocked', 'x.jpg'), { recursive: true });
    const again = await cli('sync', dir, 'blocked', '--wait', '--wait-timeout', '60', '--json');
    expect(again.code, again.err.slice(-2000)).toBe(0);
    const after = JSON.parse((await cli('status', 'blocked/x.jpg', '--json')).out);
    expect(after.targets.find((t: { id: string }) => t.id === PULL_TARGET)).not.toHaveProperty('failure');
  }, 180_000);

  it("takes the lag monitor's figures, measured after the wait began, as every target holding the files", async () => {
    // The files the tests above left at every target (they checked each copy).
    const items = [
      'photos/a.jpg',
      'photos/b.jpg',
      'photos/deep/c.jpg',
      'photos/deep/copy-of-a.jpg',
      'later/x.jpg',
      'later/y.jpg',
    ].map((path) => ({ path, version: 1 }));
    const api = new MirrorApi({ baseUrl: sandbox.endpoints.api, token: sandbox.endpoints.token });
    const asked: string[] = [];
    const client: WaitClient = {
      getFile: (path) => {
        asked.push(path);
        return api.getFile(path);
      },
      listTargets: () => api.listTargets(),
      health: () => api.health(),
    };
    // The monitor runs as its schedule would, every 300 ms, while the wait goes on.
    let waiting = true;
    const monitor = (async () => {
      while (waiting) {
        await sandbox.measureLag();
        await new Promise((r) => setTimeout(r, 300));
      }
    })();
    // One file read per round, a round every 5 s: reading them all would take 30 s.
    const report = await waitForTargets({ client, clock: systemClock }, items, {
      timeoutSeconds: 60,
      perRound: 1,
      concurrency: 1,
      firstDelayMs: 5000,
      maxDelayMs: 5000,
    }).finally(() => {
      waiting = false;
    });
    await monitor;
    expect(report.timedOut).toBe(false);
    expect(report.targets.map((t) => [t.id, t.held, t.files])).toEqual([
      [S3_TARGET, 6, 6],
      [PULL_TARGET, 6, 6],
    ]);
    expect(asked.length).toBeLessThan(items.length);
  }, 120_000);
});
