/**
 * Operations through the local stack: the lag monitor and `/metrics` show a stopped
 * agent's lag growing (and falling back once it runs again), a poison message parks in
 * its DLQ and `media-mirror redrive` delivers it after the fix (as it moves a parked multipart
 * completion back to the completion queue), `media-mirror reconcile`
 * repairs replica objects deleted or altered behind the system's back (and changes
 * nothing with --dry-run), and a restart converges by itself.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import {
  GetQueueUrlCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSample } from '../../cli/prom-text.ts';
import { parseTopology } from '../../contracts/topology.ts';
import { type Sandbox, type SandboxOptions, startSandbox } from '../../local/sandbox.ts';
import { sha256Hex } from '../support/domain.js';
import { localApi } from '../support/local-api.js';
import { binArgs, runCliOn, testStackOptions } from '../support/local-stack.ts';
import { type BucketClients, bucketClients } from '../support/regional-s3.ts';
import { waitFor as poll } from '../support/wait.js';

/** This file's waits are longer than the shared default. */
const until = <T>(what: string, probe: Parameters<typeof poll<T>>[1], ms = 20_000) =>
  poll<T>(what, probe, ms);

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const S3_TARGET = 'eu-west-1';
const PULL_TARGET = 'onprem-dc1';
/** Takes `poison/` only: its bucket is the one the poison test breaks. */
const POISON_TARGET = 'ap-south-1';
const topology = parseTopology({
  homeRegion: 'us-east-1',
  targets: [
    { id: S3_TARGET, kind: 's3', region: 'eu-west-1' },
    { id: PULL_TARGET, kind: 'pull' },
    { id: POISON_TARGET, kind: 's3', region: 'ap-south-1', pathPrefix: 'poison/' },
  ],
});

let dataDir: string;
let sandbox: Sandbox;
let s3: BucketClients;
const sandboxLog: string[] = [];
/** The lag monitor's reports, as it logs them ("lag measured"), newest last. */
const lagReports: { at: number; report: { targetId: string; lagSeconds: number; pending: number }[] }[] = [];

const options = (): SandboxOptions =>
  testStackOptions(dataDir, {
    topology,
    env: {},
    log: (m) => sandboxLog.push(m),
    functionLog: (name, line) => {
      if (name !== 'lag-monitor' || !line.includes('"lag measured"')) return;
      try {
        const { report } = JSON.parse(line) as { report: (typeof lagReports)[number]['report'] };
        lagReports.push({ at: Date.now(), report });
      } catch {
        // not a log line of ours
      }
    },
    // A failing copy is received twice, then parked: a few seconds, not minutes.
    queues: { targetVisibilityTimeout: 2, maxReceiveCount: 2 },
    // Measure every second; reconcile at start only (a periodic one would repair what the tests break).
    schedules: { lagIntervalSeconds: 1, reconcileIntervalSeconds: 0 },
    agents: { heartbeatSeconds: 1, waitTimeSeconds: 1, shutdownGraceSeconds: 2 },
  });

/** S3 clients on the running stack's emulator, one per bucket's region (its port changes on a restart). */
function connect(): void {
  s3?.destroy();
  s3 = bucketClients(sandbox.endpoints);
}

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'mirror-ops-'));
  sandbox = await startSandbox(options());
  await sandbox.converged;
  connect();
});

