/**
 * The hash worker: answers `WorkerRequest`s with progress and the hex SHA-256 of the
 * requested Blob range. Jobs run concurrently (each has its own hasher); the page
 * sends one whole-file job, then one job per multipart part.
 */
import { hashRange, type WorkerReply, type WorkerRequest } from './hashing.ts';

/** The bits of DedicatedWorkerGlobalScope used here (the DOM lib does not declare it). */
const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent<WorkerRequest>) => void) | null;
  postMessage(message: WorkerReply): void;
};

/** At most this often, so a fast hash does not flood the page with messages. */
const PROGRESS_EVERY_MS = 100;

scope.onmessage = (event) => {
  const job = event.data;
  let last = 0;
  hashRange(job, (bytes) => {
    const now = performance.now();
    if (now - last < PROGRESS_EVERY_MS) return;
    last = now;
    scope.postMessage({ id: job.id, type: 'progress', bytes });
  }).then(
    (sha256) => {
      scope.postMessage({ id: job.id, type: 'progress', bytes: job.end - job.start });
      scope.postMessage({ id: job.id, type: 'done', sha256 });
    },
    (error: unknown) => {
      const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      scope.postMessage({
        id: job.id,
        type: 'error',
        message: `reading or hashing the file failed (${message})`,
      });
    },
  );
};
