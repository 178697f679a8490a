/**
 * `npm run chaos` (docs/chaos.md): uploads, overwrites, deduplicated uploads and deletes through
 * the local stack while functions crash at their crash points, deliveries are lost, doubled,
 * delayed and reordered, and the SQS emulator restarts; the on-prem agent runs as its own process
 * and is started again whenever a crash point kills it (bench/chaos-agent.ts). Then the faults
 * stop, the repairs run (redelivery, reconcile, the lag monitor's outbox, the lost-notification
 * sweep) and the run waits for every target to equal the ledger. Prints a table, then one JSON line.
 *
 *   npm run chaos                          500 uploads, 0 B to 40 MiB
 *   npm run chaos -- --uploads 100         the small run (0 B to 1 MiB unless --max-mib)
 *   npm run chaos -- --seed 7 --keep       another plan; keep the data folder
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { InvocationReport } from '../local/functions.ts';
import type { Sandbox } from '../local/sandbox.ts';
import { bucketClients } from '../test/support/regional-s3.ts';
import { MirrorApi } from '../web/client/api.ts';
import { type AgentProcessReport, type SupervisedAgent, superviseAgent } from './chaos-agent.ts';
import {
  explainDlqs,
  ledgerFigures,
  type PathState,
  readPath,
  type TargetAccess,
  targetDifferences,
  targetsOf,
  uploadOutcomes,
} from './chaos-check.ts';
import { type OpResult, planWorkload, runWorkload } from './chaos-workload.ts';
import { stackSources, watchCommits } from './committed.ts';

const MiB = 1024 * 1024;
const verbose = process.env.CHAOS_VERBOSE === '1';

export interface ChaosOptions {
  readonly uploads: number;
  readonly maxBytes: number;
  readonly seed: number;
  /** Share of invocations that crash. @default 0.3 */
  readonly crashRate: number;
  /** Share of deliveries duplicated or reordered. @default 0.1 */
  readonly disorderRate: number;
  /** Share of deliveries lost. @default 0.02 */
  readonly lossRate: number;
  readonly sqsRestarts: number;
  readonly convergeTimeoutSeconds: number;
  readonly keep: boolean;
}

