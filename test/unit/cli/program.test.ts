import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliIo, runCli } from '../../../cli/program.ts';
import type { PutFileRequest } from '../../../cli/put-file.ts';
import type { FetchLike } from '../../../web/client/api.ts';
import { silentProgress } from '../../support/silent-progress.ts';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

let dir: string;
let file: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-cli-program-'));
  file = join(dir, 'photo.png');
  await writeFile(file, randomBytes(10_000));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

type Route = (url: URL, init: RequestInit) => { status: number; body: unknown };

function harness(route: Route, extra: Partial<CliIo> = {}) {
  let stdout = '';
  let stderr = '';
  const requests: string[] = [];
  const puts: PutFileRequest[] = [];
  const fetch: FetchLike = async (input, init) => {
    const url = new URL(input);
    requests.push(`${init.method} ${url.pathname}`);
    const { status, body } = route(url, init);
    return new Response(typeof body === 'string' ? body : JSON.stringify(body), { status });
  };
  let t = 0;
  const io: CliIo = {
    stdout: {
      write: (s: string) => {
        stdout += s;
      },
    },
    stderr: {
      write: (s: string) => {
        stderr += s;
      },
    },
    env: { MIRROR_API_URL: 'https://api.test', MIRROR_API_TOKEN: 't' },
    cwd: dir,
    fetch,
    putFile: async (req) => {
      puts.push(req);
    },
    clock: {
      now: () => t,
      sleep: async (ms) => {
        t += ms;
      },
    },
    progress: silentProgress,
    now: () => new Date('2025-06-01T12:00:00Z'),
    ...extra,
  };
  const run = (...args: string[]) => runCli(['node', 'media-mirror', ...args], io);
  return { run, requests, puts, out: () => stdout, err: () => stderr };
}

const fileStatus = {
  path: 'images/a.png',
  head: {
    version: 5,
    sha256: 'ab'.repeat(32),
    size: 2048,
    contentType: 'image/png',
    committedAt: '2025-06-01T11:55:00Z',
    deleted: false,
  },
  targets: [
    { id: 'eu-west-1', kind: 's3', appliedVersion: 5, status: 'verified', appliedAt: '2025-06-01T11:59:30Z' },
    {
      id: 'onprem-dc1',
      kind: 'pull',
      appliedVersion: 3,
      status: 'copied',
      appliedAt: '2025-06-01T10:00:00Z',
    },
  ],
};

