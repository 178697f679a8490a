/**
 * Crash points switched on by configuration only (docs/chaos.md), seen through the local stack:
 * while a point fires every time, the half-done state it leaves is visible; once it falls
 * silent, redelivery (functions) or the agent's next attempt repairs it.
 */
import { createHash } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Sandbox } from '../../local/sandbox.js';
import { localApi } from '../support/local-api.js';
import { startTestStack, type TestStack } from '../support/local-stack.ts';
import { waitFor } from '../support/wait.js';

let stack: TestStack;
let sandbox: Sandbox;
let s3For: TestStack['s3For'];
let functionsOff: string;
let agentOff: string;
let fired: () => ReadonlyMap<string, number>;

beforeAll(async () => {
  stack = await startTestStack('crash-points', async (dir) => {
    functionsOff = join(dir, 'functions-off');
    agentOff = join(dir, 'agent-off');
    // The agent runs in this process: its crash points are read when the module first loads
    // (the stack's modules load at its start, test/support/local-stack.ts).
    process.env.MIRROR_CRASH_POINTS = 'agent.before-rename=1';
    process.env.MIRROR_CRASH_POINTS_OFF_FILE = agentOff;
    fired = (await import('../../common/crash-points.js')).crashesFired;
    return {
      functionEnv: {
        MIRROR_CRASH_POINTS: 'replicate.before-target-row=1',
        MIRROR_CRASH_POINTS_OFF_FILE: functionsOff,
      },
      queues: { targetVisibilityTimeout: 5 },
      schedules: { lagIntervalSeconds: 0, reconcileIntervalSeconds: 0, reconcileAtStart: false },
      agents: { catchUpIntervalSeconds: 2, waitTimeSeconds: 1 },
    };
  });
  ({ sandbox, s3For } = stack);
});
afterAll(async () => {
  await stack?.stop();
  delete process.env.MIRROR_CRASH_POINTS;
  delete process.env.MIRROR_CRASH_POINTS_OFF_FILE;
});

const api = (method: string, path: string) => localApi(sandbox.endpoints).call(method, path);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('crash points in the local stack', () => {
  it('replicate.before-target-row: the copy lands, the invocation dies, the row lags; once off, redelivery records it', async () => {
    const bytes = Buffer.from(`crash before the row ${Date.now()}`);
    const path = 'crash/row.png';
    const { created } = await localApi(sandbox.endpoints).declareAndPut(path, bytes, 'image/png');
    expect(created.status).toBe(201);
    const bucket = sandbox.endpoints.targets['eu-west-1']?.bucket as string;
    const replica = await waitFor(
      'the copy',
      async () => {
        try {
          const out = await s3For(bucket).send(new GetObjectCommand({ Bucket: bucket, Key: path }));
          return Buffer.from(
            await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
          );
        } catch {
          return undefined;
        }
      },
      90_000,
    );
    expect(replica.equals(bytes)).toBe(true);
    // The invocation that copied died before the row: the mapping saw it fail, the row did not move.
    await waitFor(
      'a failed replicate invocation',
      () => (sandbox.stats()['replicate-eu-west-1']?.failedInvocations ?? 0) > 0,
      90_000,
    );
    const applied = async () =>
      (await api('GET', `/v1/files/${encodeURIComponent(path)}`)).body.targets.find(
        (t: { id: string }) => t.id === 'eu-west-1',
      )?.appliedVersion as number;
    expect(await applied()).toBe(0);
    await writeFile(functionsOff, '');
    await waitFor('the row after redelivery', async () => (await applied()) === 1, 90_000);
  }, 300_000);

  it('agent.before-rename: nothing appears at the final path while it fires; once off, the file lands with the right bytes', async () => {
    const bytes = Buffer.from(`crash before the rename ${Date.now()}`);
    const path = 'crash/agent.png';
    const { created } = await localApi(sandbox.endpoints).declareAndPut(path, bytes, 'image/png');
    expect(created.status).toBe(201);
    await waitFor('the agent crash point', () => (fired().get('agent.before-rename') ?? 0) > 0, 90_000);
    const file = join(sandbox.dataDir, 'onprem', 'onprem-dc1', path);
    await expect(stat(file)).rejects.toThrow();
    await writeFile(agentOff, '');
    const landed = await waitFor('the file', () => readFile(file).catch(() => undefined), 90_000);
    expect(sha(landed)).toBe(sha(bytes));
  }, 300_000);
});