function optionsFromArgs(argv: string[]): ChaosOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      uploads: { type: 'string', default: '500' },
      'max-mib': { type: 'string' },
      seed: { type: 'string', default: '1' },
      'crash-rate': { type: 'string', default: '0.3' },
      'disorder-rate': { type: 'string', default: '0.1' },
      'loss-rate': { type: 'string', default: '0.02' },
      'sqs-restarts': { type: 'string', default: '2' },
      'converge-timeout': { type: 'string', default: '900' },
      keep: { type: 'boolean', default: false },
    },
  });
  const uploads = Number(values.uploads);
  const num = (name: string, v: string | undefined) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} ${v}: not a number >= 0`);
    return n;
  };
  return {
    uploads: num('uploads', values.uploads),
    // The small run stays small: its files fit the suite's time.
    maxBytes: num('max-mib', values['max-mib'] ?? (uploads > 100 ? '40' : '1')) * MiB,
    seed: num('seed', values.seed),
    crashRate: num('crash-rate', values['crash-rate']),
    disorderRate: num('disorder-rate', values['disorder-rate']),
    lossRate: num('loss-rate', values['loss-rate']),
    sqsRestarts: num('sqs-restarts', values['sqs-restarts']),
    convergeTimeoutSeconds: num('converge-timeout', values['converge-timeout']),
    keep: values.keep,
  };
}

/** Crash rates per point, so that about `rate` of invocations crash (replicate passes two points). */
function crashSpecs(rate: number) {
  const half = 1 - Math.sqrt(1 - rate);
  return {
    functions: `commit.before-fanout=${rate},replicate.mid-copy=${half},replicate.before-target-row=${half}`,
    // before-snapshot fires when the agent compacts its state: at every start (and past 50,000 records).
    agent: `agent.mid-download=${half},agent.before-rename=${half},agent.before-snapshot=${half}`,
  };
}

/** Counts every function's invocations and those that died at a crash point (their environment exited). */
class InvocationCounter {
  readonly invocations = new Map<string, number>();
  readonly crashed = new Map<string, number>();
  readonly failed = new Map<string, number>();
  readonly coldStartsMs: number[] = [];
  observe = (r: InvocationReport) => {
    const fn = r.functionName.replace(/^replicate-.*/, 'replicate');
    this.invocations.set(fn, (this.invocations.get(fn) ?? 0) + 1);
    if (r.initMs !== undefined) this.coldStartsMs.push(r.initMs);
    if (r.error === undefined) return;
    const crash = r.error.errorType === 'Runtime.ExitError' && r.error.message.includes('code 137');
    const into = crash ? this.crashed : this.failed;
    into.set(fn, (into.get(fn) ?? 0) + 1);
  };
}

export interface ChaosReport {
  readonly uploads: number;
  readonly deletes: number;
  readonly deduplicated: number;
  readonly refusedAtApi: number;
  readonly refusedDetail: readonly string[];
  readonly pendingDetail: readonly string[];
  readonly uploadsNotCommitted: number;
  readonly versionsCommitted: number;
  readonly gaps: number;
  readonly duplicateVersions: number;
  readonly duplicateDetail: readonly string[];
  readonly targetsEqual: boolean;
  readonly targetDifferences: readonly string[];
  readonly dlqMessages: number;
  readonly dlqUnexplained: number;
  readonly dlqUnexplainedDetail: readonly string[];
  readonly crashes: Record<string, number>;
  readonly invocations: Record<string, number>;
  readonly deliveryFaults: Record<string, Record<string, number>>;
  readonly sqsRestarts: number;
  /** The agent's processes: started, killed at a crash point (and started again). */
  readonly agentProcesses: Record<string, Pick<AgentProcessReport, 'starts' | 'crashes'>>;
  readonly converged: boolean;
  readonly convergeSeconds: number;
  readonly uploadSeconds: number;
  readonly bytesUploaded: number;
}

export async function runChaos(options: ChaosOptions, log: (line: string) => void): Promise<ChaosReport> {
  const work = await mkdtemp(join(tmpdir(), 'mirror-chaos-'));
  const offFile = join(work, 'faults-off');
  const specs = crashSpecs(options.crashRate);
  const { startSandbox } = await import('../local/sandbox.ts');
  const counter = new InvocationCounter();
  const d = options.disorderRate / 2;
  const rates = { drop: options.lossRate, duplicate: d, reorder: d, delay: d, maxDelayMs: 1500 };
  const sandbox = await startSandbox({
    dataDir: join(work, 'data'),
    port: 0,
    s3Port: 0,
    sqsPort: 0,
    dynamodbPort: 0,
    webDir: null,
    // CHAOS_VERBOSE=1 shows the stack's own messages and the functions' output.
    functionLog: verbose ? (name, line) => log(`[${name}] ${line}`) : () => undefined,
    log: verbose ? (line) => log(`[sandbox] ${line}`) : () => undefined,
    onInvocation: counter.observe,
    functionEnv: { MIRROR_CRASH_POINTS: specs.functions, MIRROR_CRASH_POINTS_OFF_FILE: offFile },
    polling: { waitTimeSeconds: 1 },
    queues: { ingestVisibilityTimeout: 30, targetVisibilityTimeout: 15 },
    schedules: {
      lagIntervalSeconds: 5,
      reconcileIntervalSeconds: 0,
      reconcileAtStart: false,
      renotifyAtStart: false,
      // The AWS function that repairs lost S3 notifications, on its local timer.
      sweepIntervalSeconds: 30,
      sweepGraceSeconds: 30,
    },
    // The agents run as their own processes (below): a crash point kills one as kill -9 would.
    agents: false,
    faults: { notifications: rates, deliveries: rates },
  });
  const agents = startAgents(sandbox, { specs, offFile, rates, log });
  try {
    const contents = join(work, 'contents');
    await mkdir(contents);
    const ops = await planWorkload(options, contents, `s${options.seed}`);
    log(`chaos: ${ops.length} operations; crash points ${specs.functions}; agent ${specs.agent}`);
    const uploadStarted = Date.now();
    const every = Math.floor(ops.length / (options.sqsRestarts + 1));
    const results = await runWorkload(sandbox.endpoints, ops, {
      concurrency: 4,
      onProgress: async (done) => {
        if (done % Math.max(1, Math.round(ops.length / 10)) === 0)
          log(
            `chaos: ${done}/${ops.length} operations in ${((Date.now() - uploadStarted) / 1000).toFixed(1)} s`,
          );
        if (every > 0 && done % every === 0 && done / every <= options.sqsRestarts) {
          log(`chaos: ${done} operations done; restarting SQS`);
          await sandbox.restartSqs();
        }
      },
    });
    const uploadSeconds = (Date.now() - uploadStarted) / 1000;
    await ingestCaughtUp(sandbox, results, log);
    // Faults stop: crash points fall silent, deliveries go through once, in order.
    await writeFile(offFile, '');
    sandbox.faults.notifications.set({});
    sandbox.faults.deliveries.set({});
    log(`chaos: operations done in ${uploadSeconds.toFixed(1)} s; faults off, converging`);
    const converged = await converge(sandbox, results, options.convergeTimeoutSeconds, log);
    const report = await finalCheck(sandbox, work, results, converged);
    const crashes: Record<string, number> = Object.fromEntries(counter.crashed);
    const agentReports = new Map([...agents].map(([id, a]) => [id, a.report()]));
    for (const r of agentReports.values())
      for (const [point, n] of Object.entries(r.points))
        crashes[`agent:${point}`] = (crashes[`agent:${point}`] ?? 0) + n;
    return {
      ...report,
      crashes,
      invocations: Object.fromEntries(counter.invocations),
      deliveryFaults: {
        notifications: { ...sandbox.faults.notifications.counts },
        deliveries: { ...sandbox.faults.deliveries.counts },
        ...Object.fromEntries([...agentReports].map(([id, r]) => [`agent-${id}`, { ...r.faults }])),
      },
      sqsRestarts: options.sqsRestarts,
      agentProcesses: Object.fromEntries(
        [...agentReports].map(([id, r]) => [id, { starts: r.starts, crashes: r.crashes }]),
      ),
      uploadSeconds,
      bytesUploaded: results.reduce(
        (n, r) => n + (r.op.kind === 'upload' && !r.error ? r.op.content.size : 0),
        0,
      ),
    };
  } finally {
    await Promise.all([...agents.values()].map((a) => a.stop()));
    await sandbox.stop();
    if (!options.keep) await rm(work, { recursive: true, force: true });
    else log(`chaos: kept ${work}`);
  }
}

/** How long faults may stay on after the operations, waiting for the ingest (see ingestCaughtUp). */
const FAULT_TAIL_SECONDS = 60;

/**
 * Waits (at most FAULT_TAIL_SECONDS) until the ingest has committed every upload the API accepted
 * without committing it itself. The ingest runs behind the API: ending the faults with the last
 * API call would spare much of the work they are there to hit, and a small run could then see no
 * crash at all. 60 s covers a lost notification (the sweep's 30 s grace, then its 30 s timer).
 */
async function ingestCaughtUp(
  sandbox: Pick<Sandbox, 'endpoints'>,
  results: readonly OpResult[],
  log: (line: string) => void,
): Promise<void> {
  const awaited = results.filter(
    (r) => r.op.kind === 'upload' && r.error === undefined && r.version === undefined,
  );
  // The counter counts from the stack's start, and only the ingest's commits: these uploads'.
  // A crash past a commit (commit.before-fanout) or a timeout may keep its count from the
  // counter: the API's upload status settles those (bench/committed.ts).
  const wait = await watchCommits(stackSources(sandbox), {
    uploadIds: awaited.flatMap((r) => (r.uploadId === undefined ? [] : [r.uploadId])),
    target: awaited.length,
    counterBefore: 0,
    timeoutMs: FAULT_TAIL_SECONDS * 1000,
    pollMs: 500,
  });
  const api = wait.confirmedByApi ? ` (the counter ${wait.counted}, the API's upload status the rest)` : '';
  log(
    `chaos: the ingest committed ${wait.committed} of ${awaited.length} uploads${api} ${wait.seconds.toFixed(1)} s after the operations, faults still on`,
  );
}