describe('media-mirror status', () => {
  it('with a path: prints the head and a table of targets', async () => {
    const h = harness(() => ({ status: 200, body: fileStatus }));
    expect(await h.run('status', 'images/a.png')).toBe(0);
    // A pull target lacks the head: what its agent reports is asked for too (here the fake answers
    // a file status to that as well, so no note: the path's status is printed all the same).
    // And the API's clock (its health check), to age the times on.
    expect(h.requests).toEqual(['GET /v1/files/images%2Fa.png', 'GET /v1/health', 'GET /v1/targets']);
    expect(h.out()).toBe(
      [
        'path       images/a.png',
        'version    5',
        `sha256     ${'ab'.repeat(32)}`,
        'size       2.0 KiB (2048 bytes)',
        'type       image/png',
        'committed  2025-06-01 11:55:00Z (5m ago)',
        '',
        'TARGET      KIND  APPLIED       STATUS    SINCE',
        'eu-west-1   s3    5             verified  2025-06-01 11:59:30Z (30s ago)',
        'onprem-dc1  pull  3 (behind 2)  copied    2025-06-01 10:00:00Z (2h ago)',
        '',
      ].join('\n'),
    );
  });

  it("with a path: ages on the API's clock when this host's is hours off (probe skew)", async () => {
    const h = harness(
      (url) =>
        url.pathname === '/v1/health'
          ? { status: 200, body: { status: 'ok', time: '2025-06-01T12:00:00Z' } }
          : { status: 200, body: fileStatus },
      { now: () => new Date('2025-06-01T09:00:00Z') },
    );
    expect(await h.run('status', 'images/a.png')).toBe(0);
    expect(h.out()).toContain('committed  2025-06-01 11:55:00Z (5m ago)');
    expect(h.out()).toContain('eu-west-1   s3    5             verified  2025-06-01 11:59:30Z (30s ago)');
  });

  it('with a path and --json: the API answer as JSON', async () => {
    const h = harness(() => ({ status: 200, body: fileStatus }));
    expect(await h.run('status', 'images/a.png', '--json')).toBe(0);
    expect(JSON.parse(h.out())).toEqual(fileStatus);
  });

  it('404: "no such path", exit 3', async () => {
    const h = harness(() => ({
      status: 404,
      body: { error: { code: 'not_found', message: 'no such path' } },
    }));
    expect(await h.run('status', 'images/missing.png')).toBe(3);
    expect(h.err()).toBe('media-mirror: no such path: images/missing.png\n');
    expect(h.out()).toBe('');
  });

  it('without a path: health and a table of targets with lag, backlog, heartbeat and failures', async () => {
    const metrics = [
      '# HELP mirror_dlq_messages Messages in a dead-letter queue',
      '# TYPE mirror_dlq_messages gauge',
      'mirror_dlq_messages{queue="mirror-ingest-dlq"} 0',
      'mirror_dlq_messages{queue="mirror-target-eu-west-1-dlq.fifo",target="eu-west-1"} 2',
      'mirror_dlq_messages{queue="mirror-target-onprem-dc1-dlq.fifo",target="onprem-dc1"} 0',
      '',
    ].join('\n');
    const h = harness((url) => {
      if (url.pathname === '/v1/health')
        return { status: 200, body: { status: 'ok', time: '2025-06-01T12:00:00Z' } };
      if (url.pathname === '/metrics') return { status: 200, body: metrics };
      return {
        status: 200,
        body: {
          targets: [
            {
              id: 'eu-west-1',
              kind: 's3',
              region: 'eu-west-1',
              lag: { lagSeconds: 0, pending: 0, pendingCapped: false, measuredAt: new Date().toISOString() },
            },
            {
              id: 'onprem-dc1',
              kind: 'pull',
              pathPrefix: 'images/',
              lag: {
                lagSeconds: 125.4,
                measuredAt: new Date().toISOString(),
                pending: 1000,
                pendingCapped: true,
                oldestPending: { path: 'images/a.png', version: 3, committedAt: '2025-06-01T11:57:55Z' },
                heartbeatAgeSeconds: 4.25,
                agentConditions: ['disk-full'],
              },
            },
            {
              id: 'onprem-dc2',
              kind: 'pull',
              lag: {
                lagSeconds: 3.5,
                pending: 2,
                pendingCapped: false,
                heartbeatAgeSeconds: null,
                measuredAt: new Date().toISOString(),
              },
            },
          ],
        },
      };
    });
    expect(await h.run('status')).toBe(0);
    expect(h.requests.sort()).toEqual(['GET /metrics', 'GET /v1/health', 'GET /v1/targets']);
    expect(h.out()).toBe(
      [
        'api     https://api.test',
        'health  ok',
        '',
        'TARGET      KIND  LAG (S)  BACKLOG  HEARTBEAT             FAILED (DLQ)  REGION     PATH PREFIX',
        'eu-west-1   s3    0        0        -                     2             eu-west-1  (all)',
        'onprem-dc1  pull  125      1000+    4.3s ago (disk-full)  0             -          images/',
        'onprem-dc2  pull  3.5      2        never                 -             -          (all)',
        'onprem-dc1: oldest pending images/a.png v3, committed 2025-06-01T11:57:55Z',
        '',
      ].join('\n'),
    );
  });

  it('without a path, against an API without /metrics (API Gateway): no failure counts', async () => {
    const h = harness((url) =>
      url.pathname === '/v1/health'
        ? { status: 200, body: { status: 'ok', time: '2025-06-01T12:00:00Z' } }
        : url.pathname === '/metrics'
          ? { status: 403, body: { message: 'Forbidden' } }
          : {
              status: 200,
              body: {
                targets: [
                  {
                    id: 'eu-west-1',
                    kind: 's3',
                    region: 'eu-west-1',
                    lag: {
                      lagSeconds: 0,
                      pending: 0,
                      pendingCapped: false,
                      measuredAt: new Date().toISOString(),
                    },
                  },
                  {
                    id: 'onprem-dc1',
                    kind: 'pull',
                    pathPrefix: 'images/',
                    lag: {
                      lagSeconds: 0,
                      pending: 0,
                      pendingCapped: false,
                      heartbeatAgeSeconds: null,
                      measuredAt: new Date().toISOString(),
                    },
                  },
                ],
              },
            },
    );
    expect(await h.run('status')).toBe(0);
    expect(h.out()).toBe(
      [
        'api     https://api.test',
        'health  ok',
        '',
        'TARGET      KIND  LAG (S)  BACKLOG  HEARTBEAT  FAILED (DLQ)  REGION     PATH PREFIX',
        'eu-west-1   s3    0        0        -          -             eu-west-1  (all)',
        'onprem-dc1  pull  0        0        never      -             -          images/',
        '',
      ].join('\n'),
    );
  });

  it("with a path: the targets' last failures when the API reports them", async () => {
    const failing = {
      ...fileStatus,
      targets: [
        fileStatus.targets[0],
        {
          ...fileStatus.targets[1],
          failure: {
            version: 5,
            reason: 'NoSuchKey: The specified key\ndoes not exist.',
            at: '2025-06-01T11:59:00Z',
          },
        },
      ],
    };
    const h = harness(() => ({ status: 200, body: failing }));
    expect(await h.run('status', 'images/a.png')).toBe(0);
    expect(h.out()).toContain(
      [
        'onprem-dc1  pull  3 (behind 2)  copied    2025-06-01 10:00:00Z (2h ago)',
        '',
        'last failures',
        '  onprem-dc1  v5 2025-06-01 11:59:00Z (1m ago): NoSuchKey: The specified key does not exist.',
        '',
      ].join('\n'),
    );
  });
});

