/**
 * The on-premises pull agent against the emulators (DynamoDB: dynalite, S3: s3rver,
 * SQS: fauxqs), running in-process: uploads reach the folder, order and duplicates
 * never move a file backwards, wrong bytes and escaping paths are refused and
 * counted, odd characters round-trip, and `agent verify --repair` heals drift.
 */
import { randomUUID } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient, GetCommand } from '@aws-sdk/lib-dynamodb';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AgentHandle, startAgent } from '../../agent/agent.ts';
import type { VersionInfo } from '../../agent/applier.ts';
import { registerAgentCommand } from '../../agent/command.ts';
import { AgentExitError } from '../../agent/errors.ts';
import { verifyMirror } from '../../agent/index.ts';
import { createMemoryLog, type MemoryLog } from '../../agent/log.ts';
import type { WorkOutcome } from '../../agent/queue-consumer.ts';
import { agentRowKey } from '../../contracts/ledger-keys.ts';
import type { FileVersion } from '../../contracts/model.js';
import { commitVersion, replicationMessage } from '../../functions/core/commit.js';
import { ingestBlob } from '../../functions/core/ingest.js';
import { messageGroupId } from '../../functions/core/shards.js';
import { createUpload } from '../../functions/core/uploads.js';
import { useSharedCredentialsFiles } from '../support/aws-shared-files.ts';
import { makeWorld, putBlob, randomBytes, sha256Hex, type World } from '../support/domain.js';
import { startEmulators, type TestEmulators, writePullEndpoints } from '../support/emulators.js';
import { waitFor } from '../support/wait.js';

let emulators: TestEmulators;
let scratch: string;
beforeAll(async () => {
  emulators = await startEmulators();
  scratch = await mkdtemp(join(tmpdir(), 'mm-agent-'));
});
afterAll(async () => {
  await emulators?.stop();
  await rm(scratch, { recursive: true, force: true });
});

interface AgentWorld {
  world: World;
  table: string;
  queueUrl: string;
  dir: string;
}

/** makeWorld, remembering the table name the agent needs. */
async function agentWorld(): Promise<AgentWorld> {
  let table = '';
  const world = await makeWorld({
    ...emulators,
    createTable: async (name?: string) => {
      table = await emulators.createTable(name);
      return table;
    },
  });
  const gamma = world.targets.find((t) => t.id === 'gamma');
  if (!gamma) throw new Error('makeWorld has no pull target gamma');
  const dir = join(scratch, `onprem-${randomUUID().slice(0, 8)}`);
  return { world, table, queueUrl: gamma.queueUrl, dir };
}

interface RunningAgent {
  handle: AgentHandle;
  log: MemoryLog;
  outcomes: { v: VersionInfo; outcome: WorkOutcome; source: string }[];
}

/** The agent of the world's pull target `gamma`, on the emulators. */
const gammaAgent = (w: AgentWorld) => ({
  targetId: 'gamma',
  dir: w.dir,
  table: w.table,
  originBucket: w.world.originBucket,
  queueUrl: w.queueUrl,
  feedShards: 4,
  heartbeatSeconds: 1,
});

async function runAgent(
  w: AgentWorld,
  extra: { catchUpIntervalSeconds?: number } = {},
): Promise<RunningAgent> {
  const log = createMemoryLog();
  const outcomes: RunningAgent['outcomes'] = [];
  const handle = await startAgent({
    ...gammaAgent(w),
    visibilityTimeoutSeconds: 15,
    catchUpIntervalSeconds: extra.catchUpIntervalSeconds ?? 60,
    shutdownGraceSeconds: 5,
    aws: emulatorAws(),
    log,
    onOutcome: (v, outcome, source) => outcomes.push({ v, outcome, source }),
  });
  return { handle, log, outcomes };
}

async function readIfExists(file: string): Promise<Buffer | undefined> {
  try {
    return await readFile(file);
  } catch {
    return undefined;
  }
}

/** Commits a version straight through the commit path (blob in the origin, claim, feed, fan-out). */
async function commitBytes(w: AgentWorld, path: string, bytes: Buffer, options: { sha256?: string } = {}) {
  const sha256 = options.sha256 ?? sha256Hex(bytes);
  await putBlob(emulators, w.world.originBucket, sha256, bytes);
  return commitVersion(w.world.deps, {
    uploadId: randomUUID(),
    path,
    sha256,
    size: bytes.length,
    contentType: 'application/octet-stream',
    deleted: false,
  });
}

