/**
 * The reconcile function's CloudWatch metrics, read from the EMF lines Powertools prints: a dry run
 * (the direct invoke docs/deploy.md shows) re-sends nothing, so it reports no ReconcileResent; it
 * still reports the drift it found (ReconcileMissing, ReconcileAltered).
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { InMemoryLedger } from '../../../functions/adapters/in-memory-ledger.js';
import { makeLogger, makeMetrics, makeTelemetry } from '../../../functions/adapters/powertools.js';
import { commitVersion } from '../../../functions/core/commit.js';
import { createReconcileHandler } from '../../../functions/handlers/reconcile-handler.js';
import { lambdaContext } from '../../support/api-events.js';
import { sha256Hex } from '../../support/domain.js';

/** The metric values printed while `run` runs, by name (per-target metrics of `target` only). */
async function metricsOf(run: () => Promise<unknown>, target: string): Promise<Record<string, unknown>> {
  const lines: string[] = [];
  const write = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    lines.push(...String(chunk).split('\n'));
    return true;
  });
  try {
    await run();
  } finally {
    write.mockRestore();
  }
  const values: Record<string, unknown> = {};
  for (const line of lines.filter((l) => l.includes('"_aws"'))) {
    const doc = JSON.parse(line) as {
      _aws: { CloudWatchMetrics: { Metrics: { Name: string }[] }[] };
    } & Record<string, unknown>;
    if (doc.target !== undefined && doc.target !== target) continue;
    for (const m of doc._aws.CloudWatchMetrics.flatMap((d) => d.Metrics)) values[m.Name] = doc[m.Name];
  }
  return values;
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('reconcile handler: metrics', () => {
  it('a dry run reports no ReconcileResent: it re-sent nothing (probe ops2)', async () => {
    const ledger = new InMemoryLedger();
    const sent: unknown[] = [];
    const deps = {
      ledger,
      clock: { now: () => new Date() },
      feedShards: 1,
      targets: [{ id: 'alpha' }],
      fanout: { send: async (message: unknown) => void sent.push(message) },
    };
    // Committed, never applied at alpha: behind, so a run re-sends it.
    await commitVersion(
      { ...deps, targets: [] },
      {
        uploadId: randomUUID(),
        path: 'media/a.txt',
        sha256: sha256Hex('a'),
        size: 1,
        contentType: 'text/plain',
        deleted: false,
      },
    );
    const handler = createReconcileHandler({
      ...deps,
      telemetry: makeTelemetry(makeLogger('reconcile'), makeMetrics('reconcile')),
    });

    const dry = await metricsOf(() => handler({ dryRun: true }, lambdaContext('reconcile')), 'alpha');
    expect(sent).toEqual([]);
    expect(dry.ReconcileResent).toBeUndefined();
    expect(dry.ReconcileMissing).toBe(0);
    expect(dry.ReconcileAltered).toBe(0);

    const real = await metricsOf(() => handler({}, lambdaContext('reconcile')), 'alpha');
    expect(sent).toHaveLength(1);
    expect(real.ReconcileResent).toBe(1);
  });
});

describe('reconcile handler: foreign objects', () => {
  it('counts the objects in a replica bucket the mirror does not hold, per target (ReconcileForeign)', async () => {
    const ledger = new InMemoryLedger();
    const replica = {
      stat: async () => undefined,
      list: async () => ({ objects: [{ key: 'stray.bin', path: 'stray.bin' }] }),
    };
    const handler = createReconcileHandler({
      ledger,
      clock: { now: () => new Date() },
      targets: [{ id: 'alpha' }],
      fanout: { send: async () => undefined },
      replicas: (id) => (id === 'alpha' ? replica : undefined),
      telemetry: makeTelemetry(makeLogger('reconcile'), makeMetrics('reconcile')),
    });
    let report: Awaited<ReturnType<typeof handler>> | undefined;
    const metrics = await metricsOf(async () => {
      report = await handler({}, lambdaContext('reconcile'));
    }, 'alpha');
    expect(metrics.ReconcileForeign).toBe(1);
    expect(report?.foreign.alpha).toMatchObject({
      foreign: 1,
      sample: [{ key: 'stray.bin', reason: 'unknown' }],
    });
  });
});

describe('reconcile handler: where a run starts', () => {
  it('fromStart walks every head, those before a cut-short run’s checkpoint too, and leaves the checkpoint (probe crashy)', async () => {
    const ledger = new InMemoryLedger();
    const sent: { path?: string }[] = [];
    const deps = {
      ledger,
      clock: { now: () => new Date() },
      feedShards: 1,
      targets: [{ id: 'alpha' }],
      fanout: { send: async (message: { path?: string }) => void sent.push(message) },
    };
    for (const path of ['media/a.txt', 'media/b.txt']) {
      await commitVersion(
        { ...deps, targets: [] },
        {
          uploadId: randomUUID(),
          path,
          sha256: sha256Hex(path),
          size: 1,
          contentType: 'text/plain',
          deleted: false,
        },
      );
    }
    // A scheduled run stopped (a crash, a stop) after its first page: its position is past media/a.txt.
    const checkpoint = { cycleStartedAt: new Date().toISOString(), heads: 1, after: 'media/a.txt' };
    await ledger.putReconcileCheckpoint(checkpoint);
    const handler = createReconcileHandler({
      ...deps,
      telemetry: makeTelemetry(makeLogger('reconcile'), makeMetrics('reconcile')),
    });

    const fresh = await metricsOf(() => handler({ fromStart: true }, lambdaContext('reconcile')), 'alpha');
    expect(fresh.ReconcileResent).toBe(2);
    expect(sent.map((m) => m.path).sort()).toEqual(['media/a.txt', 'media/b.txt']);
    expect(await ledger.getReconcileCheckpoint()).toEqual(checkpoint);

    sent.length = 0;
    await metricsOf(() => handler({}, lambdaContext('reconcile')), 'alpha');
    expect(sent.map((m) => m.path)).toEqual(['media/b.txt']);
  });
});
