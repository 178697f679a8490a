/**
 * Catch-up from the change feed: the agent is stopped, 200 versions are committed
 * (new files, updates, deletes, of new and already mirrored paths), its queue is
 * purged (as if the outage outlasted the queue's retention), and the agent is
 * restarted as a child process. The folder must converge to the ledger's heads
 * exactly, with nothing but the feed to learn them from. Reports the rate and memory.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { GetQueueAttributesCommand, PurgeQueueCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent } from '../../agent/agent.ts';
import { createMemoryLog } from '../../agent/log.ts';
import type { FileVersion } from '../../contracts/model.js';
import { commitVersion } from '../../functions/core/commit.js';
import { makeWorld, putBlob, randomBytes, sha256Hex, type World } from '../support/domain.js';
import { startEmulators, type TestEmulators } from '../support/emulators.js';
import { waitFor as poll } from '../support/wait.js';

/** This file's waits are longer than the shared default. */
const waitFor = <T>(what: string, probe: Parameters<typeof poll<T>>[1], ms = 60_000) =>
  poll<T>(what, probe, ms);

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const tsxLoader = pathToFileURL(join(repoRoot, 'node_modules/tsx/dist/loader.mjs')).href;
const agentMain = join(repoRoot, 'agent/main.ts');
const MiB = 1024 * 1024;

let emulators: TestEmulators;
let scratch: string;
const children: ChildProcess[] = [];
beforeAll(async () => {
  emulators = await startEmulators();
  scratch = await mkdtemp(join(tmpdir(), 'mm-agent-catchup-'));
});
afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  await emulators?.stop();
  await rm(scratch, { recursive: true, force: true });
});

async function listFiles(dir: string, base = dir): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (full === join(base, '.media-mirror')) continue;
    if (entry.isDirectory()) out.push(...(await listFiles(full, base)));
    else out.push(full.slice(base.length + 1));
  }
  return out.sort();
}