/** One agent process per pull target, with the agent crash points and the deliveries' fault rates. */
function startAgents(
  sandbox: Sandbox,
  o: { specs: { agent: string }; offFile: string; rates: object; log: (l: string) => void },
): Map<string, SupervisedAgent> {
  const agents = new Map<string, SupervisedAgent>();
  for (const [id, target] of Object.entries(sandbox.endpoints.targets)) {
    if (target.kind !== 'pull') continue;
    agents.set(
      id,
      superviseAgent({
        endpointsFile: sandbox.endpointsFile,
        targetId: id,
        dataDir: sandbox.dataDir,
        feedShards: sandbox.topology.feedShards,
        pathPrefix: target.pathPrefix,
        env: { MIRROR_CRASH_POINTS: o.specs.agent, MIRROR_CRASH_POINTS_OFF_FILE: o.offFile },
        faults: o.rates,
        log: o.log,
      }),
    );
  }
  return agents;
}

interface Converged {
  readonly converged: boolean;
  readonly seconds: number;
}

/** Runs the repairs every 10 s and checks (cheaply: metadata, sizes, target rows) every 2 s. */
async function converge(
  sandbox: Sandbox,
  results: readonly OpResult[],
  timeoutSeconds: number,
  log: (l: string) => void,
): Promise<Converged> {
  const client = apiClient(sandbox);
  const access = accessOf(sandbox);
  const started = Date.now();
  let lastRepair = 0;
  let lastReport = Date.now();
  const committed = new Set<string>();
  try {
    for (;;) {
      if (Date.now() - lastRepair >= 10_000) {
        lastRepair = Date.now();
        await repair(sandbox, log);
      }
      const differ = await differences(sandbox, client, access.check, results, committed);
      const seconds = (Date.now() - started) / 1000;
      if (differ.length === 0) return { converged: true, seconds };
      // A long convergence says what it is still waiting for, so a run cut short is not blind.
      if (Date.now() - lastReport >= 30_000) {
        lastReport = Date.now();
        log(
          `chaos: converging for ${Math.round(seconds)} s: ${differ.length} differences, e.g. ${differ.slice(0, 3).join(', ')}`,
        );
      }
      if (seconds > timeoutSeconds) {
        log(
          `chaos: not converged after ${timeoutSeconds} s: ${differ.length} differences, e.g. ${differ.slice(0, 5).join(', ')}`,
        );
        return { converged: false, seconds };
      }
      await new Promise((r) => setTimeout(r, 2_000));
    }
  } finally {
    access.destroy();
  }
}