const later = '2025-06-01T12:15:00Z';
const headers = {
  'content-type': 'image/png',
  'x-amz-checksum-sha256': `${'A'.repeat(43)}=`,
};
const notHeld = {
  status: 422,
  body: { error: { code: 'proof_not_accepted', message: 'send the bytes', field: 'digest' } },
};

describe('media-mirror upload', () => {
  it('pending → PUT → committed, --json result on stdout', async () => {
    let polls = 0;
    const h = harness((url, init) => {
      if (url.pathname.endsWith('/proof')) return notHeld;
      if (init.method === 'POST') {
        const body = JSON.parse(String(init.body)) as { path: string; size: number; contentType: string };
        expect(body).toMatchObject({
          path: 'images/a.png',
          size: 10_000,
          contentType: 'image/png',
          ifVersion: 4,
        });
        return {
          status: 201,
          body: {
            status: 'pending',
            uploadId: 'u-9',
            path: body.path,
            upload: {
              method: 'PUT',
              url: 'http://s3.test/blobs/x?sig=1',
              headers,
              automaticHeaders: { 'content-length': '10000', host: 's3.test' },
              expiresAt: later,
            },
            challenge: { nonce: 'bm9uY2U=', ranges: [{ offset: 0, length: 10_000 }], expiresAt: later },
          },
        };
      }
      polls++;
      return {
        status: 200,
        body: {
          uploadId: 'u-9',
          status: polls < 2 ? 'pending' : 'committed',
          path: 'images/a.png',
          sha256: 'ab'.repeat(32),
          size: 10_000,
          contentType: 'image/png',
          ...(polls < 2 ? {} : { version: 5 }),
          createdAt: '2025-06-01T12:00:00Z',
          updatedAt: '2025-06-01T12:00:00Z',
        },
      };
    });
    expect(await h.run('upload', file, 'images/a.png', '--if-version', '4', '--json')).toBe(0);
    expect(h.puts.map((p) => [p.url, p.headers])).toEqual([['http://s3.test/blobs/x?sig=1', headers]]);
    const result = JSON.parse(h.out()) as Record<string, unknown>;
    expect(result).toMatchObject({
      path: 'images/a.png',
      version: 5,
      uploadId: 'u-9',
      deduplicated: false,
      size: 10_000,
    });
    expect(result.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(typeof result.seconds).toBe('number');
    expect(h.out().trim().split('\n')).toHaveLength(1);
  });

  it('the path holds this content already: one line saying no bytes were sent', async () => {
    const h = harness(() => ({
      status: 200,
      body: { status: 'committed', path: 'images/a.png', version: 2, unchanged: true, uploadId: 'u-1' },
    }));
    expect(await h.run('upload', file, 'images/a.png')).toBe(0);
    expect(h.out()).toBe('committed images/a.png version 2 (deduplicated: no bytes sent)\n');
    expect(h.puts).toEqual([]);
  });

  it('API errors print one line with status, code and field; exit 1', async () => {
    const h = harness(() => ({
      status: 413,
      body: { error: { code: 'too_large', message: 'larger than 5 GiB', field: 'size' } },
    }));
    expect(await h.run('upload', file, 'images/a.png')).toBe(1);
    expect(h.err()).toBe('media-mirror: error 413 too_large: larger than 5 GiB (field: size)\n');
  });

  it('bad flags are usage errors: exit 2, nothing sent', async () => {
    const h = harness(() => ({ status: 500, body: {} }));
    expect(await h.run('upload', file, 'images/a.png', '--if-version', 'three')).toBe(2);
    expect(h.err()).toMatch(/^media-mirror: error: option '--if-version <n>' argument 'three' is invalid/);
    expect(await h.run('upload', file, 'images/a.png', '--timeout', '-1')).toBe(2);
    expect(await h.run('upload', file)).toBe(2);
    expect(await h.run('frobnicate')).toBe(2);
    expect(h.requests).toEqual([]);
  });

  it('reconcile --rate says what it takes, whatever the bad value (probe ops2)', async () => {
    // '1.5' and 'x' were answered 'expected a whole number >= 0.', and 0 is refused too.
    for (const rate of ['1.5', 'x', '0', '-2']) {
      const h = harness(() => ({ status: 500, body: {} }));
      expect(await h.run('reconcile', '--rate', rate, '--dry-run')).toBe(2);
      expect(h.err()).toContain(`argument '${rate}' is invalid. expected a whole number > 0.`);
    }
  });

  it('redrive takes exactly one of --target, --ingest or --completion; --completion on AWS needs its queue URL', async () => {
    const env = {
      MIRROR_TABLE: 'ledger',
      MIRROR_TARGETS: JSON.stringify([{ id: 'eu-west-1', kind: 's3', queueUrl: 'https://q/eu.fifo' }]),
    };
    for (const args of [[], ['--ingest', '--completion'], ['--target', 'eu-west-1', '--completion']]) {
      const h = harness(() => ({ status: 500, body: {} }), { env });
      expect(await h.run('redrive', ...args, '--dry-run')).toBe(2);
      expect(h.err()).toBe(
        'media-mirror: redrive needs exactly one of --target <id>, --ingest or --completion\n',
      );
    }
    const h = harness(() => ({ status: 500, body: {} }), { env });
    expect(await h.run('redrive', '--completion', '--dry-run')).toBe(1);
    expect(h.err()).toBe(
      'media-mirror: no completion queue URL: pass --completion-queue-url (or MIRROR_COMPLETION_QUEUE_URL)\n',
    );
    const help = harness(() => ({ status: 500, body: {} }), { env });
    await help.run('redrive', '--help');
    expect(help.out()).toMatch(/^\s+--completion\s+redrive the multipart completion queue's DLQ/m);
    expect(help.out()).toMatch(/^\s+--completion-queue-url <url>\s+AWS: the multipart completion queue URL/m);
  });

  it('a new path with %, ? or # is refused before anything is sent (exit 2); reading such a path is left to the API', async () => {
    const h = harness(() => ({ status: 404, body: { error: { code: 'not_found', message: 'no file' } } }));
    expect(await h.run('upload', file, 'images/50% off.png')).toBe(2);
    expect(h.err()).toMatch(/file names may not contain "%", "\?" or "#"/);
    expect(h.requests).toEqual([]);
    // A file committed under such a name before the rule can still be read.
    expect(await h.run('log', 'music/Track #1.mp3')).toBe(3);
    expect(h.requests).toEqual([`GET /v1/files/${encodeURIComponent('music/Track #1.mp3')}/versions`]);
  });

  it('missing endpoints file: the hint, exit 1', async () => {
    const h = harness(() => ({ status: 500, body: {} }), { env: {} });
    expect(await h.run('status')).toBe(1);
    expect(h.err()).toBe(
      `media-mirror: no endpoints file at ${join(dir, '.mirror', 'endpoints.json')}: ` +
        'start the local stack with npm start, or pass --api/--token\n',
    );
  });

  it('--api/--token flags override the environment', async () => {
    const seen: string[] = [];
    const h = harness((url, init) => {
      seen.push(`${url.origin} ${(init.headers as Record<string, string>).authorization}`);
      return { status: 200, body: fileStatus };
    }, {});
    expect(await h.run('--api', 'https://other.test:9000', '--token', 'flag', 'status', 'images/a.png')).toBe(
      0,
    );
    // Every request (the file's status, the API's clock, and the targets', since a pull target lacks the head).
    expect(seen).toEqual([
      'https://other.test:9000 Bearer flag',
      'https://other.test:9000 Bearer flag',
      'https://other.test:9000 Bearer flag',
    ]);
  });
});

describe('bin/media-mirror.js', () => {
  it('runs through tsx and lists the commands in --help', () => {
    const res = spawnSync(process.execPath, ['bin/media-mirror.js', '--help'], {
      cwd: repoRoot,
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(res.stderr).toBe('');
    expect(res.status).toBe(0);
    expect(res.stdout).toMatch(/^Usage: media-mirror/);
    expect(res.stdout).toMatch(/^\s+upload \[options\] <file> <path>/m);
    expect(res.stdout).toMatch(/^\s+status \[options\] \[path\]/m);
    expect(res.stdout).toMatch(/^\s+reconcile \[options\]/m);
    expect(res.stdout).toMatch(/^\s+redrive \[options\]/m);
    expect(res.stdout).toMatch(/^\s+agent \[options\]/m);
  });

  it('a reader that stops early (`--help | head -1`) ends it quietly, exit 0, no EPIPE trace (probe docs, D11)', async () => {
    const child = spawn(process.execPath, ['bin/media-mirror.js', '--help'], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // The reader is gone before the help is written.
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(stderr).not.toMatch(/EPIPE/);
    expect(code).toBe(0);
  });

  it("media-mirror agent: the agent's configuration errors keep their line breaks (probe docs, D3)", () => {
    const res = spawnSync(process.execPath, ['bin/media-mirror.js', 'agent', '--dir', tmpdir()], {
      cwd: repoRoot,
      encoding: 'utf8',
      timeout: 30_000,
      env: { PATH: process.env.PATH, HOME: process.env.HOME },
    });
    expect(res.status).toBe(78);
    expect(res.stderr).not.toContain('\\x0a');
    expect(res.stderr.split('\n').length).toBeGreaterThan(2);
    expect(res.stderr).toMatch(/^media-mirror: bad agent configuration:\n {2}--target/);
  });

  it('exits 2 on a usage error, with one line on stderr', () => {
    const res = spawnSync(process.execPath, ['bin/media-mirror.js', 'upload', 'only-a-file'], {
      cwd: repoRoot,
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(res.status).toBe(2);
    expect(res.stderr).toBe("media-mirror: error: missing required argument 'path'\n");
  });
});