async function commitDelete(w: AgentWorld, path: string) {
  return commitVersion(w.world.deps, {
    uploadId: randomUUID(),
    path,
    sha256: null,
    size: 0,
    contentType: null,
    deleted: true,
  });
}

async function allFiles(dir: string, base = dir): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await allFiles(full, base)));
    else out.push(full.slice(base.length + 1));
  }
  return out.sort();
}

/** The configuration `agent verify` resolves for target gamma of `w`. */
function verifyConfig(w: AgentWorld) {
  return {
    targetId: 'gamma',
    dir: w.dir,
    stateDir: join(w.dir, '.media-mirror'),
    table: w.table,
    originBucket: w.world.originBucket,
    queueUrl: '',
    region: 'us-east-1',
    feedShards: 4,
    pathPrefix: undefined,
    concurrency: 4,
    visibilityTimeoutSeconds: 60,
    waitTimeSeconds: 20,
    heartbeatSeconds: 15,
    catchUpIntervalSeconds: 60,
    folderCheckIntervalSeconds: 0,
    shutdownGraceSeconds: 10,
    maxBytesPerSecond: undefined,
    feedPageSize: 500,
    aws: emulatorAws(),
  };
}

/** The agent's `aws` settings for the test emulators. */
const emulatorAws = () => ({
  s3Endpoint: emulators.endpoints.s3,
  sqsEndpoint: emulators.endpoints.sqs,
  dynamodbEndpoint: emulators.endpoints.dynamodb,
  s3ForcePathStyle: true,
  credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
});

/** `agent verify --json` finds `ok` files as the ledger has them and nothing else: exit 0. */
async function expectNoDrift(
  cli: (...args: string[]) => Promise<{ exitCode: number; stdout: string }>,
  dir: string,
  ok: number,
): Promise<void> {
  const after = await cli('--dir', dir, '--json');
  expect(after.exitCode).toBe(0);
  expect(JSON.parse(after.stdout)).toMatchObject({ ok, missing: [], wrong: [], extra: [], staleTemps: [] });
}

/** `media-mirror agent verify <args>` against `w`'s emulators, as an operator runs it: stdout and exit code. */
async function verifyCli(w: AgentWorld) {
  const endpointsFile = await writePullEndpoints(
    emulators,
    join(scratch, `endpoints-${randomUUID().slice(0, 8)}.json`),
    { table: w.table, originBucket: w.world.originBucket, queueUrl: w.queueUrl },
  );
  return async (...args: string[]) => {
    let stdout = '';
    const program = new Command().exitOverride().option('--endpoints <file>');
    program.configureOutput({ writeOut: () => undefined, writeErr: () => undefined });
    registerAgentCommand(program, {
      stdout: { write: (s: string) => (stdout += s) },
      stderr: { write: () => true },
      env: {},
      cwd: scratch,
    });
    let exitCode = 0;
    try {
      await program.parseAsync(['--endpoints', endpointsFile, 'agent', 'verify', ...args], {
        from: 'user',
      });
    } catch (error) {
      if (!(error instanceof AgentExitError)) throw error;
      exitCode = error.exitCode;
    }
    return { stdout, exitCode };
  };
}

