/**
 * The start-up reconcile after a crash (local/README.md, "After a restart: how it converges"):
 * the queues are gone, so every head a target lacks must be re-sent, wherever a reconcile run
 * that the crash cut short had got to. A scheduled run saves its position after every page
 * (`RECONCILE` / `CHECKPOINT`) and the next one goes on from there; a `kill -9` of `npm start`
 * in the middle of a run (the start-up one included, or one every 5 minutes) leaves that
 * position behind. Found from outside: with replica objects gone at paths the cut-short run had
 * passed, the next start's reconcile visited only the heads after its checkpoint ("start-up
 * reconcile re-sent 103 to eu-west-1 (of 109 paths)", 219 heads in the ledger) and the target
 * lacked the others until the next scheduled run, 300 s later (never with
 * MIRROR_RECONCILE_INTERVAL_SECONDS=0).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseTopology } from '../../contracts/topology.ts';
import { DynamoLedger } from '../../functions/adapters/dynamo-ledger.ts';
import type { Sandbox, SandboxOptions } from '../../local/sandbox.ts';
import { localApi } from '../support/local-api.js';
import { startTestSandbox } from '../support/local-stack.ts';
import { bucketClients } from '../support/regional-s3.ts';
import { waitFor } from '../support/wait.js';

const TARGET = 'eu-west-1';
const topology = parseTopology({
  homeRegion: 'us-east-1',
  targets: [{ id: TARGET, kind: 's3', region: TARGET }],
});
const PATHS = Array.from({ length: 6 }, (_, i) => `restart/file-${i}.bin`);

let dataDir: string;
let sandbox: Sandbox | undefined;

const options = (extra: SandboxOptions = {}): SandboxOptions => ({
  topology,
  env: {},
  agents: false,
  // The start-up reconcile only: a periodic one would repair what the test looks for.
  schedules: { lagIntervalSeconds: 0, reconcileIntervalSeconds: 0, sweepIntervalSeconds: 0 },
  ...extra,
});

const ledgerOf = (s: Sandbox) =>
  new DynamoLedger(
    new DynamoDBClient({
      region: s.endpoints.s3.region,
      endpoint: s.endpoints.dynamodb.endpoint,
      credentials: { ...s.endpoints.s3.credentials },
    }),
    s.endpoints.table,
  );

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'mirror-restart-reconcile-'));
});

afterAll(async () => {
  await sandbox?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe('the start-up reconcile after a crash cut a reconcile run short', () => {
  it('re-sends every head a target lacks, those before the run’s checkpoint too', async () => {
    // Commits whose target messages are lost, as a crash loses what the queues held.
    sandbox = await startTestSandbox(
      dataDir,
      options({ faults: { deliveries: { drop: 1, only: [`replicate-${TARGET}`] } } }),
    );
    const api = localApi(sandbox.endpoints);
    for (const path of PATHS) {
      const { created, putStatus } = await api.declareAndPut(
        path,
        Buffer.from(`${path} ${Date.now()}`),
        'image/png',
      );
      expect(created.status).toBe(201);
      expect(putStatus).toBe(200);
      const id = created.body.uploadId as string;
      await waitFor(`commit of ${path}`, async () => {
        const u = await api.call('GET', `/v1/uploads/${id}`);
        return u.body.status === 'committed';
      });
    }

    // The position a scheduled run saves after a page, left mid-cycle by the crash: past the
    // first head the target lacks.
    const ledger = ledgerOf(sandbox);
    let after: string | undefined;
    let passed: string[] = [];
    do {
      const page = await ledger.pageHeads({ after, limit: 1 });
      passed = [...passed, ...page.heads.map((h) => h.path)];
      after = page.next;
    } while (after !== undefined && !passed.some((p) => PATHS.includes(p)));
    expect(after, 'a position before the end of the table').toBeDefined();
    await ledger.putReconcileCheckpoint({
      cycleStartedAt: new Date().toISOString(),
      heads: passed.length,
      after,
    });
    await sandbox.stop();
    sandbox = undefined;

    sandbox = await startTestSandbox(dataDir, options());
    const converged = await sandbox.converged;
    expect(converged.errors).toEqual([]);
    expect(converged.reconcile?.heads).toBe(PATHS.length);
    expect(converged.reconcile?.targets[TARGET]?.resent).toBe(PATHS.length);

    const e = sandbox.endpoints;
    const bucket = e.targets[TARGET]?.bucket as string;
    const s3 = bucketClients(e);
    try {
      for (const path of PATHS) {
        await waitFor(
          `${path} at ${TARGET}`,
          () =>
            s3(bucket)
              .send(new HeadObjectCommand({ Bucket: bucket, Key: path }))
              .then(
                () => true,
                () => false,
              ),
          20_000,
        );
      }
    } finally {
      s3.destroy();
    }
  });
});
