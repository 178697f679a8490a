/**
 * The lag monitor at scale: a long feed with one target stuck, then released. Every run stays
 * within its budget of ledger calls and its deadline, reports a lag throughout (never unknown),
 * and the lag converges to 0 once the target has applied everything. The feed and the target's
 * rows are written to the ledger directly in bulk (BatchWriteItem): committing 20,000 changes
 * one by one would not fit in CI, and the monitor reads only what a commit leaves in the ledger.
 * MIRROR_SCALE_CHANGES sets the number of changes (default 20,000); the figures are printed.
 */
import { BatchWriteCommand, DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { Context, ScheduledEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { feedKey, feedSortKey, targetStateItemKey } from '../../contracts/ledger-keys.js';
import { storedLag, type TargetLag } from '../../functions/core/lag.js';
import type { Clock, Ledger } from '../../functions/core/ports.js';
import { createLagMonitorHandler } from '../../functions/handlers/lag-monitor-handler.js';
import { makeWorld, sha256Hex, testTelemetry } from '../support/domain.js';
import { startEmulators, type TestEmulators } from '../support/emulators.js';

const CHANGES = Number(process.env.MIRROR_SCALE_CHANGES ?? 20_000);
const SHARDS = 4;
const CALLS_PER_TARGET = 200;
/** The invocation's remaining time the handler is given; it stops starting pages well before. */
const REMAINING_MS = 20_000;

let emulators: TestEmulators;
beforeAll(async () => {
  emulators = await startEmulators();
});
afterAll(async () => {
  await emulators?.stop();
});

/** Counts every ledger call, whoever makes it. */
function counting(ledger: Ledger): { ledger: Ledger; calls: () => number } {
  let calls = 0;
  const proxy = new Proxy(ledger, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        calls++;
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { ledger: proxy, calls: () => calls };
}

/** Writes items 25 to a request (BatchWriteItem's limit), a few requests at a time. */
async function bulkWrite(doc: DynamoDBDocumentClient, table: string, items: Record<string, unknown>[]) {
  const batches: Record<string, unknown>[][] = [];
  for (let i = 0; i < items.length; i += 25) batches.push(items.slice(i, i + 25));
  const worker = async () => {
    for (let batch = batches.shift(); batch; batch = batches.shift()) {
      let pending = batch.map((Item) => ({ PutRequest: { Item } }));
      while (pending.length > 0) {
        const out = await doc.send(new BatchWriteCommand({ RequestItems: { [table]: pending } }));
        pending = (out.UnprocessedItems?.[table] ?? []) as typeof pending;
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
}

describe('lag monitor at scale', () => {
  it(`${CHANGES} changes, one target stuck then released: bounded runs, lag reported throughout, converging to 0`, async () => {
    const world = await makeWorld(emulators, { feedShards: SHARDS });
    const doc = DynamoDBDocumentClient.from(emulators.dynamo);
    const t0 = Date.parse('2026-11-29T12:00:00Z');
    const committedAt = (i: number) => new Date(t0 + i * 10).toISOString();
    const path = (i: number) => `bulk/${i}.bin`;
    const written = performance.now();
    await bulkWrite(
      doc,
      world.table,
      Array.from({ length: CHANGES }, (_, i) => ({
        pk: feedKey(i % SHARDS),
        sk: feedSortKey(Math.floor(i / SHARDS) + 1),
        shard: i % SHARDS,
        seq: Math.floor(i / SHARDS) + 1,
        path: path(i),
        version: 1,
        sha256: sha256Hex(path(i)),
        size: 1,
        contentType: 'application/octet-stream',
        deleted: false,
        committedAt: committedAt(i),
        appendedAt: committedAt(i),
        fannedOut: true,
      })),
    );
    const writeSeconds = (performance.now() - written) / 1000;

    let now = new Date(t0 + 3_600_000);
    const clock: Clock = { now: () => now };
    const counted = counting(world.ledger);
    // `stuck` selects every change; `elsewhere` selects none (walked past without reading target rows).
    const targets = [
      { id: 'stuck', kind: 's3' as const },
      { id: 'elsewhere', kind: 'pull' as const, pathPrefix: 'other/' },
    ];
    const handler = createLagMonitorHandler({
      ledger: counted.ledger,
      clock,
      feedShards: SHARDS,
      targets,
      telemetry: testTelemetry(),
      budget: { callsPerTarget: CALLS_PER_TARGET },
    });
    const context = { getRemainingTimeInMillis: () => REMAINING_MS } as Context;
    const runs: { phase: string; ms: number; calls: number; stuck: TargetLag }[] = [];
    const run = async (phase: string) => {
      now = new Date(now.getTime() + 60_000);
      const before = counted.calls();
      const started = performance.now();
      const report = await handler({} as ScheduledEvent, context);
      const ms = performance.now() - started;
      const calls = counted.calls() - before;
      const stuck = report.find((t) => t.targetId === 'stuck') as TargetLag;
      runs.push({ phase, ms, calls, stuck });
      // Within budget: the calls each target counted, the calls the ledger saw, the time.
      for (const t of report) expect(t.ledgerCalls).toBeLessThanOrEqual(CALLS_PER_TARGET);
      expect(calls).toBe(report.reduce((n, t) => n + t.ledgerCalls, 0));
      expect(ms).toBeLessThan(REMAINING_MS);
      // Reported, never unknown.
      expect(Number.isFinite(stuck.lagSeconds)).toBe(true);
      expect(stuck.measuredAt).toBe(now.toISOString());
      return stuck;
    };

    // Stuck: the oldest change is found at once, its age exact from the first run.
    for (let i = 0; i < 3; i++) {
      const stuck = await run('stuck');
      expect(stuck).toMatchObject({
        caughtUp: true,
        pendingCapped: true,
        oldestPending: { path: path(0), committedAt: committedAt(0) },
        lagSeconds: (now.getTime() - t0) / 1000,
      });
      expect(stuck.pending).toBeGreaterThan(0);
    }
    // GET /v1/targets reads the stored figures: one ledger read per target (and a heartbeat).
    const before = counted.calls();
    const stored = await storedLag({ ledger: counted.ledger, clock, targets });
    expect(counted.calls() - before).toBe(3);
    expect(stored.find((t) => t.targetId === 'stuck')).toMatchObject({
      lagSeconds: runs.at(-1)?.stuck.lagSeconds,
      pending: runs.at(-1)?.stuck.pending,
      caughtUp: true,
    });

    // Released: the target applies everything. The monitor catches up over several runs, the
    // lag it reports meanwhile an upper bound that only falls, then exactly 0.
    await bulkWrite(
      doc,
      world.table,
      Array.from({ length: CHANGES }, (_, i) => ({
        ...targetStateItemKey('stuck', path(i)),
        targetId: 'stuck',
        path: path(i),
        appliedVersion: 1,
        status: 'copied',
        appliedAt: now.toISOString(),
      })),
    );
    let last: TargetLag | undefined;
    for (let i = 0; i < 100 && !(last?.caughtUp && last.lagSeconds === 0); i++) {
      const previous = last;
      last = await run('released');
      if (previous && !previous.caughtUp) {
        // The clock moved 60 s; the bound's change never comes back up beyond that.
        expect(last.lagSeconds).toBeLessThanOrEqual(previous.lagSeconds + 60);
      }
    }
    expect(last).toMatchObject({ lagSeconds: 0, pending: 0, pendingCapped: false, caughtUp: true });
    const released = runs.filter((r) => r.phase === 'released');
    // A run reads at most a page (100 entries) per two calls: the budget, not the feed, bounds it.
    expect(released.length).toBeGreaterThanOrEqual(Math.ceil(CHANGES / ((CALLS_PER_TARGET / 2) * 100)));
    expect(released.slice(0, -1).every((r) => r.stuck.caughtUp === false)).toBe(true);
    const watermark = (await world.ledger.getLagRecord('stuck'))?.cursor;
    expect(watermark).toEqual(
      Array.from({ length: SHARDS }, (_, s) => Math.floor((CHANGES - 1 - s) / SHARDS) + 1),
    );

    const figures = {
      changes: CHANGES,
      shards: SHARDS,
      callsPerTargetBudget: CALLS_PER_TARGET,
      bulkWriteSeconds: Math.round(writeSeconds * 10) / 10,
      runs: runs.length,
      runsToConverge: released.length,
      maxCallsPerRun: Math.max(...runs.map((r) => r.calls)),
      maxRunMs: Math.round(Math.max(...runs.map((r) => r.ms))),
      lagSeriesSeconds: runs.map((r) => Math.round(r.stuck.lagSeconds)),
      perRun: runs.map((r) => `${r.phase}:${r.calls}calls/${Math.round(r.ms)}ms`),
    };
    console.log(`lag-scale ${JSON.stringify(figures)}`);
  }, 300_000);
});