describe('pull agent: catch-up from the feed', () => {
  it('stopped, 200 versions committed, queue purged, restarted: the folder converges to the ledger exactly', async () => {
    let table = '';
    const world: World = await makeWorld({
      ...emulators,
      createTable: async (name?: string) => {
        table = await emulators.createTable(name);
        return table;
      },
    });
    const queueUrl = world.targets.find((t) => t.id === 'gamma')?.queueUrl as string;
    const dir = join(scratch, 'onprem');
    const aws = {
      s3Endpoint: emulators.endpoints.s3,
      sqsEndpoint: emulators.endpoints.sqs,
      dynamodbEndpoint: emulators.endpoints.dynamodb,
      s3ForcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    };
    const commit = async (path: string, bytes: Buffer | null): Promise<FileVersion> => {
      const sha256 = bytes ? sha256Hex(bytes) : null;
      if (bytes && sha256) await putBlob(emulators, world.originBucket, sha256, bytes);
      return commitVersion(world.deps, {
        uploadId: randomUUID(),
        path,
        sha256,
        size: bytes?.length ?? 0,
        contentType: bytes ? 'application/octet-stream' : null,
        deleted: bytes === null,
      });
    };
    const inBatches = async (jobs: (() => Promise<unknown>)[]) => {
      for (let i = 0; i < jobs.length; i += 16) await Promise.all(jobs.slice(i, i + 16).map((job) => job()));
    };

    // 1. The agent mirrors ten files, then stops.
    const initial = Array.from({ length: 10 }, (_, i) => `initial/file-${i}.bin`);
    const agent = await startAgent({
      targetId: 'gamma',
      dir,
      table,
      originBucket: world.originBucket,
      queueUrl,
      feedShards: 4,
      heartbeatSeconds: 1,
      aws,
      log: createMemoryLog(),
    });
    try {
      await inBatches(initial.map((path) => () => commit(path, randomBytes(8_000))));
      await waitFor('the initial files', async () =>
        (await listFiles(dir).catch(() => [])).length === initial.length ? true : undefined,
      );
    } finally {
      await agent.stop();
    }

    // 2. While it is down: 200 versions (130 new files, 50 updates, 10 deletes, 5 updates and
    //    5 deletes of mirrored files), then the queue is purged: only the feed knows.
    const fresh = Array.from({ length: 130 }, (_, i) => `batch/${i % 7}/new file ${i}.bin`);
    const jobs: (() => Promise<unknown>)[] = [
      ...fresh.map((path, i) => () => commit(path, randomBytes(4_000 + i * 97))),
    ];
    await inBatches(jobs);
    await inBatches([
      ...fresh.slice(0, 50).map((path, i) => () => commit(path, randomBytes(5_000 + i))),
      ...fresh.slice(50, 60).map((path) => () => commit(path, null)),
      ...initial.slice(0, 5).map((path) => () => commit(path, randomBytes(9_000))),
      ...initial.slice(5).map((path) => () => commit(path, null)),
    ]);
    await emulators.sqs.send(new PurgeQueueCommand({ QueueUrl: queueUrl }));
    const attributes = await emulators.sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['ApproximateNumberOfMessages'] }),
    );
    expect(attributes.Attributes?.ApproximateNumberOfMessages).toBe('0');

    // What the folder must hold: the ledger's heads.
    const expected = new Map<string, string>();
    for await (const head of world.ledger.scanHeads()) {
      if (!head.deleted && head.sha256) expected.set(head.path, head.sha256);
    }
    expect(expected.size).toBe(130 - 10 + 5);

    // 3. Restart as its own process (so its memory is its own), JSON logs on stderr.
    const endpoints = join(scratch, 'endpoints.json');
    await writeFile(
      endpoints,
      JSON.stringify({
        s3: {
          endpoint: aws.s3Endpoint,
          region: 'us-east-1',
          credentials: aws.credentials,
          forcePathStyle: true,
        },
        sqs: { endpoint: aws.sqsEndpoint },
        dynamodb: { endpoint: aws.dynamodbEndpoint },
        table,
        originBucket: world.originBucket,
        feedShards: 4,
        targets: { gamma: { kind: 'pull', queue: queueUrl } },
      }),
    );
    const started = Date.now();
    const child = spawn(
      process.execPath,
      [
        '--import',
        tsxLoader,
        agentMain,
        ...[
          '--target',
          'gamma',
          '--dir',
          dir,
          '--endpoints',
          endpoints,
          '--log-format',
          'json',
          '--quiet',
          ...(process.env.AGENT_CONC ? ['--concurrency', process.env.AGENT_CONC] : []),
        ],
      ],
      {
        cwd: scratch,
        env: { PATH: process.env.PATH ?? '', HOME: scratch },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    children.push(child);
    const lines: Record<string, unknown>[] = [];
    let buffered = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        try {
          lines.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          lines.push({ raw: line });
        }
      }
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const round = await waitFor('the catch-up round', () =>
      lines.find((l) => l.msg === 'catch-up round' && l.complete === true),
    );
    const seconds = (Date.now() - started) / 1000;

    // 4. Exactly the heads: every expected file with its bytes, nothing else.
    const files = await listFiles(dir);
    expect(files).toEqual([...expected.keys()].sort());
    for (const [path, sha256] of expected) {
      expect(
        createHash('sha256')
          .update(await readFile(join(dir, path)))
          .digest('hex'),
      ).toBe(sha256);
    }
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    const stopped = lines.find((l) => l.msg === 'agent stopped');
    const written = Number(round.applied);
    const report = {
      versionsCommitted: 200,
      feedEntriesRead: round.changes,
      filesWrittenOrDeleted: written,
      roundSeconds: round.seconds,
      filesPerSecond: Math.round((written / Number(round.seconds)) * 10) / 10,
      changesPerSecond: Math.round((Number(round.changes) / Number(round.seconds)) * 10) / 10,
      startToConvergedSeconds: Math.round(seconds * 100) / 100,
      peakRssMiB: Math.round(Number(stopped?.maxRssBytes) / MiB),
    };
    console.log(`agent catch-up test: ${JSON.stringify(report)}`);
    expect(round.refused).toBe(0);
    // 125 files to write + 15 deletes to apply (10 deleted new files never existed here: no-ops, still settled).
    expect(written).toBeGreaterThanOrEqual(125 + 5);
  });
});