describe('pull agent', () => {
  it('credentials file missing at start, written while the agent retries: it applies without a restart', async () => {
    const w = await agentWorld();
    const bytes = randomBytes(10_000);
    await commitBytes(w, 'creds/late.bin', bytes);
    const files = await mkdtemp(join(scratch, 'creds-'));
    const restoreEnv = useSharedCredentialsFiles(files);
    const log = createMemoryLog();
    const starting = startAgent({
      ...gammaAgent(w),
      shutdownGraceSeconds: 1,
      retryBaseMs: 100,
      aws: { ...emulatorAws(), credentials: undefined },
      log,
    });
    let handle: AgentHandle | undefined;
    try {
      await waitFor('the credentials condition', async () =>
        log.entries.some((e) => e.fields?.condition === 'credentials') ? true : undefined,
      );
      await writeFile(join(files, 'aws-config'), '[profile media-mirror]\nregion = us-east-1\n');
      await writeFile(
        join(files, 'aws-credentials'),
        '[media-mirror]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n',
      );
      handle = await Promise.race([
        starting,
        new Promise<never>((_, reject) =>
          setTimeout(
            () => reject(new Error('not started 20 s after the credentials file was fixed')),
            20_000,
          ),
        ),
      ]);
      const got = await waitFor('the file', () => readIfExists(join(w.dir, 'creds/late.bin')), 15_000);
      expect(got.equals(bytes)).toBe(true);
    } finally {
      restoreEnv();
      await handle?.stop();
    }
  });

  it('an upload committed through the API path appears in the folder with identical bytes within seconds', async () => {
    const w = await agentWorld();
    const agent = await runAgent(w);
    try {
      const bytes = randomBytes(300_000);
      const sha256 = sha256Hex(bytes);
      const started = Date.now();
      const created = await createUpload(w.world.deps, {
        path: 'media/2024/cat.png',
        size: bytes.length,
        sha256,
        contentType: 'image/png',
      });
      expect(created.status).toBe('pending');
      const { etag } = await putBlob(emulators, w.world.originBucket, sha256, bytes);
      const outcome = await ingestBlob(w.world.deps, {
        key: `blobs/${sha256}`,
        size: bytes.length,
        etag,
        versionId: undefined,
      });
      expect(outcome.kind).toBe('committed');
      const file = join(w.dir, 'media/2024/cat.png');
      const got = await waitFor('the file', () => readIfExists(file), 10_000);
      const seconds = (Date.now() - started) / 1000;
      expect(got.equals(bytes)).toBe(true);
      expect(seconds).toBeLessThan(5);
      console.log(`agent: upload to file in the folder took ${seconds.toFixed(2)} s`);
      // Reported to the ledger: the target's row and the agent's heartbeat.
      const state = await waitFor('the target row', async () => {
        const s = await w.world.ledger.getTargetState('media/2024/cat.png', 'gamma');
        return s?.appliedVersion === 1 ? s : undefined;
      });
      expect(state.status).toBe('verified');
      const doc = DynamoDBDocumentClient.from(emulators.dynamo);
      const row = await waitFor('the agent row', async () => {
        const out = await doc.send(new GetCommand({ TableName: w.table, Key: agentRowKey('gamma') }));
        return (out.Item?.appliedCount as number | undefined) ? out.Item : undefined;
      });
      expect(row).toMatchObject({ targetId: 'gamma', status: 'running', appliedCount: 1 });
      expect(typeof row.cursor).toBe('string');
      // No temp files, and the state folder is the only other thing there.
      expect(await allFiles(w.dir)).toEqual([
        '.media-mirror/agent.lock',
        '.media-mirror/state.journal',
        '.media-mirror/state.snapshot',
        'media/2024/cat.png',
      ]);
      // A delete removes the file.
      await commitDelete(w, 'media/2024/cat.png');
      await waitFor('the delete', async () => ((await readIfExists(file)) === undefined ? true : undefined));
    } finally {
      await agent.handle.stop();
    }
    expect(agent.handle.stats().status).toBe('stopped');
  });

  it('versions of one path delivered in reverse order leave the newest, and duplicates are harmless', async () => {
    const w = await agentWorld();
    // Commit five versions without fan-out, then deliver their messages newest first.
    const quiet = { ...w.world.deps, fanout: { send: async () => undefined } };
    const path = 'reverse/order.txt';
    const versions: FileVersion[] = [];
    for (let i = 1; i <= 5; i++) {
      const bytes = Buffer.from(`version ${i}\n`);
      await putBlob(emulators, w.world.originBucket, sha256Hex(bytes), bytes);
      versions.push(
        await commitVersion(quiet, {
          uploadId: randomUUID(),
          path,
          sha256: sha256Hex(bytes),
          size: bytes.length,
          contentType: 'text/plain',
          deleted: false,
        }),
      );
    }
    const agent = await runAgent(w, { catchUpIntervalSeconds: 3600 });
    try {
      await waitFor('the bootstrap', () => (agent.handle.stats().catchUpRounds > 0 ? true : undefined));
      for (const v of [...versions].reverse().concat(versions)) {
        await emulators.sqs.send(
          new SendMessageCommand({
            QueueUrl: w.queueUrl,
            MessageBody: JSON.stringify(replicationMessage('gamma', v)),
            MessageGroupId: messageGroupId(path),
            MessageDeduplicationId: randomUUID(),
          }),
        );
      }
      await waitFor('ten queue outcomes', () =>
        agent.outcomes.filter((o) => o.source === 'queue').length >= 10 ? true : undefined,
      );
      const queued = agent.outcomes.filter((o) => o.source === 'queue');
      expect(queued.map((o) => `${o.v.version}:${o.outcome.kind}`)).toEqual([
        ...[5, 4, 3, 2, 1].map((v) => `${v}:skipped`),
        ...[1, 2, 3, 4, 5].map((v) => `${v}:skipped`),
      ]);
      expect((await readFile(join(w.dir, path), 'utf8')).trim()).toBe('version 5');
      // A late tombstone of an older version does not delete the newer file either.
      const stale = {
        ...replicationMessage('gamma', versions[1] as FileVersion),
        deleted: true,
        sha256: null,
      };
      await emulators.sqs.send(
        new SendMessageCommand({
          QueueUrl: w.queueUrl,
          MessageBody: JSON.stringify(stale),
          MessageGroupId: messageGroupId(path),
          MessageDeduplicationId: randomUUID(),
        }),
      );
      await waitFor('the stale tombstone', () =>
        agent.outcomes.filter((o) => o.source === 'queue').length >= 11 ? true : undefined,
      );
      expect((await readFile(join(w.dir, path), 'utf8')).trim()).toBe('version 5');
    } finally {
      await agent.handle.stop();
    }
  });

  it('applies versions in reverse order straight from the queue (no catch-up): the newest wins', async () => {
    const w = await agentWorld();
    const agent = await runAgent(w, { catchUpIntervalSeconds: 3600 });
    try {
      await waitFor('the bootstrap', () => (agent.handle.stats().catchUpRounds > 0 ? true : undefined));
      const quiet = { ...w.world.deps, fanout: { send: async () => undefined } };
      const path = 'reverse/queue-only.txt';
      const versions: FileVersion[] = [];
      for (let i = 1; i <= 4; i++) {
        const bytes = Buffer.from(`queue version ${i}\n`);
        await putBlob(emulators, w.world.originBucket, sha256Hex(bytes), bytes);
        versions.push(
          await commitVersion(quiet, {
            uploadId: randomUUID(),
            path,
            sha256: sha256Hex(bytes),
            size: bytes.length,
            contentType: 'text/plain',
            deleted: false,
          }),
        );
      }
      // The agent applies 1, then sees 4, 3, 2: 4 is applied, 3 and 2 are older than what it holds.
      for (const v of [versions[0], versions[3], versions[2], versions[1]] as FileVersion[]) {
        await emulators.sqs.send(
          new SendMessageCommand({
            QueueUrl: w.queueUrl,
            MessageBody: JSON.stringify(replicationMessage('gamma', v)),
            MessageGroupId: messageGroupId(path),
            MessageDeduplicationId: randomUUID(),
          }),
        );
      }
      await waitFor('four queue outcomes', () =>
        agent.outcomes.filter((o) => o.source === 'queue').length >= 4 ? true : undefined,
      );
      const queued = agent.outcomes.filter((o) => o.source === 'queue');
      expect(queued.slice(0, 1).map((o) => `${o.v.version}:${o.outcome.kind}`)).toEqual(['1:applied']);
      expect(queued.slice(2).map((o) => `${o.v.version}:${o.outcome.kind}`)).toEqual([
        '3:skipped',
        '2:skipped',
      ]);
      expect((await readFile(join(w.dir, path), 'utf8')).trim()).toBe('queue version 4');
    } finally {
      await agent.handle.stop();
    }
  });

  it('a blob whose bytes do not match is refused, counted, and never written', async () => {
    const w = await agentWorld();
    const agent = await runAgent(w);
    try {
      const good = randomBytes(100_000);
      const evil = Buffer.from(good);
      evil[5000] = (evil[5000] as number) ^ 0xff;
      // Same size, wrong bytes under the good hash (what a corrupted origin would hold).
      await commitBytes(w, 'bad/same-size.bin', evil, { sha256: sha256Hex(good) });
      // Wrong size too.
      const short = good.subarray(0, 99_000);
      const shortSha = sha256Hex(Buffer.from('another claimed content'));
      await putBlob(emulators, w.world.originBucket, shortSha, short);
      await commitVersion(w.world.deps, {
        uploadId: randomUUID(),
        path: 'bad/wrong-size.bin',
        sha256: shortSha,
        size: 100_000,
        contentType: 'application/octet-stream',
        deleted: false,
      });
      // And a good file after them, to know the agent got that far.
      await commitBytes(w, 'bad/fine.bin', good);
      await waitFor('the good file', () => readIfExists(join(w.dir, 'bad/fine.bin')));
      await waitFor('both refusals', () =>
        (agent.handle.stats().refusedBy['content-mismatch'] ?? 0) >= 2 ? true : undefined,
      );
      expect(await allFiles(join(w.dir, 'bad'))).toEqual(['fine.bin']);
      const refusals = agent.log.entries.filter((e) => e.msg === 'refused');
      expect(refusals.map((e) => e.fields.path)).toEqual(
        expect.arrayContaining(['bad/same-size.bin', 'bad/wrong-size.bin']),
      );
      expect(String(refusals[0]?.fields.reason)).toMatch(/does not match|bytes in the origin|more than/);
      // Never marked as held; the refusal is on the path's target row, for `status` and `sync --wait`.
      const row = await waitFor('the refusal on the target row', async () =>
        (await w.world.ledger.getTargetState('bad/same-size.bin', 'gamma'))?.failure === undefined
          ? undefined
          : w.world.ledger.getTargetState('bad/same-size.bin', 'gamma'),
      );
      expect(row).toMatchObject({
        appliedVersion: 0,
        failure: {
          version: 1,
          reason: expect.stringMatching(/does not match|bytes in the origin|more than/),
        },
      });
    } finally {
      await agent.handle.stop();
    }
  });

  it('paths with spaces, +, &, = and non-ASCII letters round-trip; escaping paths are refused and counted', async () => {
    const w = await agentWorld();
    const outside = join(scratch, `outside-${randomUUID().slice(0, 8)}`);
    await mkdir(outside);
    await mkdir(w.dir, { recursive: true });
    await symlink(outside, join(w.dir, 'escape-link'));
    await mkdir(join(w.dir, 'inside-target'));
    await symlink(join(w.dir, 'inside-target'), join(w.dir, 'inside-link'));
    const agent = await runAgent(w);
    try {
      const odd = [
        'with space/a file name.txt',
        'plus+sign/a+b=c.txt',
        'amp&semi;/a=b,c;d.txt',
        'ünïcødé/日本語 ファイル.txt',
        'Ελληνικά/ÆØÅ — ĉu ŝi.bin',
      ];
      for (const path of odd) await commitBytes(w, path, Buffer.from(`content of ${path}\n`));
      const escaping = [
        '../escaped.txt',
        '/tmp/absolute.txt',
        'a/../../escaped.txt',
        'escape-link/through-symlink.txt',
        '.media-mirror/state.snapshot',
        // Inside, but a second name for inside-target/: never followed.
        'inside-link/via a link inside.txt',
      ];
      for (const path of escaping) await commitBytes(w, path, Buffer.from(`evil ${path}\n`));
      for (const path of odd) {
        const got = await waitFor(path, () => readIfExists(join(w.dir, path)));
        expect(got.toString()).toBe(`content of ${path}\n`);
      }
      await waitFor('six refusals', () =>
        (agent.handle.stats().refusedBy['unsafe-path'] ?? 0) >= escaping.length ? true : undefined,
      );
      expect(await readdir(outside)).toEqual([]);
      await expect(lstat(join(scratch, 'escaped.txt'))).rejects.toThrow();
      await expect(lstat('/tmp/absolute.txt')).rejects.toThrow();
      expect((await lstat(join(w.dir, 'escape-link'))).isSymbolicLink()).toBe(true);
      const refusedPaths = new Set(
        agent.log.entries.filter((e) => e.fields.code === 'unsafe-path').map((e) => e.fields.path),
      );
      for (const path of escaping) expect(refusedPaths).toContain(path);
    } finally {
      await agent.handle.stop();
    }
  });

  it("`media-mirror agent` on a folder swapped for a symlink while it runs: nothing in the link's target, one error line, exit 73", async () => {
    const w = await agentWorld();
    const endpointsFile = await writePullEndpoints(
      emulators,
      join(scratch, `endpoints-${randomUUID().slice(0, 8)}.json`),
      { table: w.table, originBucket: w.world.originBucket, queueUrl: w.queueUrl },
    );
    const program = new Command().exitOverride().option('--endpoints <file>');
    let stderr = '';
    registerAgentCommand(program, {
      stdout: { write: () => true },
      stderr: { write: (s: string) => (stderr += s) },
      env: {},
      cwd: scratch,
      onSignal: () => () => undefined,
    });
    const running = program
      .parseAsync(
        ['--endpoints', endpointsFile, 'agent', '--target', 'gamma', '--dir', w.dir, '--log-format', 'json'],
        { from: 'user' },
      )
      .then(
        () => 0,
        (error: unknown) => (error instanceof AgentExitError ? error.exitCode : Promise.reject(error)),
      );
    await commitBytes(w, 'swap/before.txt', Buffer.from('before the swap'));
    await waitFor('the first file', () => readIfExists(join(w.dir, 'swap/before.txt')));
    const elsewhere = join(scratch, `elsewhere-${randomUUID().slice(0, 8)}`);
    await mkdir(join(elsewhere, 'swap'), { recursive: true });
    await rename(w.dir, `${w.dir}.old`);
    await symlink(elsewhere, w.dir);
    await commitBytes(w, 'swap/after.txt', Buffer.from('after the swap'));
    // Without the check it runs on (writing into the link's target): fail, not hang.
    const stopped = new Promise<string>((resolve) =>
      setTimeout(() => resolve('still running'), 20_000).unref(),
    );
    expect(await Promise.race([running, stopped])).toBe(73);
    expect(await readdir(elsewhere, { recursive: true })).toEqual(['swap']);
    const lines = stderr
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { level: string; msg: string; now?: string });
    const errors = lines.filter((l) => l.level === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ now: 'a symlink', exitCode: 73 });
    expect(lines.at(-1)?.msg).toBe('agent stopped');
  });

  it("`agent verify --repair` fixes a file changed on disk behind the agent's back", async () => {
    const w = await agentWorld();
    const agent = await runAgent(w);
    const files = new Map<string, Buffer>();
    try {
      for (let i = 0; i < 6; i++) {
        const path = `verify/file-${i}.bin`;
        const bytes = randomBytes(20_000 + i);
        files.set(path, bytes);
        await commitBytes(w, path, bytes);
      }
      for (const path of files.keys()) await waitFor(path, () => readIfExists(join(w.dir, path)));
    } finally {
      await agent.handle.stop();
    }
    // Behind the agent's back: same size other bytes, a shorter file, a deleted file, an extra, a temp.
    const changed = Buffer.from(files.get('verify/file-0.bin') as Buffer);
    changed[0] = (changed[0] as number) ^ 1;
    await writeFile(join(w.dir, 'verify/file-0.bin'), changed);
    await writeFile(join(w.dir, 'verify/file-1.bin'), 'truncated');
    await rm(join(w.dir, 'verify/file-2.bin'));
    await writeFile(join(w.dir, 'verify/not-in-ledger.txt'), 'extra');
    await writeFile(join(w.dir, 'verify/.file-3.bin.mirror-tmp-deadbeef'), 'stale');

    const config = verifyConfig(w);
    const before = await verifyMirror(config, { repair: false });
    expect(before.ok).toBe(3);
    expect(before.wrong.map((e) => e.path)).toEqual(['verify/file-0.bin', 'verify/file-1.bin']);
    expect(before.missing.map((e) => e.path)).toEqual(['verify/file-2.bin']);
    expect(before.extra.map((e) => e.path)).toEqual(['verify/not-in-ledger.txt']);
    expect(before.staleTemps).toEqual(['verify/.file-3.bin.mirror-tmp-deadbeef']);

    // Through the command line, as an operator would run it.
    const cli = await verifyCli(w);
    // A file anyone with write access to the folder named: its escape sequences (a window
    // title, a cleared line) are shown escaped, not run by the operator's terminal.
    await writeFile(join(w.dir, 'verify', 'evil\x1b]0;owned\x07\x1b[2K.txt'), 'x');
    const check = await cli('--dir', w.dir);
    expect(check.exitCode).toBe(1);
    expect(check.stdout).toMatch(/wrong bytes \(2\)/);
    expect(check.stdout).not.toContain('\x1b');
    expect(check.stdout).not.toContain('\x07');
    expect(check.stdout).toContain('verify/evil\\x1b]0;owned\\x07\\x1b[2K.txt');
    const repaired = await cli('--dir', w.dir, '--repair');
    expect(repaired.exitCode).toBe(0);
    expect(repaired.stdout).toMatch(/repaired: 3 fetched, 2 removed, 1 temp files removed/);
    for (const [path, bytes] of files) expect((await readFile(join(w.dir, path))).equals(bytes)).toBe(true);
    await expect(lstat(join(w.dir, 'verify/not-in-ledger.txt'))).rejects.toThrow();
    await expectNoDrift(cli, w.dir, 6);
  });

  it('`agent verify --repair` fixes a folder where a file belongs in ONE run, and prunes only the folders its removals emptied', async () => {
    const w = await agentWorld();
    const agent = await runAgent(w);
    const f4 = randomBytes(5_000);
    const f5 = randomBytes(5_001);
    try {
      await commitBytes(w, 'base/f4.txt', f4);
      await commitBytes(w, 'base/f5.txt', f5);
      for (const path of ['base/f4.txt', 'base/f5.txt'])
        await waitFor(path, () => readIfExists(join(w.dir, path)));
    } finally {
      await agent.handle.stop();
    }
    // Behind the stopped agent's back (probe O5): base/f4.txt becomes a folder holding files (one
    // of them deeper, one a leftover temp), and extras sit in folders of their own.
    await rm(join(w.dir, 'base/f4.txt'));
    await mkdir(join(w.dir, 'base/f4.txt/sub'), { recursive: true });
    await writeFile(join(w.dir, 'base/f4.txt/inner'), 'inner');
    await writeFile(join(w.dir, 'base/f4.txt/sub/more.txt'), 'more');
    await writeFile(join(w.dir, 'base/f4.txt/.inner.mirror-tmp-cafe01'), 'stale');
    await mkdir(join(w.dir, 'junk/deep'), { recursive: true });
    await writeFile(join(w.dir, 'junk/deep/x.txt'), 'x');
    await mkdir(join(w.dir, 'gone/a/b'), { recursive: true });
    await writeFile(join(w.dir, 'gone/a/b/y.txt'), 'y');
    // junk/ still holds a symlink (never followed, never removed) after its extras go: it stays,
    // and the folder the link points at (outside the mirror) is untouched.
    const outside = await mkdtemp(join(scratch, 'outside-'));
    await writeFile(join(outside, 'keep.txt'), 'keep');
    await symlink(outside, join(w.dir, 'junk/link'));
    // An empty folder no removal emptied is not verify's to remove.
    await mkdir(join(w.dir, 'was-empty'));

    const cli = await verifyCli(w);
    const repaired = await cli('--dir', w.dir, '--repair');
    expect(repaired.stdout).not.toMatch(/could not repair/);
    expect(repaired.stdout).toMatch(/repaired: 1 fetched, 4 removed, 1 temp files removed/);
    expect(repaired.exitCode).toBe(0);

    expect((await lstat(join(w.dir, 'base/f4.txt'))).isFile()).toBe(true);
    expect((await readFile(join(w.dir, 'base/f4.txt'))).equals(f4)).toBe(true);
    expect((await readFile(join(w.dir, 'base/f5.txt'))).equals(f5)).toBe(true);
    await expect(lstat(join(w.dir, 'junk/deep'))).rejects.toThrow(/ENOENT/);
    expect((await readdir(join(w.dir, 'junk'))).sort()).toEqual(['link']);
    expect((await lstat(join(w.dir, 'junk/link'))).isSymbolicLink()).toBe(true);
    expect(await readdir(outside)).toEqual(['keep.txt']);
    await expect(lstat(join(w.dir, 'gone'))).rejects.toThrow(/ENOENT/);
    expect((await lstat(join(w.dir, 'was-empty'))).isDirectory()).toBe(true);
    expect((await lstat(w.dir)).isDirectory()).toBe(true);
    expect((await readdir(w.dir)).sort()).toEqual(['.media-mirror', 'base', 'junk', 'was-empty']);

    await expectNoDrift(cli, w.dir, 2);
  });
});
