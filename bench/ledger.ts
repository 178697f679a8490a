/**
 * (b) DynamoDB requests per commit, and commits per second, on the local DynamoDB.
 *
 * A local stack in this process, whose only target is a pull target with no agent and
 * whose schedules are off: while the uploads' bytes arrive, the ingest is the only
 * DynamoDB client. Every request reaching the DynamoDB port is counted where the local
 * DynamoDB's HTTP server sees it (node:diagnostics_channel `http.server.request.start` in its
 * thread, announced on a BroadcastChannel: local/emulators.ts `DYNAMODB_REQUESTS_ENV`), so
 * whatever calls a commit makes are counted (retries included, a transaction as one), through
 * nothing but the public interfaces: the API, S3 PUTs, `/metrics`. While the bytes arrive, the
 * API's calls are left out of the commits' count (each request names its caller): there they are
 * only the bench's own checks of upload status (bench/committed.ts), and they are shown apart.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BroadcastChannel } from 'node:worker_threads';
import { sleep } from '../common/retry.ts';
import { parseTopology } from '../contracts/topology.ts';
import {
  DYNAMODB_REQUESTS_CHANNEL,
  DYNAMODB_REQUESTS_ENV,
  type DynamoRequestAnnounced,
} from '../local/emulators.ts';
import { type Sandbox, startSandbox } from '../local/sandbox.ts';
import { committedTotal, stackSources, waitCommitted } from './committed.ts';
import { type BenchFile, type Declared, declare, makeFiles, put } from './load.ts';
import { type Row, show, spread } from './stats.ts';

const CONFIG = fileURLToPath(new URL('../mirror.config.json', import.meta.url));
const CLIENTS = 16;

/**
 * Counts the local DynamoDB's requests by operation (x-amz-target's action); those of the caller
 * `leftOut` (a function's name) only in `leftOutTotal`.
 */
class DynamoRequestCounter {
  readonly byOperation = new Map<string, number>();
  total = 0;
  leftOutTotal = 0;
  #leftOut: string | undefined;
  readonly #channel = new BroadcastChannel(DYNAMODB_REQUESTS_CHANNEL);

  constructor() {
    this.#channel.onmessage = (event) => {
      const { operation, caller } = (event as { data: DynamoRequestAnnounced }).data;
      if (caller === this.#leftOut) {
        this.leftOutTotal++;
        return;
      }
      this.byOperation.set(operation, (this.byOperation.get(operation) ?? 0) + 1);
      this.total++;
    };
  }

  reset(leftOut?: string): void {
    this.byOperation.clear();
    this.total = 0;
    this.leftOutTotal = 0;
    this.#leftOut = leftOut;
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
  /** The API's calls while the bytes arrived (the bench's status checks), per upload: not in commitCalls. */
  readonly checkCalls: number;
  /** Uploads whose commit the counter missed and the API confirmed. */
  readonly confirmedByApi: number;
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
  // Nothing but the bench calls the API from here on (schedules and agents are off).
  counter.reset('api');
  const started = performance.now();
  await pool(declared, CLIENTS, async ([d, f]) => {
    await put(d, f);
  });
  const wait = await waitCommitted(stackSources(sandbox), {
    uploadIds: declared.map(([d]) => d.uploadId),
    counterBefore: before,
    timeoutMs: 300_000,
  });
  const seconds = (performance.now() - started) / 1000;
  // Calls a commit makes after the counter says it is committed (clean-ups) still count.
  await sleep(1_000);
  return {
    declareCalls: declareCalls / n,
    commitCalls: counter.total / n,
    commitsPerSecond: n / seconds,
    operations: new Map(counter.byOperation),
    checkCalls: counter.leftOutTotal / n,
    confirmedByApi: wait.committed - wait.counted,
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
      const run = runs.at(-1) as LedgerRun;
      const checks =
        run.checkCalls > 0 || run.confirmedByApi > 0
          ? `; the counter missed ${run.confirmedByApi} commits the API confirmed, its status checks cost ${run.checkCalls.toFixed(2)} API calls per upload (not counted)`
          : '';
      options.log(`ledger run ${i + 1}: per commit ${ops.join(', ')}${checks}`);
    }
    if (runs.every((r) => r.commitCalls === 0)) {
      throw new Error(
        'the counter saw no DynamoDB request: the local DynamoDB no longer announces its requests',
      );
    }
    const calls = spread(runs.map((r) => r.commitCalls));
    const checkCalls = runs.reduce((sum, r) => sum + r.checkCalls * options.uploads, 0);
    const leftOut =
      checkCalls > 0
        ? ` (not counted: ${checkCalls} calls of the bench's own upload-status checks, through the API)`
        : '';
    return [
      {
        figure: `ledger (DynamoDB) calls per commit, ingest, ${options.uploads} uploads, ${CLIENTS} clients`,
        measured: `${show(calls, '')}: ${breakdown(runs, options.uploads)}${leftOut}`,
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