/** Uploads still pending, else target paths that differ from the ledger's head (cheap: no bytes read). */
async function differences(
  sandbox: Sandbox,
  client: MirrorApi,
  access: TargetAccess,
  results: readonly OpResult[],
  committed: Set<string>,
): Promise<string[]> {
  const outcomes = await uploadOutcomes(client, results.filter(awaited), committed);
  const pending: string[] = [];
  for (const [id, o] of outcomes) {
    if (o.status === 'pending') pending.push(`upload ${id} pending`);
    else committed.add(id);
  }
  if (pending.length > 0) return pending;
  const states = await readStates(client, results, { versions: false });
  return targetDifferences(access, targetsOf(sandbox.endpoints), states, { hash: false });
}

/**
 * What repairs a lost delivery, as the deployed functions do on their schedules: the
 * lost-notification sweep (also on its own 30 s timer), reconcile every target, the lag monitor's outbox.
 */
async function repair(sandbox: Sandbox, log: (l: string) => void) {
  try {
    const swept = await sandbox.sweepPending();
    const reconciled = await sandbox.reconcile();
    await sandbox.measureLag();
    const resent = Object.values(reconciled.targets).reduce((n, c) => n + (c?.resent ?? 0), 0);
    log(
      `chaos: repair: the sweep sent ${swept.sent} lost notification(s) of ${swept.uploads} upload(s), reconcile re-sent ${resent}`,
    );
  } catch (error) {
    log(`chaos: a repair step failed (tried again): ${(error as Error).message}`);
  }
}

const apiClient = (sandbox: Sandbox) =>
  new MirrorApi({ baseUrl: sandbox.endpoints.api, token: sandbox.endpoints.token });

function accessOf(sandbox: Sandbox) {
  const s3 = bucketClients(sandbox.endpoints);
  return { check: { s3, dataDir: sandbox.dataDir }, destroy: () => s3.destroy() };
}

async function readStates(client: MirrorApi, results: readonly OpResult[], options = { versions: true }) {
  const states = new Map<string, PathState>();
  for (const path of new Set(results.map((r) => r.op.path)))
    states.set(path, await readPath(client, path, options));
  return states;
}

/** An upload the run waits for: claimed, and not refused at the API (a refused proof leaves its upload pending). */
const awaited = (r: OpResult) => r.uploadId !== undefined && r.error === undefined;

