/**
 * (h) Bringing a library in: `media-mirror sync` of a folder (the import test's library,
 * test/support/library.ts: small files of 1 byte to ~12 KiB, every 10th repeating another's
 * content) until both S3 targets hold every file, against `rclone copy --transfers 16` of the
 * same folder into two fresh buckets on the same S3 (both copies at once, as the two targets
 * are served). Then each again with nothing changed: sync's hash cache against rclone's listing.
 * The CLI runs as a user runs it: the bundle the package ships (cli/bundle.ts), in a process of
 * its own.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ENDPOINTS_FILE } from '../local/data-dir.ts';
import { untilCacheable, withDuplicates, writeLibrary } from '../test/support/library.ts';
import { targetProbes, watchTargets } from './load.ts';
import type { Rclone } from './rclone.ts';
import type { BenchStack } from './stack.ts';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** As many files in flight as rclone's transfers. */
const JOBS = 16;

export interface SyncRun {
  /** First sync: from its start until both S3 targets hold every file. */
  readonly seconds: number;
  /** First sync: until it exits (every file committed at the origin). */
  readonly committedSeconds: number;
  readonly rcloneSeconds: number;
  /** Second sync, nothing changed: until it exits. */
  readonly againSeconds: number;
  readonly rcloneAgainSeconds: number;
  /** What the first sync reported. */
  readonly bytesSent: number;
  readonly deduplicated: number;
}

/** `media-mirror sync <dir> <prefix> --json` in a process of its own, the shipped bundle; its summary. */
async function cliSync(stack: BenchStack, dir: string, prefix: string, cache: string) {
  const args = [
    stack.cli,
    '--endpoints',
    join(stack.dataDir, ENDPOINTS_FILE),
    'sync',
    dir,
    prefix,
    '--json',
    '--jobs',
    String(JOBS),
    '--cache',
    cache,
  ];
  const out = await run(process.execPath, args, {
    cwd: ROOT,
    maxBuffer: 256 * 1024 * 1024,
  });
  return JSON.parse(out.stdout) as { files: number; failed: number; bytesSent: number; deduplicated: number };
}

export async function syncRun(
  stack: BenchStack,
  rclone: Rclone,
  options: { files: number; run: number; timeoutMs: number },
): Promise<SyncRun> {
  const work = await mkdtemp(join(stack.dataDir, `sync-${options.run}-`));
  try {
    const dir = join(work, 'library');
    const paths: string[] = [];
    await writeLibrary(dir, 0, options.files, withDuplicates(10), (path) => paths.push(path));
    // Else the run again hashes the files the first run read within 3 s of their writing.
    await untilCacheable();
    const prefix = `bench/sync-${options.run}`;
    const expected = new Set(paths.map((p) => `${prefix}/${p}`));
    const cache = join(work, 'sync-cache.json');

    const started = performance.now();
    const summary = await cliSync(stack, dir, prefix, cache);
    const committedSeconds = (performance.now() - started) / 1000;
    if (summary.failed > 0) throw new Error(`sync: ${summary.failed} file(s) failed`);
    const seen = await watchTargets(targetProbes(stack, false), prefix, expected, {
      intervalMs: 100,
      timeoutMs: options.timeoutMs,
    });
    const last = Math.max(
      ...[...seen.values()].flatMap((m) => [
        ...m.values(),
        m.size < expected.size ? Number.POSITIVE_INFINITY : 0,
      ]),
    );
    const seconds = (last - started) / 1000;
    const again0 = performance.now();
    await cliSync(stack, dir, prefix, cache);
    const againSeconds = (performance.now() - again0) / 1000;

    const buckets = [`rclone-sync-${options.run}-a`, `rclone-sync-${options.run}-b`];
    for (const b of buckets) await rclone('mkdir', `loc:${b}`);
    const copy = () =>
      Promise.all(buckets.map((b) => rclone('copy', '--transfers', String(JOBS), dir, `loc:${b}`)));
    const peer0 = performance.now();
    await copy();
    const rcloneSeconds = (performance.now() - peer0) / 1000;
    const peerAgain0 = performance.now();
    await copy();
    const rcloneAgainSeconds = (performance.now() - peerAgain0) / 1000;
    return {
      seconds,
      committedSeconds,
      rcloneSeconds,
      againSeconds,
      rcloneAgainSeconds,
      bytesSent: summary.bytesSent,
      deduplicated: summary.deduplicated,
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
