/**
 * (d) One new file among a tree already mirrored: the time from its upload's start until
 * both S3 targets hold it, against one `rclone sync` of the same tree (source holding the
 * new file, destination holding the rest), with the flags that make rclone fastest on S3
 * (`--checksum --fast-list`: compare by listing alone, no HEAD per object).
 */
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { sleep } from '../common/retry.ts';
import { type BenchFile, makeFiles, targetProbes, uploadAll, uploadOne, watchTargets } from './load.ts';
import type { Rclone } from './rclone.ts';
import type { BenchStack } from './stack.ts';

const TREE = 'bench/tree';
const SYNC_FLAGS = ['--checksum', '--fast-list', '--transfers', '16'];

export interface OneNewTree {
  /** One run: seconds for ours, seconds for rclone's sync. */
  run(i: number): Promise<{ seconds: number; rcloneSeconds: number }>;
}

async function inBucket(stack: BenchStack, bucket: string, key: string): Promise<boolean> {
  try {
    await stack.s3(bucket).send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return true;
  } catch {
    return false;
  }
}

/** Seconds from the upload's start until every bucket holds the file (Infinity after 2 minutes). */
async function untilInBoth(
  stack: BenchStack,
  targets: BenchStack['s3Targets'],
  file: BenchFile,
): Promise<number> {
  const t0 = performance.now();
  await uploadOne(stack, file);
  const pending = new Set(targets);
  while (pending.size > 0) {
    if (performance.now() > t0 + 120_000) return Number.POSITIVE_INFINITY;
    for (const t of [...pending])
      if (await inBucket(stack, t.bucket, t.keyPrefix + file.path)) pending.delete(t);
    if (pending.size > 0) await sleep(20);
  }
  return (performance.now() - t0) / 1000;
}

/** Uploads the tree (tiny files), waits until both S3 targets hold it, and gives rclone the same tree. */
export async function seedTree(
  stack: BenchStack,
  rclone: Rclone,
  options: { files: number; log: (line: string) => void },
): Promise<OneNewTree> {
  const files = makeFiles(TREE, options.files, 1024);
  const started = performance.now();
  await uploadAll(stack, files, 16);
  const expected = new Set(files.map((f) => f.path));
  const seen = await watchTargets(targetProbes(stack, false), TREE, expected, {
    intervalMs: 1000,
    timeoutMs: 1_800_000,
  });
  for (const [id, m] of seen)
    if (m.size < expected.size) throw new Error(`${id} holds ${m.size} of ${expected.size} seeded files`);
  options.log(`seeded ${options.files} files in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  const [a, b] = stack.s3Targets;
  if (a === undefined || b === undefined) throw new Error('the one-new-file figure needs two S3 targets');
  const source = 'loc:rclone-tree-src/tree';
  const destination = 'loc:rclone-tree-dst/tree';
  await rclone('mkdir', 'loc:rclone-tree-src');
  await rclone('mkdir', 'loc:rclone-tree-dst');
  // The replica bucket is in its target's region: rclone signs for it there (a connection string).
  const replica = `loc,region=${a.region}:${a.bucket}/${a.keyPrefix}`;
  await rclone('copy', ...SYNC_FLAGS, `${replica}${TREE}`, source);
  await rclone('sync', ...SYNC_FLAGS, source, destination);
  return {
    async run(i) {
      const file = makeFiles(`${TREE}/new`, i + 1, 1024).at(-1) as BenchFile;
      const seconds = await untilInBoth(stack, [a, b], file);
      await rclone('copyto', `${replica}${file.path}`, `${source}/${file.path.slice(TREE.length + 1)}`);
      const sync = await rclone('sync', ...SYNC_FLAGS, source, destination);
      const copied = await rclone('lsf', `${destination}/new`);
      if (!copied.stdout.includes(file.path.split('/').at(-1) as string))
        throw new Error('rclone sync did not copy the new file');
      return { seconds, rcloneSeconds: sync.seconds };
    },
  };
}