async function finalCheck(
  sandbox: Sandbox,
  work: string,
  results: readonly OpResult[],
  converged: Converged,
) {
  void work;
  const client = apiClient(sandbox);
  const access = accessOf(sandbox);
  const e = sandbox.endpoints;
  const sqs = new SQSClient({ region: e.s3.region, endpoint: e.sqs.endpoint, credentials: e.s3.credentials });
  try {
    const outcomes = await uploadOutcomes(client, results);
    const states = await readStates(client, results);
    const differ = await targetDifferences(access.check, targetsOf(e), states, { hash: true });
    const pendingBlobs = new Set(
      results
        .filter((r) => r.uploadId !== undefined && outcomes.get(r.uploadId)?.status === 'pending')
        .map((r) => (r.op.kind === 'upload' ? r.op.content.sha256 : '')),
    );
    const dlq = await explainDlqs(sqs, e, states, pendingBlobs);
    const accepted = results.filter((r) => r.op.kind === 'upload' && r.error === undefined);
    return {
      uploads: results.filter((r) => r.op.kind === 'upload').length,
      deletes: results.filter((r) => r.op.kind === 'delete' && r.error === undefined).length,
      deduplicated: results.filter((r) => r.deduplicated === true).length,
      refusedAtApi: results.filter((r) => r.error !== undefined).length,
      refusedDetail: [...new Set(results.flatMap((r) => (r.error === undefined ? [] : [r.error])))].slice(
        0,
        10,
      ),
      pendingDetail: results
        .filter((r) => awaited(r) && outcomes.get(r.uploadId ?? '')?.status !== 'committed')
        .map((r) => `${r.uploadId} ${r.op.path} ${outcomes.get(r.uploadId ?? '')?.status}`)
        .slice(0, 10),
      uploadsNotCommitted: accepted.filter((r) => outcomes.get(r.uploadId ?? '')?.status !== 'committed')
        .length,
      ...ledgerFigures(states, results, outcomes),
      targetsEqual: differ.length === 0,
      targetDifferences: differ.slice(0, 20),
      dlqMessages: dlq.messages,
      dlqUnexplained: dlq.unexplained.length,
      dlqUnexplainedDetail: dlq.unexplained.slice(0, 20),
      converged: converged.converged,
      convergeSeconds: Math.round(converged.seconds * 10) / 10,
    };
  } finally {
    access.destroy();
    sqs.destroy();
  }
}

function printTable(r: ChaosReport, out: (line: string) => void) {
  const rows: [string, string][] = [
    ['uploads (deduplicated)', `${r.uploads} (${r.deduplicated})`],
    ['deletes', String(r.deletes)],
    ['refused at the API', String(r.refusedAtApi)],
    ['bytes uploaded', `${(r.bytesUploaded / MiB).toFixed(1)} MiB in ${r.uploadSeconds.toFixed(1)} s`],
    [
      'invocations',
      Object.entries(r.invocations)
        .map(([k, v]) => `${k} ${v}`)
        .join(', '),
    ],
    [
      'crashes',
      Object.entries(r.crashes)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ') || 'none',
    ],
    ...Object.entries(r.deliveryFaults).map(([k, c]): [string, string] => [
      `${k}`,
      Object.entries(c)
        .map(([f, n]) => `${f} ${n}`)
        .join(', '),
    ]),
    ['SQS restarts', String(r.sqsRestarts)],
    [
      'agent processes',
      Object.entries(r.agentProcesses)
        .map(([id, p]) => `${id}: ${p.starts} started, ${p.crashes} killed at a crash point`)
        .join('; ') || 'none',
    ],
    ['uploads not committed', String(r.uploadsNotCommitted)],
    ['versions committed', String(r.versionsCommitted)],
    ['gaps / duplicate versions', `${r.gaps} / ${r.duplicateVersions}`],
    [
      'targets equal to the ledger',
      r.targetsEqual ? 'yes' : `NO: ${r.targetDifferences.slice(0, 5).join(', ')}`,
    ],
    ['DLQ messages (unexplained)', `${r.dlqMessages} (${r.dlqUnexplained})`],
    [
      'converged',
      r.converged ? `yes, in ${r.convergeSeconds} s` : `NO (gave up after ${r.convergeSeconds} s)`,
    ],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) out(`${k.padEnd(width)}  ${v}`);
}

const isMain = process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'));
if (isMain) {
  const options = optionsFromArgs(process.argv.slice(2));
  const report = await runChaos(options, (line) => console.error(line));
  printTable(report, (line) => console.log(line));
  console.log(JSON.stringify(report));
  const ok =
    report.converged &&
    report.gaps === 0 &&
    report.duplicateVersions === 0 &&
    report.targetsEqual &&
    report.dlqUnexplained === 0;
  process.exit(ok ? 0 : 1);
}
