import { chmod, chown, copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseByteSize, resolveAgentConfig } from '../../../agent/config.ts';
import { AgentConfigError, classifyCondition } from '../../../agent/errors.ts';
import { backoffMs, KeyedLock, Semaphore } from '../../../agent/util.ts';

let cwd: string;
beforeAll(async () => {
  cwd = await mkdtemp(join(tmpdir(), 'mm-agent-config-'));
  await mkdir(join(cwd, '.mirror'));
  await writeFile(
    join(cwd, '.mirror', 'endpoints.json'),
    JSON.stringify({
      api: 'http://127.0.0.1:8787',
      token: 't',
      s3: {
        endpoint: 'http://127.0.0.1:9001',
        region: 'eu-central-1',
        credentials: { accessKeyId: 'k', secretAccessKey: 's' },
        forcePathStyle: true,
      },
      sqs: { endpoint: 'http://127.0.0.1:9002' },
      dynamodb: { endpoint: 'http://127.0.0.1:9003' },
      table: 'local-ledger',
      originBucket: 'local-origin',
      targets: {
        'onprem-dc1': { kind: 'pull', queue: 'http://127.0.0.1:9002/000000000000/onprem-dc1.fifo' },
        'eu-west-1': { kind: 's3', bucket: 'replica-eu-west-1', queue: 'http://127.0.0.1:9002/q/eu.fifo' },
      },
    }),
  );
  await writeFile(
    join(cwd, 'mirror.config.json'),
    JSON.stringify({
      feedShards: 8,
      targets: [
        { id: 'eu-west-1', kind: 's3', region: 'eu-west-1' },
        { id: 'onprem-dc1', kind: 'pull', pathPrefix: 'public/' },
      ],
    }),
  );
});
afterAll(async () => {
  await rm(cwd, { recursive: true, force: true });
});

