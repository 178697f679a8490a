/**
 * The bench's waiting for commits (bench/committed.ts), against a fake stack over HTTP: a /metrics
 * counter that stalls short of its target (commits whose count an ingest killed by its timeout never
 * published) while the API's upload status says committed, or says pending.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { stackSources, waitCommitted, watchCommits } from '../../../bench/committed.ts';

interface FakeStack {
  readonly endpoints: { metrics: string; api: string; token: string };
  /** GET /v1/uploads/{id} calls, by id. */
  readonly asked: Map<string, number>;
  counter: number;
  readonly uploads: Map<string, { status: string; reason?: string }>;
}

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.close();
    await once(server, 'close');
  }
});

async function fakeStack(): Promise<FakeStack> {
  const stack = {
    asked: new Map<string, number>(),
    counter: 0,
    uploads: new Map<string, { status: string; reason?: string }>(),
  } as FakeStack;
  const server = createServer((request, response) => {
    const url = request.url ?? '';
    if (url === '/metrics') {
      response.end(`# HELP x\nmirror_versions_committed_total ${stack.counter}\n`);
      return;
    }
    const id = /^\/v1\/uploads\/([^/]+)$/.exec(url)?.[1];
    const upload = id === undefined ? undefined : stack.uploads.get(decodeURIComponent(id));
    if (request.headers.authorization !== 'Bearer t0ken' || id === undefined || upload === undefined) {
      response.writeHead(404).end('{}');
      return;
    }
    stack.asked.set(id, (stack.asked.get(id) ?? 0) + 1);
    response.setHeader('content-type', 'application/json');
    response.end(JSON.stringify({ uploadId: id, ...upload }));
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  Object.assign(stack, { endpoints: { metrics: `${base}/metrics`, api: base, token: 't0ken' } });
  return stack;
}

const ids = (n: number) => Array.from({ length: n }, (_, i) => `up-${String(i).padStart(3, '0')}`);

describe('waiting for commits', () => {
  it('a counter that stalls short of its target while the API says every upload committed: done, by the API', async () => {
    const stack = await fakeStack();
    const uploads = ids(20);
    for (const id of uploads) stack.uploads.set(id, { status: 'committed' });
    stack.counter = 100 + 17;

    const wait = await waitCommitted(stackSources(stack), {
      uploadIds: uploads,
      counterBefore: 100,
      timeoutMs: 10_000,
      stallMs: 200,
      pollMs: 10,
    });
    expect(wait).toMatchObject({
      done: true,
      committed: 20,
      counted: 17,
      target: 20,
      confirmedByApi: true,
      apiCalls: 20,
    });
    // Well before the deadline: one quiet spell, one check.
    expect(wait.seconds).toBeLessThan(5);
    expect([...stack.asked.values()].every((n) => n === 1)).toBe(true);
  });

  it('a counter that reaches its target needs no API call', async () => {
    const stack = await fakeStack();
    stack.counter = 5;
    const wait = await waitCommitted(stackSources(stack), {
      uploadIds: ids(5),
      counterBefore: 0,
      timeoutMs: 10_000,
      stallMs: 200,
    });
    expect(wait).toMatchObject({ done: true, committed: 5, confirmedByApi: false, apiCalls: 0 });
    expect(stack.asked.size).toBe(0);
  });

  it('uploads the API still shows pending past the deadline fail the wait, naming how many and a few ids; committed ones are not asked again', async () => {
    const stack = await fakeStack();
    const uploads = ids(12);
    for (const [i, id] of uploads.entries())
      stack.uploads.set(
        id,
        i < 7
          ? { status: 'committed' }
          : i < 11
            ? { status: 'pending' }
            : { status: 'rejected', reason: 'sha256 mismatch' },
      );
    stack.counter = 3;

    const error = await waitCommitted(stackSources(stack), {
      uploadIds: uploads,
      counterBefore: 0,
      timeoutMs: 1_000,
      stallMs: 200,
      pollMs: 10,
    }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error?.message).toMatch(/^only 7 of 12 committed after \d+ s/);
    expect(error?.message).toContain('4 still pending (up-007, up-008, up-009, up-010)');
    expect(error?.message).toContain('1 rejected (up-011; first: sha256 mismatch)');
    // Checked more than once (every 200 ms of quiet, and at the deadline); the committed, once.
    expect(stack.asked.get('up-008')).toBeGreaterThan(1);
    expect(stack.asked.get('up-000')).toBe(1);
  });

  it('with none left pending, uploads that ended otherwise end the wait at once, not at the deadline', async () => {
    const stack = await fakeStack();
    stack.uploads.set('a', { status: 'committed' });
    stack.uploads.set('b', { status: 'expired' });
    const wait = await watchCommits(stackSources(stack), {
      uploadIds: ['a', 'b'],
      counterBefore: 0,
      timeoutMs: 60_000,
      stallMs: 100,
      pollMs: 10,
    });
    expect(wait).toMatchObject({
      done: false,
      committed: 1,
      pending: [],
      ended: [{ uploadId: 'b', status: 'expired' }],
    });
    expect(wait.seconds).toBeLessThan(5);
  });
});
