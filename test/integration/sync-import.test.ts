/**
 * Bringing a library in: `media-mirror sync` of a folder of 2,000 small files (mixed sizes,
 * some with the same content) into the local stack. Every file ends committed with its
 * SHA-256 and visible in `ls` and at the S3 target; a second run sends nothing and hashes
 * nothing (the hash cache). Prints the figures.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseTopology } from '../../contracts/topology.ts';
import type { Sandbox } from '../../local/sandbox.ts';
import { untilCacheable, withDuplicates, writeLibrary } from '../support/library.js';
import { startTestStack, type TestStack } from '../support/local-stack.ts';
import { waitFor } from '../support/wait.js';

/**
 * 2,000 by default; MIRROR_IMPORT_FILES (at least 300, a multiple of 10) sizes it down where the
 * machine is too slow for the full run (docs/cli.md has the figures).
 */
const FILES = Number(process.env.MIRROR_IMPORT_FILES ?? 2000);
/** The first run's library; 200 more (100 copies of its content, 100 new) before the second run. */
const FIRST = FILES - 200;
/** Every 10th file of the first run repeats content five files earlier under its own path. */
const DUPLICATE_EVERY = 10;
const TARGET = 'eu-west-1';
const topology = parseTopology({
  homeRegion: 'us-east-1',
  targets: [{ id: TARGET, kind: 's3', region: 'eu-west-1' }],
});

let stack: TestStack;
let work: string;
let sandbox: Sandbox;
let s3For: TestStack['s3For'];
/** Mirror path → SHA-256 of what the folder holds there. */
const expected = new Map<string, string>();

/** Writes files `from` to `to - 1` (test/support/library.ts), each expected under `import/`. */
const writeFiles = (lib: string, from: number, to: number, source: (i: number) => number) =>
  writeLibrary(lib, from, to, source, (path, content) => expected.set(`import/${path}`, sha(content)));

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

beforeAll(async () => {
  stack = await startTestStack('sync-import', { topology, env: {}, schedules: false });
  ({ sandbox, s3For, dir: work } = stack);
}, 120_000);

afterAll(() => stack?.stop());

const cli = (...args: string[]) => stack.cli(...args);

async function replicaKeys(): Promise<Set<string>> {
  const keys = new Set<string>();
  let token: string | undefined;
  do {
    const page = await s3For(sandbox.endpoints.targets[TARGET]?.bucket).send(
      new ListObjectsV2Command({
        Bucket: sandbox.endpoints.targets[TARGET]?.bucket,
        Prefix: 'import/',
        ContinuationToken: token,
      }),
    );
    for (const o of page.Contents ?? []) if (o.Key) keys.add(o.Key);
    token = page.NextContinuationToken;
  } while (token);
  return keys;
}

describe('sync of a 2,000-file library into the local stack', () => {
  it('commits every file, shows each in ls and at the target; later runs send only what is new', async () => {
    const lib = join(work, 'library');
    const firstBytes = await writeFiles(lib, 0, FIRST, withDuplicates(DUPLICATE_EVERY));
    await untilCacheable();

    const first = await cli('sync', lib, 'import', '--jobs', '16', '--json');
    expect(first.code, first.err.slice(-2000)).toBe(0);
    const one = JSON.parse(first.out);
    expect(one).toMatchObject({ files: FIRST, failed: 0, skipped: 0, unchanged: 0 });
    // A repeated content is sent by its first path, and by a later one whose claim came before
    // the first was committed; never more than once per path.
    expect(one.uploaded + one.deduplicated).toBe(FIRST);
    expect(one.bytesSent).toBeLessThanOrEqual(firstBytes);
    expect(one.bytesHashed).toBe(firstBytes);

    // 100 copies of content the mirror holds (new paths), 100 files of new content.
    const copies = FIRST + 100;
    // Files 0, 10, 20... hold their own content (each tenth file repeats another's).
    await writeFiles(lib, FIRST, copies, (i) => ((i - FIRST) * 10) % FIRST);
    const newBytes = await writeFiles(lib, copies, FILES, (i) => i);
    await untilCacheable();
    const second = await cli('sync', lib, 'import', '--jobs', '16', '--json');
    expect(second.code, second.err.slice(-2000)).toBe(0);
    const two = JSON.parse(second.out);
    expect(two).toMatchObject({
      files: FILES,
      unchanged: FIRST,
      deduplicated: 100,
      uploaded: 100,
      failed: 0,
    });
    expect(two.bytesSent).toBe(newBytes);

    const listed = await cli('ls', 'import/', '--json');
    const files = JSON.parse(listed.out).files as { path: string; sha256: string; version: number }[];
    expect(files).toHaveLength(FILES);
    expect(new Map(files.map((f) => [f.path, f.sha256]))).toEqual(expected);
    expect(files.every((f) => f.version === 1)).toBe(true);

    const started = Date.now();
    const atTarget = await waitFor(
      'every file at the S3 target',
      async () => {
        const keys = await replicaKeys();
        return keys.size === FILES ? keys : undefined;
      },
      600_000,
      2_000,
    );
    expect([...atTarget].sort()).toEqual([...expected.keys()].sort());
    const replicatedSeconds = (Date.now() - started) / 1000;

    const third = await cli('sync', lib, 'import', '--jobs', '16', '--json');
    expect(third.code, third.err.slice(-2000)).toBe(0);
    const three = JSON.parse(third.out);
    expect(three).toMatchObject({
      files: FILES,
      unchanged: FILES,
      uploaded: 0,
      deduplicated: 0,
      failed: 0,
      bytesSent: 0,
      bytesHashed: 0,
    });
    console.log(
      `sync of ${FIRST} files (${firstBytes} bytes): ${one.seconds} s (${one.uploaded} uploaded, ` +
        `${one.deduplicated} deduplicated, ${one.bytesSent} bytes sent); 200 more (100 copies): ` +
        `${two.seconds} s; all ${FILES} at the S3 target ${replicatedSeconds.toFixed(1)} s after; ` +
        `a run with nothing to do: ${three.seconds} s`,
    );
  }, 3_600_000);
});