describe('agent configuration', () => {
  it('a named endpoints file that is missing or not JSON is refused, naming the file', async () => {
    const missing = join(cwd, 'nowhere.json');
    await expect(
      resolveAgentConfig({ flags: { target: 'onprem-dc1', dir: 'media', endpoints: missing }, env: {}, cwd }),
    ).rejects.toThrow(
      new AgentConfigError(
        `cannot read the endpoints file ${missing}: ENOENT: no such file or directory, open '${missing}'`,
      ),
    );
    const broken = join(cwd, 'broken.json');
    await writeFile(broken, '{ "table": ');
    const refusal = resolveAgentConfig({
      flags: { target: 'onprem-dc1', dir: 'media', endpoints: broken },
      env: {},
      cwd,
    });
    await expect(refusal).rejects.toBeInstanceOf(AgentConfigError);
    await expect(refusal).rejects.toThrow(`the endpoints file ${broken} is not valid JSON: `);
  });

  it('an endpoints file other users may write (or another user owns) is refused: it names where the agent reads from (probe localsec)', async () => {
    const shared = await mkdtemp(join(tmpdir(), 'mm-agent-planted-'));
    try {
      await mkdir(join(shared, '.mirror'));
      const planted = join(shared, '.mirror', 'endpoints.json');
      await copyFile(join(cwd, '.mirror', 'endpoints.json'), planted);
      await chmod(planted, 0o664);
      const refusal = resolveAgentConfig({
        flags: { target: 'onprem-dc1', dir: 'media' },
        env: {},
        cwd: shared,
      });
      await expect(refusal).rejects.toBeInstanceOf(AgentConfigError);
      await expect(refusal).rejects.toThrow(
        `the endpoints file ${planted} is not to be trusted: other users may write it (mode 0664). ` +
          'It names where the agent reads the mirror from: fix its mode (chmod go-w) if it is yours, ' +
          'else pass --table, --origin-bucket and --queue-url',
      );
      await chmod(planted, 0o644);
      await expect(
        resolveAgentConfig({ flags: { target: 'onprem-dc1', dir: 'media' }, env: {}, cwd: shared }),
      ).resolves.toMatchObject({ table: 'local-ledger' });
    } finally {
      await rm(shared, { recursive: true, force: true });
    }
  });

  it('a ./mirror.config.json others may write (or another user owns) is refused when no --config names it: it selects what the agent mirrors (probe localsec)', async () => {
    // Read from the working directory unasked: in a shared folder, a planted topology with a narrower
    // pathPrefix made the agent quietly stop mirroring the rest (its cursor kept past it).
    const shared = await mkdtemp(join(tmpdir(), 'mm-agent-planted-topology-'));
    try {
      await mkdir(join(shared, '.mirror'));
      await copyFile(join(cwd, '.mirror', 'endpoints.json'), join(shared, '.mirror', 'endpoints.json'));
      const planted = join(shared, 'mirror.config.json');
      await copyFile(join(cwd, 'mirror.config.json'), planted);
      const resolveIn = (flags: Record<string, string>) =>
        resolveAgentConfig({ flags: { target: 'onprem-dc1', dir: 'media', ...flags }, env: {}, cwd: shared });
      await chmod(planted, 0o666);
      await expect(resolveIn({})).rejects.toThrow(
        `the topology ${planted} (read since no --config names one) is not to be trusted: other users may write it (mode 0666)`,
      );
      if (process.getuid?.() === 0) {
        await chmod(planted, 0o644);
        await chown(planted, 65534, 65534);
        await expect(resolveIn({})).rejects.toThrow(/belongs to another user \(uid 65534\)/);
        // Named, it is the operator's choice.
        await expect(resolveIn({ config: planted })).resolves.toMatchObject({ pathPrefix: 'public/' });
        await chown(planted, 0, 0);
      }
      // The group may write it (a checkout under umask 002); the owner's own file is read.
      await chmod(planted, 0o664);
      await expect(resolveIn({})).resolves.toMatchObject({ pathPrefix: 'public/' });
    } finally {
      await rm(shared, { recursive: true, force: true });
    }
  });

  it('locally: everything from the endpoints file and the topology', async () => {
    const config = await resolveAgentConfig({ flags: { target: 'onprem-dc1', dir: 'media' }, env: {}, cwd });
    expect(config).toMatchObject({
      targetId: 'onprem-dc1',
      dir: join(cwd, 'media'),
      stateDir: join(cwd, 'media', '.media-mirror'),
      table: 'local-ledger',
      originBucket: 'local-origin',
      queueUrl: 'http://127.0.0.1:9002/000000000000/onprem-dc1.fifo',
      region: 'eu-central-1',
      feedShards: 8,
      pathPrefix: 'public/',
      concurrency: 4,
      waitTimeSeconds: 20,
      folderCheckIntervalSeconds: 900,
      aws: {
        s3Endpoint: 'http://127.0.0.1:9001',
        sqsEndpoint: 'http://127.0.0.1:9002',
        dynamodbEndpoint: 'http://127.0.0.1:9003',
        s3ForcePathStyle: true,
        credentials: { accessKeyId: 'k', secretAccessKey: 's' },
      },
    });
  });

  it('a state folder inside the mirror folder is refused unless it is .media-mirror (no mirrored path may take that name)', async () => {
    const inside = resolveAgentConfig({
      flags: { target: 'onprem-dc1', dir: 'media', stateDir: 'media/.state' },
      env: {},
      cwd,
    });
    await expect(inside).rejects.toBeInstanceOf(AgentConfigError);
    await expect(inside).rejects.toThrow(
      `the state folder ${join(cwd, 'media', '.state')} is inside the mirror folder ${join(cwd, 'media')}`,
    );
    const fromEnv = resolveAgentConfig({
      flags: { target: 'onprem-dc1', dir: 'media' },
      env: { MIRROR_AGENT_STATE_DIR: join(cwd, 'media') },
      cwd,
    });
    await expect(fromEnv).rejects.toThrow(
      /MIRROR_AGENT_STATE_DIR: the state folder .* is inside the mirror folder/,
    );
    for (const stateDir of ['media/.media-mirror', 'agent-state', 'media-state']) {
      const config = await resolveAgentConfig({
        flags: { target: 'onprem-dc1', dir: 'media', stateDir },
        env: {},
        cwd,
      });
      expect(config.stateDir).toBe(join(cwd, stateDir));
    }
  });

  it('a state folder that is inside the mirror folder through a symlink is refused as well', async () => {
    // docs/agent.md: "any other folder inside <dir> is refused, since uploads could then write the
    // agent's journal". Judged by name only, a state folder reached through a link (a folder moved
    // to a bigger disk and linked back, say) was taken, and the agent kept its journal and snapshot
    // where a mirrored path (sub/state.journal) would replace them.
    await mkdir(join(cwd, 'linked', 'mirror', 'sub'), { recursive: true });
    await symlink(join(cwd, 'linked', 'mirror', 'sub'), join(cwd, 'linked', 'state-link'));
    await symlink(join(cwd, 'linked', 'mirror'), join(cwd, 'linked', 'mirror-link'));
    const refused = [
      { dir: 'linked/mirror', stateDir: 'linked/state-link' },
      { dir: 'linked/mirror', stateDir: 'linked/state-link/new' },
      { dir: 'linked/mirror-link', stateDir: 'linked/mirror/state' },
      { dir: 'linked/mirror', stateDir: 'linked/mirror-link/state' },
    ];
    for (const flags of refused) {
      const refusal = resolveAgentConfig({ flags: { target: 'onprem-dc1', ...flags }, env: {}, cwd });
      await expect(refusal, JSON.stringify(flags)).rejects.toThrow(
        `--state-dir: the state folder ${join(cwd, flags.stateDir)} is inside the mirror folder ${join(cwd, flags.dir)}`,
      );
    }
    // The one name no mirrored path may take is that name by its real path too.
    for (const flags of [
      { dir: 'linked/mirror-link', stateDir: 'linked/mirror/.media-mirror' },
      { dir: 'linked/mirror', stateDir: 'linked/mirror-link/.media-mirror' },
      { dir: 'linked/mirror-link' },
    ]) {
      const config = await resolveAgentConfig({ flags: { target: 'onprem-dc1', ...flags }, env: {}, cwd });
      expect(config.dir, JSON.stringify(flags)).toBe(join(cwd, flags.dir));
    }
  });

  it('on AWS: flags beat environment variables; no endpoints file is read; the credential chain is used', async () => {
    const config = await resolveAgentConfig({
      flags: {
        target: 'onprem-dc1',
        dir: '/srv/media',
        table: 'from-flag',
        originBucket: 'origin-bucket',
        queueUrl: 'https://sqs.us-east-1.amazonaws.com/123456789012/onprem-dc1.fifo',
        concurrency: '8',
        maxBytesPerSecond: '10MiB',
      },
      env: {
        MIRROR_TABLE: 'from-env',
        MIRROR_AGENT_CONCURRENCY: '2',
        AWS_REGION: 'eu-west-1',
        MIRROR_FEED_SHARDS: '16',
        MIRROR_AGENT_CHECK_INTERVAL: '0',
      },
      cwd: '/nonexistent',
    });
    expect(config).toMatchObject({
      folderCheckIntervalSeconds: 0,
      table: 'from-flag',
      concurrency: 8,
      region: 'eu-west-1',
      feedShards: 16,
      maxBytesPerSecond: 10 * 1024 * 1024,
      aws: { s3ForcePathStyle: false, credentials: undefined, s3Endpoint: undefined },
    });
  });

  it('lists every problem at once, each with where the value came from', async () => {
    const error = await resolveAgentConfig({
      flags: { concurrency: '0', maxBytesPerSecond: 'fast', queueUrl: 'not a url' },
      env: { MIRROR_FEED_SHARDS: '100', MIRROR_AGENT_CHECK_INTERVAL: '30' },
      cwd: '/nonexistent',
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AgentConfigError);
    const message = (error as Error).message;
    expect(message).toMatch(/--target \(or MIRROR_AGENT_TARGET\): is required/);
    expect(message).toMatch(/--dir \(or MIRROR_AGENT_DIR\): is required/);
    expect(message).toMatch(/--table \(or MIRROR_TABLE\): is required/);
    expect(message).toMatch(/--concurrency: /);
    expect(message).toMatch(/MIRROR_FEED_SHARDS: /);
    expect(message).toMatch(/MIRROR_AGENT_CHECK_INTERVAL: must be 0 \(off\) or between 60 and 604800/);
    expect(message).toMatch(/--queue-url: must be a URL/);
    expect(message).toMatch(/--max-bytes-per-second: "fast" is not a byte rate/);
    expect(message).toMatch(/no endpoints file at .*: on AWS pass --table/);
    expect((error as AgentConfigError).exitCode).toBe(78);
  });

  it('refuses a target the endpoints file does not have, or an S3 target', async () => {
    await expect(
      resolveAgentConfig({ flags: { target: 'nope-target', dir: 'm' }, env: {}, cwd }),
    ).rejects.toThrow(/not in .*endpoints.json; its pull targets are: onprem-dc1/);
    await expect(
      resolveAgentConfig({ flags: { target: 'eu-west-1', dir: 'm' }, env: {}, cwd }),
    ).rejects.toThrow(/s3 target; the agent serves pull targets only/);
  });

  it('reads byte rates', () => {
    expect(parseByteSize('1000')).toBe(1000);
    expect(parseByteSize('50MiB')).toBe(50 * 1024 ** 2);
    expect(parseByteSize('1.5 G')).toBe(1.5e9);
    expect(parseByteSize('10 parsecs')).toBeUndefined();
    expect(parseByteSize('0')).toBeUndefined();
  });
});

describe('agent errors and helpers', () => {
  it('sorts errors into the conditions an operator is told about', () => {
    const errno = (code: string) => Object.assign(new Error(code), { code });
    expect(classifyCondition(errno('ENOSPC'))).toBe('disk-full');
    expect(classifyCondition(errno('EACCES'))).toBe('permission-denied');
    expect(classifyCondition(errno('EROFS'))).toBe('read-only-filesystem');
    expect(classifyCondition(errno('ECONNRESET'))).toBe('network');
    expect(classifyCondition(new TypeError('fetch failed', { cause: errno('ENOTFOUND') }))).toBe('network');
    expect(classifyCondition(Object.assign(new Error('x'), { name: 'ThrottlingException' }))).toBe(
      'throttled',
    );
    expect(classifyCondition(Object.assign(new Error('x'), { name: 'AccessDenied' }))).toBe('access-denied');
    expect(classifyCondition(Object.assign(new Error('x'), { $metadata: { httpStatusCode: 500 } }))).toBe(
      'aws-unavailable',
    );
    expect(classifyCondition(Object.assign(new Error('x'), { name: 'CredentialsProviderError' }))).toBe(
      'credentials',
    );
    expect(classifyCondition(new Error('a bug'))).toBeUndefined();
  });

  it('a signature DynamoDB refuses (400 InvalidSignatureException: a wrong secret) is access denied, as S3’s 403 is', async () => {
    // DynamoDB answers a bad signature with 400, not 403, under a name of its own; the answer goes
    // through the SDK's own deserializer here, as the agent's calls do.
    const client = new DynamoDBClient({
      region: 'us-east-1',
      endpoint: 'http://127.0.0.1:9',
      credentials: { accessKeyId: 'AKID', secretAccessKey: 'not-the-secret' },
      maxAttempts: 1,
      requestHandler: {
        async handle() {
          return {
            response: {
              statusCode: 400,
              headers: { 'content-type': 'application/x-amz-json-1.0' },
              body: new TextEncoder().encode(
                JSON.stringify({
                  __type: 'com.amazon.coral.service#InvalidSignatureException',
                  message: 'The request signature we calculated does not match the signature you provided.',
                }),
              ),
            },
          };
        },
      } as never,
    });
    const refused = await client
      .send(new GetItemCommand({ TableName: 'ledger', Key: { pk: { S: 'a' }, sk: { S: 'b' } } }))
      .catch((error: unknown) => error);
    expect(refused).toMatchObject({ name: 'InvalidSignatureException', $metadata: { httpStatusCode: 400 } });
    expect(classifyCondition(refused)).toBe('access-denied');
  });

  it('backoff doubles, is capped, and jitters', () => {
    const top = () => 1;
    expect([0, 1, 2, 3, 10, 50].map((a) => backoffMs(a, 1000, 60_000, top))).toEqual([
      1000, 2000, 4000, 8000, 60_000, 60_000,
    ]);
    expect(backoffMs(3, 1000, 60_000, () => 0)).toBe(4000);
  });

  it('the semaphore bounds concurrency; the keyed lock serialises one key', async () => {
    const pool = new Semaphore(2);
    let running = 0;
    let peak = 0;
    await Promise.all(
      Array.from({ length: 10 }, () =>
        pool.run(async () => {
          peak = Math.max(peak, ++running);
          await new Promise((r) => setTimeout(r, 2));
          running--;
        }),
      ),
    );
    expect(peak).toBe(2);
    const lock = new KeyedLock();
    const order: number[] = [];
    await Promise.all(
      [3, 1, 2].map((delay, i) =>
        lock.run('k', async () => {
          await new Promise((r) => setTimeout(r, delay));
          order.push(i);
        }),
      ),
    );
    expect(order).toEqual([0, 1, 2]);
    expect(lock.size).toBe(0);
  });
});
