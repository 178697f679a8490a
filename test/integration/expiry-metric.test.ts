/**
 * The expiry sweep reports how many pending uploads it finds past their expiry
 * (UploadsPendingPastExpiry), every run, so that the alarm on it (lib/constructs/monitoring.ts)
 * sees uploads left uncommitted: bytes that never came, or came and were never committed.
 * Driven on the real ledger (dynalite) with a clock the test moves.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expirePendingUploads } from '../../functions/core/expiry.js';
import type { Clock } from '../../functions/core/ports.js';
import { createUpload } from '../../functions/core/uploads.js';
import { makeWorld, RecordingMetrics, sha256Hex } from '../support/domain.js';
import { startEmulators, type TestEmulators } from '../support/emulators.js';

const DAY = 24 * 60 * 60 * 1000;

let emulators: TestEmulators;
beforeAll(async () => {
  emulators = await startEmulators();
});
afterAll(async () => {
  await emulators?.stop();
});

/** Each run's UploadsPendingPastExpiry values (one per run). */
const pastExpiry = (metrics: RecordingMetrics) =>
  metrics.recorded.filter((m) => m.name === 'UploadsPendingPastExpiry').map((m) => m.value);

describe('UploadsPendingPastExpiry', () => {
  it('counts every pending upload past its expiry, ended by the run or not; 0 when there is none', async () => {
    const world = await makeWorld(emulators);
    let offsetMs = 0;
    const clock: Clock = { now: () => new Date(Date.now() + offsetMs) };
    const metrics = new RecordingMetrics();
    const deps = { ...world.deps, clock, metrics };
    const declare = async (name: string, at: number) => {
      offsetMs = at;
      const bytes = Buffer.from(`${name} ${Date.now()} ${Math.random()}`);
      const created = await createUpload(deps, {
        path: `past-expiry/${name}.txt`,
        size: bytes.length,
        sha256: sha256Hex(bytes),
        contentType: 'text/plain',
      });
      offsetMs = 0;
      expect(created.status).toBe('pending');
    };

    // Nothing pending: the run still reports, at 0.
    await expirePendingUploads(deps);
    expect(pastExpiry(metrics)).toEqual([0]);

    // Two days old (a day past its expiry: this run ends it), an hour old (a single PUT's URL
    // lasts minutes: past its expiry, not by a day), and one made now (not expired).
    await declare('two-days', -2 * DAY);
    await declare('an-hour', -60 * 60 * 1000);
    await declare('now', 0);

    // A dry run counts the same and ends nothing.
    expect(await expirePendingUploads(deps, { dryRun: true })).toMatchObject({ pending: 3, expired: 1 });
    expect(await expirePendingUploads(deps)).toMatchObject({ pending: 3, expired: 1 });
    // The next run no longer finds the one it ended.
    expect(await expirePendingUploads(deps)).toMatchObject({ pending: 2, expired: 0 });
    expect(pastExpiry(metrics)).toEqual([0, 2, 2, 1]);
  });
});
