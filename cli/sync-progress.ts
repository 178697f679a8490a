/**
 * `sync`'s progress: files done of the total, bytes hashed and sent, the send rate, failures.
 * The listing phase, before any file is looked at, counts the feed's versions and pages read.
 * On a terminal a cli-progress bar; otherwise a JSON line at most every few seconds (and a last
 * one), so a log of a 100,000-file import stays readable. Both on stderr: stdout has the summary.
 */
// The default export: Node's ESM loader finds no named `Format` in this CommonJS module.
import cliProgress, { SingleBar } from 'cli-progress';
import { formatBytes } from '../common/format-bytes.ts';
import type { Writable } from './progress.ts';

export interface SyncCounts {
  /** `replicating` (`--wait`): `filesDone` counts the files every target holds. */
  phase: 'listing' | 'syncing' | 'committing' | 'replicating' | 'done';
  filesTotal: number;
  /** Files settled: committed, unchanged, skipped or failed (a file sent counts once its commit is seen). */
  filesDone: number;
  /** Versions read from the change feed so far: the listing reads the whole mirror's feed first. */
  versionsRead: number;
  /** Feed pages (requests) read so far, up to 1,000 versions each. */
  pages: number;
  bytesHashed: number;
  bytesSent: number;
  failed: number;
}

export interface SyncProgress {
  update(counts: Readonly<SyncCounts>): void;
  stop(): void;
}

export function createJsonLinesSyncProgress(
  out: Writable,
  now: () => number = Date.now,
  everyMs = 2000,
): SyncProgress {
  const start = now();
  let last = Number.NEGATIVE_INFINITY;
  let lastPhase: string | undefined;
  let pending: Readonly<SyncCounts> | undefined;
  const write = (counts: Readonly<SyncCounts>) => {
    last = now();
    lastPhase = counts.phase;
    pending = undefined;
    const elapsedSeconds = Math.round(last - start) / 1000;
    out.write(`${JSON.stringify({ ...counts, elapsedSeconds })}\n`);
  };
  return {
    update(counts) {
      if (counts.phase !== lastPhase || now() - last >= everyMs) write(counts);
      else pending = { ...counts };
    },
    stop() {
      if (pending !== undefined) write(pending);
    },
  };
}

export function createTtySyncProgress(
  stream: NodeJS.WritableStream,
  now: () => number = Date.now,
): SyncProgress {
  const start = now();
  const files =
    '{phase} [{bar}] {value}/{total} files | {hashed} hashed | {sent} sent at {rate}/s | {failed} failed';
  // The listing has no file to count yet, only the feed read so far (a silent bar looks like a
  // hang); the bar's own clock keeps ticking between pages.
  const listing = '{phase} {versions} version(s) read in {pages} page(s) | {duration_formatted}';
  const bar = new SingleBar({
    stream,
    format: (options, params, payload: ReturnType<typeof payloadOf>) =>
      cliProgress.Format.Formatter(
        { ...options, format: payload.listing ? listing : files },
        params,
        payload,
      ),
    hideCursor: true,
    barsize: 24,
    fps: 5,
  });
  let started = false;
  const payloadOf = (c: Readonly<SyncCounts>) => {
    const seconds = Math.max((now() - start) / 1000, 0.001);
    return {
      phase: c.phase.padEnd(10),
      listing: c.phase === 'listing',
      versions: c.versionsRead,
      pages: c.pages,
      hashed: formatBytes(c.bytesHashed),
      sent: formatBytes(c.bytesSent),
      rate: formatBytes(c.bytesSent / seconds),
      failed: c.failed,
    };
  };
  return {
    update(counts) {
      if (!started) {
        bar.start(Math.max(counts.filesTotal, 1), counts.filesDone, payloadOf(counts));
        started = true;
      }
      bar.setTotal(Math.max(counts.filesTotal, 1));
      bar.update(counts.filesDone, payloadOf(counts));
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}
