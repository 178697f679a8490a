/**
 * `sync`'s progress: files done of the total, bytes hashed and sent, the send rate, failures.
 * On a terminal a cli-progress bar; otherwise a JSON line at most every few seconds (and a last
 * one), so a log of a 100,000-file import stays readable. Both on stderr: stdout has the summary.
 */
import { SingleBar } from 'cli-progress';
import { formatBytes } from '../common/format-bytes.ts';
import type { Writable } from './progress.ts';

export interface SyncCounts {
  /** `replicating` (`--wait`): `filesDone` counts the files every target holds. */
  phase: 'listing' | 'syncing' | 'committing' | 'replicating' | 'done';
  filesTotal: number;
  filesDone: number;
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
  const bar = new SingleBar({
    stream,
    format:
      '{phase} [{bar}] {value}/{total} files | {hashed} hashed | {sent} sent at {rate}/s | {failed} failed',
    hideCursor: true,
    barsize: 24,
    fps: 5,
  });
  let started = false;
  const payload = (c: Readonly<SyncCounts>) => {
    const seconds = Math.max((now() - start) / 1000, 0.001);
    return {
      phase: c.phase.padEnd(10),
      hashed: formatBytes(c.bytesHashed),
      sent: formatBytes(c.bytesSent),
      rate: formatBytes(c.bytesSent / seconds),
      failed: c.failed,
    };
  };
  return {
    update(counts) {
      if (!started) {
        bar.start(Math.max(counts.filesTotal, 1), counts.filesDone, payload(counts));
        started = true;
      }
      bar.setTotal(Math.max(counts.filesTotal, 1));
      bar.update(counts.filesDone, payload(counts));
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}
