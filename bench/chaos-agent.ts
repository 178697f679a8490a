/**
 * The chaos run's on-prem agent, as its own process (docs/chaos.md): a crash point ends it with
 * exit code 137, as `kill -9` or a power cut would, and its supervisor starts it again on the same
 * folder and state. An in-process restart could not model that honestly: the dead agent's pending
 * writes and timers would live on beside the new one, and nothing on disk would be left half-done.
 *
 * As a child:  node <tsx flags> bench/chaos-agent.ts <endpoints.json> <target> <dataDir> <feedShards> [pathPrefix]
 *   CHAOS_AGENT_FAULTS  delivery fault rates (JSON) on its queue, off once the crash points' off file exists
 *   stdout: `chaos-agent-faults {counts}` lines (the latest is the process's total)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { sandboxAgentOptions, silentLog, startAgent } from '../agent/index.ts';
import { CRASH_LOG_PREFIX, CRASH_POINTS_EXIT_ENV } from '../common/crash-points.ts';
import { faultyAgentQueue } from '../local/agents.ts';
import { type DeliveryFaultRates, DeliveryFaults, type FaultCounts } from '../local/delivery-faults.ts';

const FAULTS_PREFIX = 'chaos-agent-faults ';

/** What the supervisor saw over every run of the agent. */
export interface AgentProcessReport {
  /** Processes started (the first one included). */
  readonly starts: number;
  /** Runs that ended at a crash point (exit code 137). */
  readonly crashes: number;
  /** Crash points fired, by name (each run's stderr line). */
  readonly points: Record<string, number>;
  /** Delivery faults on its queue, summed over the runs. */
  readonly faults: FaultCounts;
}

export interface SupervisedAgent {
  report(): AgentProcessReport;
  /** Stops the agent as SIGTERM would (waiting for it) and stops restarting it. */
  stop(): Promise<void>;
}

/** Starts the agent in its own process and starts it again whenever it dies. */
export function superviseAgent(spec: {
  readonly endpointsFile: string;
  readonly targetId: string;
  readonly dataDir: string;
  readonly feedShards: number;
  readonly pathPrefix?: string | undefined;
  /** The crash points' variables (MIRROR_CRASH_POINTS, MIRROR_CRASH_POINTS_OFF_FILE). */
  readonly env: Record<string, string>;
  readonly faults: DeliveryFaultRates;
  readonly log: (line: string) => void;
}): SupervisedAgent {
  let starts = 0;
  let crashes = 0;
  let stopping = false;
  const points: Record<string, number> = {};
  const finished: FaultCounts[] = [];
  let current: { child: ChildProcess; counts: FaultCounts | undefined; exited: Promise<void> } | undefined;
  const args = [spec.endpointsFile, spec.targetId, spec.dataDir, String(spec.feedShards)];
  if (spec.pathPrefix) args.push(spec.pathPrefix);

  const onExit = (counts: FaultCounts | undefined, code: number | null, signal: string | null) => {
    if (counts) finished.push(counts);
    if (code === 137) crashes++;
    if (stopping) return;
    if (code !== 137) spec.log(`chaos: the agent exited (code ${code}, signal ${signal}); restarting it`);
    setTimeout(launch, 100);
  };
  const launch = (): void => {
    starts++;
    // The same node and loader flags as this process (tsx): the child runs the TypeScript as is.
    const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...args], {
      env: {
        ...process.env,
        ...spec.env,
        [CRASH_POINTS_EXIT_ENV]: '1',
        CHAOS_AGENT_FAULTS: JSON.stringify(spec.faults),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const run = { child, counts: undefined as FaultCounts | undefined, exited: Promise.resolve() };
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      if (line.startsWith(FAULTS_PREFIX)) run.counts = JSON.parse(line.slice(FAULTS_PREFIX.length));
    });
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => {
      if (!line.startsWith(CRASH_LOG_PREFIX)) return;
      const { point } = JSON.parse(line.slice(CRASH_LOG_PREFIX.length)) as { point: string };
      points[point] = (points[point] ?? 0) + 1;
    });
    run.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        onExit(run.counts, code, signal);
        resolve();
      });
    });
    current = run;
  };
  launch();

  const sum = (): FaultCounts => {
    const total: FaultCounts = { deliver: 0, drop: 0, duplicate: 0, delay: 0, reorder: 0 };
    const all = current?.counts ? [...finished, current.counts] : finished;
    for (const c of all) for (const k of Object.keys(total) as (keyof FaultCounts)[]) total[k] += c[k];
    return total;
  };
  return {
    report: () => ({ starts, crashes, points: { ...points }, faults: sum() }),
    async stop() {
      stopping = true;
      const run = current;
      if (!run || run.child.exitCode !== null) return;
      run.child.kill('SIGTERM');
      const killer = setTimeout(() => run.child.kill('SIGKILL'), 20_000);
      await run.exited;
      clearTimeout(killer);
      // The counts its exit wrote may land after the exit event: the last line is read by now.
      current = undefined;
    },
  };
}

/** The child: one run of the agent on the stack's pull target, until SIGTERM or a crash point. */
async function runChild(argv: string[]): Promise<void> {
  const [endpointsFile = '', targetId = '', dataDir = '', feedShards = '4', pathPrefix] = argv;
  const endpoints = JSON.parse(readFileSync(endpointsFile, 'utf8'));
  const faults = new DeliveryFaults('faults.agent', JSON.parse(process.env.CHAOS_AGENT_FAULTS ?? '{}'));
  const offFile = process.env.MIRROR_CRASH_POINTS_OFF_FILE;
  const report = () => process.stdout.write(`${FAULTS_PREFIX}${JSON.stringify(faults.counts)}\n`);
  const ticker = setInterval(() => {
    if (offFile !== undefined && faults.active && existsSync(offFile)) faults.set({});
    report();
  }, 500);
  const { queue, destroy } = faultyAgentQueue(endpoints, targetId, faults);
  const handle = await startAgent({
    ...sandboxAgentOptions(endpoints, {
      targetId,
      dataDir,
      feedShards: Number(feedShards),
      pathPrefix,
      log: silentLog,
    }),
    catchUpIntervalSeconds: 5,
    waitTimeSeconds: 1,
    shutdownGraceSeconds: 5,
    ports: { queue },
  });
  process.once('SIGTERM', () => {
    void handle.stop().finally(() => {
      clearInterval(ticker);
      report();
      destroy();
      process.exit(0);
    });
  });
}

const isMain = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1];
if (isMain) await runChild(process.argv.slice(2));
