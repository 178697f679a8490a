/**
 * The lag monitor's CloudWatch metrics of its own work, read from the EMF lines Powertools prints:
 * ledger calls per run (in all and per target), whether each target's scan caught up, and how long
 * the run took, beside the lag figures. Run on InMemoryLedger with a budget too small for one
 * target to walk its applied backlog in a single run.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { InMemoryLedger } from '../../../functions/adapters/in-memory-ledger.js';
import { makeLogger, makeMetrics, makeTelemetry } from '../../../functions/adapters/powertools.js';
import { commitVersion } from '../../../functions/core/commit.js';
import { minimumCalls } from '../../../functions/core/lag.js';
import { createLagMonitorHandler } from '../../../functions/handlers/lag-monitor-handler.js';
import { lambdaContext } from '../../support/api-events.js';
import { sha256Hex } from '../../support/domain.js';

interface Emf {
  _aws: {
    CloudWatchMetrics: {
      Namespace: string;
      Dimensions: string[][];
      Metrics: { Name: string; Unit: string }[];
    }[];
  };
  [key: string]: unknown;
}

/** The EMF documents printed while `run` runs. */
async function emfOf(run: () => Promise<unknown>): Promise<Emf[]> {
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
  return lines
    .filter((l) => l.includes('"_aws"'))
    .map((l) => JSON.parse(l) as Emf)
    .filter((doc) => typeof doc._aws === 'object' && doc._aws !== null);
}

/** The value of `name` for `target` (or with no target dimension), and its unit. */
function metric(docs: Emf[], name: string, target?: string) {
  const found = docs.filter(
    (d) =>
      d._aws.CloudWatchMetrics.some((m) => m.Metrics.some((x) => x.Name === name)) && d.target === target,
  );
  expect(found, `${name} ${target ?? '(no target)'}`).toHaveLength(1);
  const doc = found[0] as Emf;
  const unit = doc._aws.CloudWatchMetrics.flatMap((m) => m.Metrics).find((m) => m.Name === name)?.Unit;
  return { value: doc[name], unit, dimensions: doc._aws.CloudWatchMetrics[0]?.Dimensions };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('lag monitor handler: metrics of its own work', () => {
  it('publishes ledger calls per run and per target, and whether each target caught up', async () => {
    const ledger = new InMemoryLedger();
    const targets = [
      { id: 'alpha', kind: 's3' as const },
      { id: 'beta', kind: 's3' as const },
    ];
    const deps = {
      ledger,
      clock: { now: () => new Date() },
      feedShards: 1,
      targets,
      fanout: { send: async () => undefined },
    };
    // 250 changes: alpha applied them all (a long walk of applied changes), beta none (its oldest
    // unapplied change is the first one read).
    for (let i = 0; i < 250; i++) {
      const v = await commitVersion(deps, {
        uploadId: randomUUID(),
        path: `media/${i}.txt`,
        sha256: sha256Hex(String(i)),
        size: 1,
        contentType: 'text/plain',
        deleted: false,
      });
      await ledger.recordTargetState({
        targetId: 'alpha',
        path: v.path,
        appliedVersion: v.version,
        status: 'copied',
        appliedAt: new Date().toISOString(),
      });
    }
    const handler = createLagMonitorHandler({
      ...deps,
      // One page (100 changes) and its target rows per target per run: alpha cannot reach the end.
      budget: { callsPerTarget: minimumCalls(1) },
      telemetry: makeTelemetry(makeLogger('lag-monitor'), makeMetrics('lag-monitor')),
    });

    let report: Awaited<ReturnType<typeof handler>> = [];
    const docs = await emfOf(async () => {
      report = await handler({} as never, lambdaContext('lag-monitor'));
    });
    const byTarget = Object.fromEntries(report.map((t) => [t.targetId, t]));
    expect(byTarget.alpha).toMatchObject({ caughtUp: false });
    expect(byTarget.beta).toMatchObject({ caughtUp: true, pendingCapped: true });

    expect(metric(docs, 'LagMonitorCaughtUp', 'alpha')).toMatchObject({
      value: 0,
      unit: 'Count',
      dimensions: [['service', 'target']],
    });
    expect(metric(docs, 'LagMonitorCaughtUp', 'beta').value).toBe(1);
    const alphaCalls = metric(docs, 'LagMonitorTargetLedgerCalls', 'alpha').value as number;
    const betaCalls = metric(docs, 'LagMonitorTargetLedgerCalls', 'beta').value as number;
    expect(alphaCalls).toBe(byTarget.alpha?.ledgerCalls);
    expect(betaCalls).toBe(byTarget.beta?.ledgerCalls);
    // Within the budget: the run stops when it is spent.
    expect(alphaCalls).toBeLessThanOrEqual(minimumCalls(1));
    expect(alphaCalls).toBeGreaterThan(0);
    expect(metric(docs, 'LagMonitorLedgerCalls')).toMatchObject({
      value: alphaCalls + betaCalls,
      unit: 'Count',
      dimensions: [['service']],
    });
    expect(metric(docs, 'LagMonitorRunMilliseconds').unit).toBe('Milliseconds');

    // Later runs go on from the saved watermark, a page each: alpha catches up on the third.
    const later: unknown[] = [];
    for (let run = 0; run < 2; run++) {
      const next = await emfOf(() => handler({} as never, lambdaContext('lag-monitor')));
      later.push(metric(next, 'LagMonitorCaughtUp', 'alpha').value);
    }
    expect(later).toEqual([0, 1]);
  });
});
