/**
 * (b) DynamoDB requests per commit, and commits per second, on the local DynamoDB.
 *
 * A local stack in this process, whose only target is a pull target with no agent and
 * whose schedules are off: while the uploads' bytes arrive, the ingest is the only
 * DynamoDB client. Every request reaching the DynamoDB port is counted where the local
 * DynamoDB's HTTP server sees it (node:diagnostics_channel `http.server.request.start` in its
 * thread, announced on a BroadcastChannel: local/emulators.ts `DYNAMODB_REQUESTS_ENV`), so
 * whatever calls a commit makes are counted (retries included, a transaction as one), through
 * nothing but the public interfaces: the API, S3 PUTs, `/metrics`.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BroadcastChannel } from 'node:worker_threads';
import { sleep } from '../common/retry.ts';
import { parseTopology } from '../contracts/topology.ts';
import { DYNAMODB_REQUESTS_CHANNEL, DYNAMODB_REQUESTS_ENV } from '../local/emulators.ts';
import { type Sandbox, startSandbox } from '../local/sandbox.ts';
import { committedTotal } from './committed.ts';
import { type BenchFile, type Declared, declare, makeFiles, put } from './load.ts';
import { type Row, show, spread } from './stats.ts';

const CONFIG = fileURLToPath(new URL('../mirror.config.json', import.meta.url));
const CLIENTS = 16;

/** Counts the local DynamoDB's requests by operation (x-amz-target's action). */
class DynamoRequestCounter {
  readonly byOperation = new Map<string, number>();
  total = 0;
  readonly #channel = new BroadcastChannel(DYNAMODB_REQUESTS_CHANNEL);

  constructor() {
    this.#channel.onmessage = (event) => {
      const operation = String((event as { data: unknown }).data);
      this.byOperation.set(operation, (this.byOperation.get(operation) ?? 0) + 1);
      this.total++;
    };
  }

  reset(): void {
    this.byOperation.clear();
    this.total = 0;
  }

  close(): void {
    this.#channel.close();
  }
}

async function pool<T>(items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) await fn(items[next++] as T);
    }),
  );
}

interface LedgerRun {
  readonly declareCalls: number;
  readonly commitCalls: number;
  readonly commitsPerSecond: number;
  readonly operations: Map<string, number>;
}

/** Declares all files first (the API's calls), then PUTs them all and waits until every one is committed (the ingest's). */
async function oneRun(
  sandbox: Sandbox,
  counter: DynamoRequestCounter,
  prefix: string,
  n: number,
): Promise<LedgerRun> {
  const files = makeFiles(prefix, n, 4096);
  const declared: [Declared, BenchFile][] = [];
  counter.reset();
  await pool(files, CLIENTS, async (f) => {
    declared.push([await declare(sandbox, f), f]);
  });
  // The counts cross from the DynamoDB thread as messages: let the last ones arrive.
  await sleep(200);
  const declareCalls = counter.total;
  const before = await committedTotal(sandbox);
  counter.reset();
  const started = performance.now();
  await pool(declared, CLIENTS, async ([d, f]) => {
    await put(d, f);
  });
  const deadline = Date.now() + 300_000;
  while ((await committedTotal(sandbox)) - before < n) {
    if (Date.now() > deadline)
      throw new Error(`only ${(await committedTotal(sandbox)) - before} of ${n} committed after 300 s`);
    await sleep(50);
  }
  const seconds = (performance.now() - started) / 1000;
  // Calls a commit makes after the counter says it is committed (clean-ups) still count.
  await sleep(1_000);
  return {
    declareCalls: declareCalls / n,
    commitCalls: counter.total / n,
    commitsPerSecond: n / seconds,
    operations: new Map(counter.byOperation),
  };
}

/** Each operation's median calls per commit across the runs, by operation name. */
function breakdown(runs: readonly LedgerRun[], uploads: number): string {
  const operations = [...new Set(runs.flatMap((r) => [...r.operations.keys()]))].sort();
  return operations
    .map((op) => `${op} ${spread(runs.map((r) => (r.operations.get(op) ?? 0) / uploads)).median.toFixed(2)}`)
    .join(', ');
}

async function pullOnlyTopology() {
  const config = JSON.parse(await readFile(CONFIG, 'utf8')) as { targets: { kind: string }[] };
  return parseTopology({ ...config, targets: config.targets.filter((t) => t.kind === 'pull') });
}

export async function benchLedger(options: {
  uploads: number;
  runs: number;
  log: (line: string) => void;
}): Promise<Row[]> {
  const dataDir = await mkdtemp(join(tmpdir(), 'mirror-bench-ledger-'));
  process.env[DYNAMODB_REQUESTS_ENV] = '1';
  const sandbox = await startSandbox({
    dataDir,
    port: 0,
    s3Port: 0,
    sqsPort: 0,
    dynamodbPort: 0,
    env: {},
    topology: await pullOnlyTopology(),
    webDir: null,
    agents: false,
    schedules: false,
    polling: { waitTimeSeconds: 1 },
    log: () => undefined,
    functionLog: () => undefined,
  });
  delete process.env[DYNAMODB_REQUESTS_ENV];
  const counter = new DynamoRequestCounter();
  try {
    const runs: LedgerRun[] = [];
    // One untimed round warms the functions: cold starts are not the ledger's.
    await oneRun(sandbox, counter, 'bench/ledger-warm', Math.min(16, options.uploads));
    for (let i = 0; i < options.runs; i++) {
      runs.push(await oneRun(sandbox, counter, `bench/ledger-${i}`, options.uploads));
      const ops = [...(runs.at(-1) as LedgerRun).operations].map(
        ([op, c]) => `${op} ${(c / options.uploads).toFixed(2)}`,
      );
      options.log(`ledger run ${i + 1}: per commit ${ops.join(', ')}`);
    }
    if (runs.every((r) => r.commitCalls === 0)) {
      throw new Error(
        'the counter saw no DynamoDB request: the local DynamoDB no longer announces its requests',
      );
    }
    const calls = spread(runs.map((r) => r.commitCalls));
    return [
      {
        figure: `ledger (DynamoDB) calls per commit, ingest, ${options.uploads} uploads, ${CLIENTS} clients`,
        measured: `${show(calls, '')}: ${breakdown(runs, options.uploads)}`,
        goal: '<= 6',
        met: calls.median <= 6,
      },
      {
        figure: 'DynamoDB calls per declared upload (API)',
        measured: show(spread(runs.map((r) => r.declareCalls)), ''),
        goal: '',
      },
      {
        figure: 'commits/s, local DynamoDB (PUT to committed)',
        measured: show(spread(runs.map((r) => r.commitsPerSecond)), '/s', 1),
        goal: '',
      },
    ];
  } finally {
    counter.close();
    await sandbox.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}
