/**
 * VersionsCommitted through the ingest handler and Powertools' EMF lines, as the local stack's
 * /metrics reads them: a commit is counted once, even when the invocation that made it dies before
 * its end (a timeout in the fan-out or in a later record's backoff), and a retry that finds the
 * upload already committed does not count it again; nor does a second delivery racing the first.
 */
import { randomBytes } from 'node:crypto';
import type { SQSRecord } from 'aws-lambda';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { makeLogger, makeMetrics, makeTelemetry } from '../../../functions/adapters/powertools.js';
import type { BlobEvent } from '../../../functions/core/ingest.js';
import type { FanoutQueue } from '../../../functions/core/ports.js';
import { createIngestHandler } from '../../../functions/handlers/ingest-handler.js';
import { parseEmfLine } from '../../../local/metrics.ts';
import { lambdaContext } from '../../support/api-events.js';
import { claimPendingUpload, inMemoryCore, storeBlob } from '../../support/in-memory-core.js';
import { fifoRecord } from '../../support/sqs-events.js';
import { waitFor } from '../../support/wait.js';

/** The EMF lines the functions print, as the local stack's log sink sees them. */
function captureEmf(): { total: (name: string) => number } {
  const lines: string[] = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    lines.push(...String(chunk).split('\n'));
    return true;
  });
  return {
    total: (name) =>
      lines
        .flatMap((line) => parseEmfLine(line) ?? [])
        .filter((s) => s.name === name)
        .reduce((sum, s) => sum + s.value, 0),
  };
}

/** One Lambda execution environment of the ingest: its own Powertools Metrics, as ingest.ts makes it. */
function environment(core: ReturnType<typeof inMemoryCore>, fanout: FanoutQueue) {
  const logger = makeLogger('ingest');
  logger.setLogLevel('SILENT');
  const telemetry = makeTelemetry(logger, makeMetrics('ingest'));
  return createIngestHandler({ ...core.deps, fanout, metrics: telemetry.metrics, telemetry });
}

function s3Record(event: BlobEvent): SQSRecord {
  const body = {
    Records: [
      {
        eventName: 'ObjectCreated:Put',
        eventTime: new Date().toISOString(),
        s3: {
          bucket: { name: 'origin' },
          object: { key: event.key, size: event.size, versionId: event.versionId },
        },
      },
    ],
  };
  return fifoRecord(body, 'ingest');
}

const sends: FanoutQueue = { send: async () => undefined };
/** A fan-out that never answers: the invocation runs on past its commit until its timeout kills it. */
const hangs: FanoutQueue = { send: () => new Promise<void>(() => undefined) };

afterEach(() => {
  vi.restoreAllMocks();
});

describe('VersionsCommitted survives an invocation killed after its commit', () => {
  it('is published when the commit lands, before the invocation ends; the retry that finds it committed adds none', async () => {
    const core = inMemoryCore();
    const bytes = randomBytes(2048);
    const upload = await claimPendingUpload(core.ledger, 'media/a.png', bytes);
    const record = s3Record(storeBlob(core.blobs, bytes));
    const emf = captureEmf();

    // The first invocation commits, then hangs in the fan-out: Lambda kills it at its timeout,
    // and its end-of-invocation flush never runs.
    void environment(core, hangs)({ Records: [record] }, lambdaContext('ingest'));
    await waitFor(
      'the upload committed',
      async () => (await core.ledger.getUpload(upload.uploadId))?.status === 'committed',
      5_000,
      5,
    );
    await new Promise((resolve) => setImmediate(resolve));
    expect(emf.total('VersionsCommitted')).toBe(1);

    // SQS delivers the message again to a fresh environment: the upload is committed already.
    const retry = await environment(core, sends)({ Records: [record] }, lambdaContext('ingest'));
    expect(retry.batchItemFailures).toEqual([]);
    expect(emf.total('VersionsCommitted')).toBe(1);
    expect(emf.total('UploadsUnchanged')).toBe(0);
  });

  it('two deliveries of one event at once count its commit once', async () => {
    const core = inMemoryCore();
    const bytes = randomBytes(2048);
    const upload = await claimPendingUpload(core.ledger, 'media/b.png', bytes);
    const record = s3Record(storeBlob(core.blobs, bytes));
    const emf = captureEmf();

    const outs = await Promise.all([
      environment(core, sends)({ Records: [record] }, lambdaContext('ingest')),
      environment(core, sends)({ Records: [record] }, lambdaContext('ingest')),
    ]);
    expect(outs.map((o) => o.batchItemFailures)).toEqual([[], []]);
    expect(await core.ledger.getUpload(upload.uploadId)).toMatchObject({ status: 'committed', version: 1 });
    expect(emf.total('VersionsCommitted')).toBe(1);
  });
});