afterAll(async () => {
  s3?.destroy();
  await sandbox?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

const MiB = 1024 * 1024;
const bytesOf = (label: string) => Buffer.from(`${label} ${Date.now()} ${Math.random()}\n`.repeat(200));

const api = (method: string, path: string, body?: unknown) =>
  localApi(sandbox.endpoints).call(method, path, body);

/** Declares and PUTs a file as a browser would; resolves once committed. */
async function upload(path: string, bytes: Buffer, contentType = 'application/octet-stream') {
  const { created, putStatus } = await localApi(sandbox.endpoints).declareAndPut(path, bytes, contentType);
  if (created.status === 201) {
    expect(putStatus).toBe(200);
    return until(`commit of ${path}`, async () => {
      const u = await api('GET', `/v1/uploads/${created.body.uploadId}`);
      return u.body.status === 'committed' ? u.body : undefined;
    });
  }
  expect(created.status).toBe(200);
  return created.body;
}

const bucket = (target = S3_TARGET) => sandbox.endpoints.targets[target]?.bucket as string;

async function replicaBytes(path: string, target = S3_TARGET): Promise<Buffer | undefined> {
  try {
    const out = await s3(bucket(target)).send(new GetObjectCommand({ Bucket: bucket(target), Key: path }));
    return Buffer.from(
      await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
    );
  } catch {
    return undefined;
  }
}

const replicaHas =
  (path: string, bytes: Buffer, target = S3_TARGET) =>
  async () =>
    (await replicaBytes(path, target))?.equals(bytes) ? true : undefined;

/** Waits until the ledger records the S3 target's copy of the head (reconcile compares against that row). */
const recorded = (path: string, target = S3_TARGET) =>
  until(`${target} row of ${path}`, async () => {
    const f = await api('GET', `/v1/files/${encodeURIComponent(path)}`);
    const row = f.body?.targets?.find((t: { id: string }) => t.id === target);
    // A failed attempt leaves a row too ("failed", applied 0): wait for the version applied.
    return row && row.appliedVersion >= 1 && row.status !== 'failed' ? row : undefined;
  });

async function metrics(): Promise<string> {
  const response = await fetch(sandbox.endpoints.metrics);
  expect(response.status).toBe(200);
  return response.text();
}

const metric = async (name: string, labels: Record<string, string> = {}) =>
  readSample(await metrics(), name, labels) ?? Number.NaN;

const lagSince = (since: number, target: string) =>
  lagReports.filter((r) => r.at >= since).flatMap((r) => r.report.filter((t) => t.targetId === target));

const cli = (...args: string[]) => runCliOn(sandbox, args, { cwd: dataDir });

describe('operations through the local stack', () => {
  it('a stopped agent makes its lag grow in the lag monitor and /metrics; a restart brings it back', async () => {
    const agent = sandbox.agents.get(PULL_TARGET);
    expect(agent?.running).toBe(true);
    if (!agent) return;
    const before = bytesOf('before');
    await upload('lag/before.bin', before);
    await until('the agent to mirror the first file', async () =>
      existsSync(join(agent.dir, 'lag/before.bin')) ? true : undefined,
    );

    await agent.stop();
    expect(agent.running).toBe(false);
    const stoppedAt = Date.now();
    const during = bytesOf('during');
    await upload('lag/while-stopped.bin', during);
    await until('the S3 target to hold it', replicaHas('lag/while-stopped.bin', during));
    await recorded('lag/while-stopped.bin');

    const grown = await until('the pull target lag to pass 3 s', async () =>
      lagSince(stoppedAt, PULL_TARGET).find((l) => l.lagSeconds >= 3),
    );
    expect(grown.pending).toBeGreaterThanOrEqual(1);
    // The same run measured the S3 target caught up.
    const sameRun = lagReports.find((r) => r.report.some((t) => t === grown));
    expect(sameRun?.report.find((t) => t.targetId === S3_TARGET)?.lagSeconds).toBeLessThan(2);
    const series = lagSince(stoppedAt, PULL_TARGET).map((l) => l.lagSeconds);
    expect(series.at(-1)).toBeGreaterThan(series[0] ?? 0);

    const text = await metrics();
    const metricLag = readSample(text, 'mirror_replication_lag_seconds', { target: PULL_TARGET }) ?? 0;
    expect(metricLag).toBeGreaterThanOrEqual(3);
    expect(readSample(text, 'mirror_replication_lag_seconds', { target: S3_TARGET })).toBeLessThan(2);
    expect(readSample(text, 'mirror_pending_replications', { target: PULL_TARGET })).toBeGreaterThanOrEqual(
      1,
    );
    const stale = await until('the heartbeat age to grow', async () => {
      const age = await metric('mirror_agent_heartbeat_age_seconds', { target: PULL_TARGET });
      return age >= 2 ? age : undefined;
    });
    const maxLag = Math.max(...lagSince(stoppedAt, PULL_TARGET).map((l) => l.lagSeconds), metricLag);

    await agent.start();
    const restartedAt = Date.now();
    await until('the restarted agent to mirror the file', async () =>
      (await readFile(join(agent.dir, 'lag/while-stopped.bin')).catch(() => undefined))?.equals(during)
        ? true
        : undefined,
    );
    await until('the lag monitor to see the pull target caught up', async () =>
      lagSince(Date.now() - 500, PULL_TARGET).find((l) => l.lagSeconds < 1 && l.pending === 0),
    );
    await until('/metrics to show it', async () =>
      (await metric('mirror_replication_lag_seconds', { target: PULL_TARGET })) < 1 ? true : undefined,
    );
    expect(await metric('mirror_agent_heartbeat_age_seconds', { target: PULL_TARGET })).toBeLessThan(2);
    expect(await metric('mirror_files_replicated_total', { target: PULL_TARGET })).toBeGreaterThanOrEqual(2);
    console.log(
      `stopped agent: lag grew to ${maxLag.toFixed(1)} s (heartbeat age ${stale.toFixed(1)} s) in ` +
        `${((restartedAt - stoppedAt) / 1000).toFixed(1)} s; back to 0 ${((Date.now() - restartedAt) / 1000).toFixed(1)} s after the restart`,
    );
  });

  it('a poison message parks in the DLQ and shows in /metrics; redrive after the fix delivers it', async () => {
    const bytes = bytesOf('poison');
    const target = POISON_TARGET;
    const failuresBefore = (await metric('mirror_failed_replications_total', { target })) || 0;
    // Behind the system's back the target's bucket is deleted (it holds nothing: only poison/ goes
    // there). The verified blob version stays pinned in the origin, so a copy can fail only here.
    await s3(bucket(target)).send(new DeleteBucketCommand({ Bucket: bucket(target) }));
    await upload('poison/second.bin', bytes);

    const dlq = { queue: `mirror-target-${target}-dlq.fifo`, target };
    await until(
      'the message in the DLQ metric',
      async () => ((await metric('mirror_dlq_messages', dlq)) >= 1 ? true : undefined),
      30_000,
    );
    const failures = await metric('mirror_failed_replications_total', { target });
    expect(failures - failuresBefore).toBeGreaterThanOrEqual(2);
    expect(await replicaBytes('poison/second.bin', target)).toBeUndefined();
    await until('the S3 target that still has its bucket', replicaHas('poison/second.bin', bytes));

    // A dry run through the real binary counts and moves nothing. (Not spawnSync: the stack
    // runs in this process and must keep answering while the child talks to it.)
    const dry = await promisify(execFile)(
      process.execPath,
      binArgs(sandbox, 'redrive', '--target', target, '--dry-run'),
      {
        cwd: repoRoot,
        encoding: 'utf8',
        timeout: 60_000,
        env: { PATH: process.env.PATH ?? '', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
      },
    );
    expect(dry.stderr).toBe('');
    expect(dry.stdout).toMatch(/^dry run: would move 1 message\(s\) from mirror-target-ap-south-1-dlq\.fifo/);
    expect(await metric('mirror_dlq_messages', dlq)).toBe(1);

    // An operator looks at the parked message (as `aws sqs receive-message` does) and leaves it:
    // it is still counted, and still redriven (probe 12, O2).
    const e = sandbox.endpoints;
    const sqs = new SQSClient({
      region: e.s3.region,
      endpoint: e.sqs.endpoint,
      credentials: { ...e.s3.credentials },
    });
    try {
      const { QueueUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: dlq.queue }));
      const peeked = await sqs.send(
        new ReceiveMessageCommand({ QueueUrl, VisibilityTimeout: 1, MaxNumberOfMessages: 1 }),
      );
      expect(peeked.Messages).toHaveLength(1);
    } finally {
      sqs.destroy();
    }
    await new Promise((r) => setTimeout(r, 2_000));
    expect(await metric('mirror_dlq_messages', dlq)).toBe(1);

    // The fix: the bucket is back. Then one command sends the parked message back.
    await s3(bucket(target)).send(
      new CreateBucketCommand({
        Bucket: bucket(target),
        // Where it was: the replicate function signs for its target's region.
        CreateBucketConfiguration: { LocationConstraint: 'ap-south-1' },
      }),
    );
    const redrive = await cli('redrive', '--target', target, '--json');
    expect(redrive.err).toBe('');
    expect(redrive.code).toBe(0);
    const result = JSON.parse(redrive.out) as { method: string; moved: number; failed: number; left: number };
    expect(result).toMatchObject({ method: 'local', moved: 1, failed: 0, left: 0 });

    await until('the redriven copy', replicaHas('poison/second.bin', bytes, target));
    await recorded('poison/second.bin', target);
    expect(await metric('mirror_dlq_messages', dlq)).toBe(0);
    expect(await metric('mirror_failed_replications_total', { target })).toBeGreaterThan(0);
    console.log(
      `poison: ${failures - failuresBefore} failed attempts, then parked; redrive moved ${result.moved}, failed ${result.failed}`,
    );
  });

  it('a completion parked in its DLQ: status names it, redrive --completion moves it back to the completion queue', async () => {
    // Found by the ops probe from outside: status showed mirror-completion-dlq's parked
    // messages, and no redrive option (nor the endpoints file) reached that queue.
    const e = sandbox.endpoints;
    expect(e.completion.queue).toBe(`${e.sqs.endpoint}/000000000000/mirror-completion`);
    expect(e.completion.dlq).toBe(`${e.sqs.endpoint}/000000000000/mirror-completion-dlq`);
    const dlq = { queue: 'mirror-completion-dlq' };
    const sqs = new SQSClient({
      region: e.s3.region,
      endpoint: e.sqs.endpoint,
      credentials: { ...e.s3.credentials },
    });
    // A real multipart upload, every part stored and recorded, whose completion was parked as the
    // completer parks one it kept failing on (storage down for the whole retry window): nobody
    // called complete, so only the redriven message can finish it.
    const bytes = Buffer.concat([randomBytes(17 * MiB), bytesOf('parked-completion')]);
    const claimed = await api('POST', '/v1/uploads', {
      path: 'ops/parked-completion.bin',
      size: bytes.length,
      sha256: sha256Hex(bytes),
      contentType: 'application/octet-stream',
    });
    expect(claimed.status).toBe(201);
    const { uploadId } = claimed.body as { uploadId: string };
    const { partSize, partCount } = claimed.body.multipart as { partSize: number; partCount: number };
    const asked = Array.from({ length: partCount }, (_, i) => {
      const part = bytes.subarray(i * partSize, Math.min(bytes.length, (i + 1) * partSize));
      return { partNumber: i + 1, size: part.length, sha256: sha256Hex(part), part };
    });
    const signed = await api('POST', `/v1/uploads/${uploadId}/parts`, {
      parts: asked.map(({ part: _, ...p }) => p),
    });
    const reports = [];
    for (const [i, s] of (
      signed.body.parts as { url: string; headers: Record<string, string> }[]
    ).entries()) {
      const { part, ...p } = asked[i] as (typeof asked)[number];
      const put = await fetch(s.url, { method: 'PUT', headers: s.headers, body: new Uint8Array(part) });
      expect(put.status).toBe(200);
      reports.push({ ...p, etag: put.headers.get('etag') });
    }
    expect((await api('PUT', `/v1/uploads/${uploadId}/parts`, { parts: reports })).status).toBe(200);
    try {
      await sqs.send(
        new SendMessageCommand({
          QueueUrl: e.completion.dlq,
          MessageBody: JSON.stringify({ completeUpload: { uploadId } }),
        }),
      );
    } finally {
      sqs.destroy();
    }
    await until('the completion in the DLQ metric', async () =>
      (await metric('mirror_dlq_messages', dlq)) === 1 ? true : undefined,
    );
    const status = await cli('status');
    expect(status.out).toContain('mirror-completion-dlq: 1 message(s) parked');
    expect((await api('GET', `/v1/uploads/${uploadId}`)).body.status).toBe('pending');

    const dry = await cli('redrive', '--completion', '--dry-run');
    expect(dry.err).toBe('');
    expect(dry.code).toBe(0);
    expect(dry.out).toBe(
      'dry run: would move 1 message(s) from mirror-completion-dlq back to mirror-completion (nothing moved)\n',
    );
    expect(await metric('mirror_dlq_messages', dlq)).toBe(1);

    const redrive = await cli('redrive', '--completion', '--json');
    expect(redrive.err).toBe('');
    expect(redrive.code).toBe(0);
    expect(JSON.parse(redrive.out)).toMatchObject({
      method: 'local',
      queueOf: 'completion',
      queue: e.completion.queue,
      dlq: e.completion.dlq,
      moved: 1,
      failed: 0,
      left: 0,
    });
    expect(await metric('mirror_dlq_messages', dlq)).toBe(0);
    expect((await cli('status')).out).not.toContain('mirror-completion-dlq');
    // Back on its queue, the completer assembled the parts and the ingest verified and committed them.
    const done = await until(
      'the redriven completion to commit the upload',
      async () => {
        const u = await api('GET', `/v1/uploads/${uploadId}`);
        return u.body.status === 'pending' ? undefined : u.body;
      },
      60_000,
    );
    expect(done).toMatchObject({ status: 'committed', version: 1 });
    await until(
      'the S3 target to hold it',
      async () => ((await replicaBytes('ops/parked-completion.bin'))?.equals(bytes) ? true : undefined),
      60_000,
    );
  });

  it('reconcile repairs replica objects deleted or altered directly; --dry-run reports and changes nothing', async () => {
    const gone = bytesOf('gone');
    const changed = bytesOf('changed');
    await upload('reconcile/gone.bin', gone);
    await upload('reconcile/changed.bin', changed);
    await until(
      'both copies',
      async () =>
        (await replicaHas('reconcile/gone.bin', gone)()) &&
        (await replicaHas('reconcile/changed.bin', changed)()),
    );
    await recorded('reconcile/gone.bin');
    await recorded('reconcile/changed.bin');

    await s3(bucket()).send(new DeleteObjectCommand({ Bucket: bucket(), Key: 'reconcile/gone.bin' }));
    const tampered = Buffer.from('not what was committed');
    await s3(bucket()).send(
      new PutObjectCommand({ Bucket: bucket(), Key: 'reconcile/changed.bin', Body: tampered }),
    );

    const dry = await cli('reconcile', '--target', S3_TARGET, '--dry-run', '--json');
    expect(dry.err).toBe('');
    expect(dry.code).toBe(0);
    const planned = JSON.parse(dry.out) as { dryRun: boolean; targets: Record<string, unknown> };
    expect(planned.dryRun).toBe(true);
    expect(planned.targets).toEqual({ [S3_TARGET]: { resent: 2, missing: 1, altered: 1 } });
    await new Promise((r) => setTimeout(r, 1500));
    expect(await replicaBytes('reconcile/gone.bin')).toBeUndefined();
    expect((await replicaBytes('reconcile/changed.bin'))?.equals(tampered)).toBe(true);

    const real = await cli('reconcile', '--target', S3_TARGET);
    expect(real.err).toBe('');
    expect(real.code).toBe(0);
    expect(real.out).toMatch(/re-sent 2 version\(s\)/);
    expect(real.out).toMatch(new RegExp(`^${S3_TARGET}\\s+2\\s+1\\s+1\\s+0$`, 'm'));
    await until('the deleted object back', replicaHas('reconcile/gone.bin', gone));
    await until('the altered object repaired', replicaHas('reconcile/changed.bin', changed));
    await recorded('reconcile/gone.bin');
    await recorded('reconcile/changed.bin');

    const again = await cli('reconcile', '--target', S3_TARGET, '--json');
    expect(JSON.parse(again.out).targets).toEqual({ [S3_TARGET]: { resent: 0, missing: 0, altered: 0 } });
  });

  it('status shows each target with lag, backlog, heartbeat and parked failures', async () => {
    // The figures are the lag monitor's last: measured now, after the test above re-applied what
    // reconcile re-sent (its rewind counts that file pending until a run sees it applied).
    await sandbox.measureLag();
    const { code, out } = await cli('status');
    expect(code).toBe(0);
    expect(out).toMatch(/^TARGET\s+KIND\s+LAG \(S\)\s+BACKLOG\s+HEARTBEAT\s+FAILED \(DLQ\)/m);
    expect(out).toMatch(new RegExp(`^${S3_TARGET}\\s+s3\\s+0\\s+0\\s+-\\s+0\\s`, 'm'));
    expect(out).toMatch(
      new RegExp(`^${PULL_TARGET}\\s+pull\\s+\\S+\\s+\\d+\\s+\\d+(\\.\\d)?s ago\\s+\\d+\\s`, 'm'),
    );
  });

  it('after a restart the stack converges by itself (start-up reconcile)', async () => {
    const bytes = bytesOf('restart');
    await upload('restart/kept.bin', bytes);
    await until('the copy', replicaHas('restart/kept.bin', bytes));
    await recorded('restart/kept.bin');
    await s3(bucket()).send(new DeleteObjectCommand({ Bucket: bucket(), Key: 'restart/kept.bin' }));

    await sandbox.stop();
    const t0 = Date.now();
    sandbox = await startSandbox(options());
    connect();
    const converged = await sandbox.converged;
    expect(converged.errors).toEqual([]);
    expect(converged.reconcile?.targets[S3_TARGET]).toMatchObject({ missing: 1 });
    await until('the object back after the restart', replicaHas('restart/kept.bin', bytes));
    console.log(`restart: converged ${((Date.now() - t0) / 1000).toFixed(1)} s after start`);
    expect(sandboxLog.some((l) => /start-up reconcile re-sent 1 to eu-west-1/.test(l))).toBe(true);
  });
});
