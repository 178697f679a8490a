/**
 * `reconcile` and `redrive` against an endpoints file whose stack is gone. A stack killed (kill -9,
 * a crash of the machine) leaves its endpoints.json behind, naming ports nothing listens on any
 * more. Found from outside (probe crashy): `media-mirror reconcile --dry-run` then said only
 * "unexpected error: connect ECONNREFUSED 127.0.0.1:46453", where the API's verbs say which
 * address they could not reach and ask whether the local stack is running.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../../cli/program.ts';
import { localEndpoints } from '../../support/local-endpoints.ts';

let dir: string;
let file: string;
let port: number;

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: p } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return p;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-ops-unreachable-'));
  port = await closedPort();
  const at = `http://127.0.0.1:${port}`;
  const queue = (name: string) => `${at}/000000000000/${name}`;
  const endpoints = {
    ...localEndpoints,
    s3: { ...localEndpoints.s3, endpoint: at },
    sqs: { endpoint: at },
    dynamodb: { endpoint: at },
    ingest: { queue: queue('mirror-ingest'), dlq: queue('mirror-ingest-dlq') },
    completion: { queue: queue('mirror-completion'), dlq: queue('mirror-completion-dlq') },
    targets: {
      'eu-west-1': {
        ...localEndpoints.targets['eu-west-1'],
        queue: queue('mirror-target-eu-west-1.fifo'),
        dlq: queue('mirror-target-eu-west-1-dlq.fifo'),
      },
    },
  };
  file = join(dir, 'endpoints.json');
  await writeFile(file, JSON.stringify(endpoints));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function run(...args: string[]) {
  let out = '';
  let err = '';
  const code = await runCli(['node', 'media-mirror', ...args, '--endpoints', file], {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s) },
    env: {},
    cwd: dir,
  });
  return { code, out, err };
}

describe('reconcile and redrive when the local stack is not running', () => {
  it.each([
    ['reconcile', '--dry-run'],
    ['redrive', '--target', 'eu-west-1', '--dry-run'],
  ])('%s names the address, the endpoints file and asks whether the stack runs', async (...args) => {
    const { code, err } = await run(...args);
    expect(code).toBe(1);
    expect(err).not.toMatch(/unexpected error/);
    expect(err).toContain(`127.0.0.1:${port}`);
    expect(err).toContain(file);
    expect(err).toMatch(/is the local stack running \(npm start\)\?/);
  });
});
