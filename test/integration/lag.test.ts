import { randomUUID } from 'node:crypto';
import { DynamoDBDocumentClient, PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitVersion } from '../../functions/core/commit.js';
import { measureLag } from '../../functions/core/lag.js';
import type { Clock } from '../../functions/core/ports.js';
import { httpEvent, lambdaContext } from '../support/api-events.js';
import { makeWorld, sha256Hex, worldApi } from '../support/domain.js';
import { startEmulators, type TestEmulators } from '../support/emulators.js';

let emulators: TestEmulators;
beforeAll(async () => {
  emulators = await startEmulators();
});
afterAll(async () => {
  await emulators?.stop();
});

describe('lag monitor', () => {
  it('a target that applies nothing shows lag growing and its backlog; applied targets stay at zero', async () => {
    const world = await makeWorld(emulators);
    let now = new Date('2026-11-21T10:00:00Z');
    const clock: Clock = { now: () => now };
    const deps = { ...world.deps, clock };
    const committed = [];
    for (const path of ['public/a.txt', 'public/b.txt', 'private/c.txt']) {
      committed.push(
        await commitVersion(deps, {
          uploadId: randomUUID(),
          path,
          sha256: sha256Hex(path),
          size: 1,
          contentType: 'text/plain',
          deleted: false,
        }),
      );
      now = new Date(now.getTime() + 10_000);
    }
    // alpha applies everything, beta (public/ only) applies its two, gamma (a pull target) nothing.
    for (const v of committed) {
      for (const targetId of ['alpha', ...(v.path.startsWith('public/') ? ['beta'] : [])]) {
        await world.ledger.recordTargetState({
          targetId,
          path: v.path,
          appliedVersion: v.version,
          status: 'copied',
          appliedAt: now.toISOString(),
        });
      }
    }
    const lagDeps = {
      ledger: world.ledger,
      clock,
      feedShards: world.deps.feedShards,
      targets: world.targets,
    };
    now = new Date('2026-11-21T10:05:00Z');
    // GET /v1/targets reads the monitor's stored figures: before its first run there are none.
    const api = worldApi({ ...world, deps: deps as typeof world.deps });
    const listTargets = async () => {
      const answer = await api(httpEvent('GET', '/v1/targets'), lambdaContext('api'));
      expect(answer.statusCode).toBe(200);
      const body = JSON.parse(answer.body as string) as { targets: { id: string; lag: object }[] };
      return Object.fromEntries(body.targets.map((t) => [t.id, t.lag]));
    };
    expect((await listTargets()).gamma).toEqual({
      lagSeconds: 0,
      pending: 0,
      pendingCapped: false,
      caughtUp: false,
      heartbeatAgeSeconds: null,
    });
    const first = Object.fromEntries((await measureLag(lagDeps)).map((t) => [t.targetId, t]));
    expect(first.alpha).toMatchObject({ lagSeconds: 0, pending: 0 });
    expect(first.beta).toMatchObject({ lagSeconds: 0, pending: 0 });
    expect(first.gamma).toMatchObject({
      lagSeconds: 300,
      pending: 3,
      oldestPending: { path: 'public/a.txt' },
      heartbeatAgeSeconds: undefined,
    });
    // Once measured, the API answers the stored figures (it walks nothing itself).
    now = new Date('2026-11-21T10:06:00Z');
    expect((await listTargets()).gamma).toEqual({
      lagSeconds: 300,
      pending: 3,
      pendingCapped: false,
      caughtUp: true,
      measuredAt: '2026-11-21T10:05:00.000Z',
      oldestPending: {
        path: 'public/a.txt',
        version: committed[0]?.version,
        committedAt: '2026-11-21T10:00:00.000Z',
      },
      heartbeatAgeSeconds: null,
    });

    // Time passes with the agent still dead: its lag grows. Then it reports and applies: lag falls to zero.
    now = new Date('2026-11-21T10:15:00Z');
    expect((await measureLag(lagDeps)).find((t) => t.targetId === 'gamma')?.lagSeconds).toBe(900);
    const doc = DynamoDBDocumentClient.from(emulators.dynamo);
    await doc.send(
      new PutCommand({
        TableName: world.table,
        // Its disk filled meanwhile: the row says so, and so do the API and the lag monitor.
        Item: {
          pk: 'AGENT#gamma',
          sk: 'AGENT',
          heartbeatAt: '2026-11-21T10:14:30Z',
          conditions: ['disk-full'],
        },
      }),
    );
    for (const v of committed) {
      await world.ledger.recordTargetState({
        targetId: 'gamma',
        path: v.path,
        appliedVersion: v.version,
        status: 'verified',
        appliedAt: now.toISOString(),
      });
    }
    const after = (await measureLag(lagDeps)).find((t) => t.targetId === 'gamma');
    expect(after).toMatchObject({
      lagSeconds: 0,
      pending: 0,
      heartbeatAgeSeconds: 30,
      agentConditions: ['disk-full'],
    });
    expect((await listTargets()).gamma).toMatchObject({
      heartbeatAgeSeconds: 30,
      agentConditions: ['disk-full'],
    });
    expect(await world.ledger.getWatermark('gamma')).toEqual(expect.arrayContaining([expect.any(Number)]));
  });
});
