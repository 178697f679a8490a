/**
 * The local stack's `GET /metrics` carries every configured target's lag series from the first
 * scrape (local/metrics.ts): before the lag monitor's first run they read NaN ("not measured"),
 * so an `absent()` alert does not fire at start and a `lag > threshold` alert does not either.
 * The schedules are off: the lag monitor and reconcile run only when the test asks.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSample } from '../../cli/prom-text.ts';
import { parseTopology } from '../../contracts/topology.ts';
import type { Sandbox } from '../../local/sandbox.ts';
import { startTestStack, type TestStack } from '../support/local-stack.ts';
import { waitFor } from '../support/wait.js';

const topology = parseTopology({
  homeRegion: 'us-east-1',
  targets: [
    { id: 'eu-west-1', kind: 's3', region: 'eu-west-1' },
    { id: 'onprem-dc1', kind: 'pull' },
  ],
});
const TARGETS = ['eu-west-1', 'onprem-dc1'];

let stack: TestStack;
let sandbox: Sandbox;

beforeAll(async () => {
  stack = await startTestStack('first-scrape', { topology, env: {}, agents: false, schedules: false });
  sandbox = stack.sandbox;
}, 60_000);
afterAll(() => stack?.stop());

const scrape = async () => {
  const response = await fetch(sandbox.endpoints.metrics);
  expect(response.status).toBe(200);
  return response.text();
};

describe('GET /metrics from the first scrape', () => {
  it('every target’s lag and pending series exist before the lag monitor has run, at NaN; the heartbeat age for the pull target only', async () => {
    const text = await scrape();
    for (const target of TARGETS) {
      for (const name of ['mirror_replication_lag_seconds', 'mirror_pending_replications']) {
        const value = readSample(text, name, { target });
        expect(value, `${name}{target="${target}"}`).not.toBeUndefined();
        expect(Number.isNaN(value), `${name}{target="${target}"}`).toBe(true);
      }
    }
    expect(
      Number.isNaN(readSample(text, 'mirror_agent_heartbeat_age_seconds', { target: 'onprem-dc1' })),
    ).toBe(true);
    expect(readSample(text, 'mirror_agent_heartbeat_age_seconds', { target: 'eu-west-1' })).toBeUndefined();
    expect(Number.isNaN(readSample(text, 'mirror_uploads_pending_past_expiry'))).toBe(true);
  });

  it('the lag monitor’s first run replaces NaN with what it measured (nothing committed: 0)', async () => {
    await sandbox.measureLag();
    const text = await waitFor('the lag monitor’s metrics at /metrics', async () => {
      const t = await scrape();
      return TARGETS.every((target) => readSample(t, 'mirror_replication_lag_seconds', { target }) === 0)
        ? t
        : undefined;
    });
    for (const target of TARGETS) {
      expect(readSample(text, 'mirror_pending_replications', { target }), target).toBe(0);
    }
  });

  it('reconcile’s expiry sweep sets the pending-past-expiry gauge (none pending: 0)', async () => {
    await sandbox.reconcile();
    await waitFor('the sweep’s count at /metrics', async () =>
      readSample(await scrape(), 'mirror_uploads_pending_past_expiry') === 0 ? true : undefined,
    );
  });
});
