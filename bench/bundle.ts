/**
 * The CLI and the agent as the package installs them (bundles in dist/, bins, package.json, no
 * node_modules, no TypeScript): `media-mirror --help` time and memory, and the agent's resident
 * memory once idle against a local stack. Goals (docs/cli.md, docs/agent.md): `--help` under
 * 150 ms of wall time (median of 7), the agent under 64 MiB idle (median of 5). Each figure is
 * printed beside its peer, measured at the same moment on the same machine: `node -e 0` for
 * `--help` (Node's own start, the floor no bundle goes under), an empty idle `node` for the agent.
 *
 * The children print their own CPU time, peak RSS and V8 heap through a module NODE_OPTIONS
 * imports (process.resourceUsage, process.memoryUsage): nothing else sees an exited child's
 * figures. test/integration/bundle.test.ts runs the same measurements and prints them.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleCli } from '../cli/bundle.ts';
import { parseTopology } from '../contracts/topology.ts';
import { startSandbox } from '../local/sandbox.ts';
import { waitFor } from '../test/support/wait.ts';
import { type Row, show, spread } from './stats.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const HELP_GOAL_MS = 150;
export const AGENT_IDLE_GOAL_MIB = 64;
const MiB = 1024 * 1024;

/** What `npm install` puts on disk for this package, minus the web client: bins, dist/, package.json. */
export interface InstalledPackage {
  readonly dir: string;
  readonly cli: string;
  readonly agent: string;
  /** JavaScript in the bundles (chunks included), bytes. */
  readonly bytes: number;
}

/** Builds the bundles into `<dir>/dist` and copies the bins and package.json beside them. */
export async function installPackage(dir: string): Promise<InstalledPackage> {
  const built = await bundleCli(join(dir, 'dist'));
  await mkdir(join(dir, 'bin'), { recursive: true });
  for (const file of ['bin/media-mirror.js', 'bin/media-mirror-agent.js', 'bin/launch.js', 'package.json'])
    await copyFile(join(ROOT, file), join(dir, file));
  return {
    dir,
    cli: join(dir, 'bin/media-mirror.js'),
    agent: join(dir, 'bin/media-mirror-agent.js'),
    bytes: built.bytes,
  };
}

/**
 * Makes a Node child print its CPU time, peak RSS and heap on exit (or on SIGUSR2 for a server).
 * The peak (`maxRSS`, KiB) is VmHWM where /proc has it, as common/peak-rss.ts reads it (a data: URL
 * cannot import the project's TypeScript): getrusage's maxrss carries the starter's peak across exec,
 * so this bench's own RSS (265 MiB by then in a full run) was printed as `--help`'s.
 */
const USAGE_HOOK = `--import=data:text/javascript,${encodeURIComponent(
  [
    'import{readFileSync as r}from"node:fs";',
    'const h=()=>{try{const k=/^VmHWM:\\s+(\\d+) kB/m.exec(r("/proc/self/status","utf8"))?.[1];return k===undefined?{}:{maxRSS:Number(k)}}catch{return{}}};',
    'const p=()=>process.stderr.write("\\nUSAGE "+JSON.stringify({...process.resourceUsage(),...h(),...process.memoryUsage()})+"\\n");',
    'process.on("exit",p);process.on("SIGUSR2",p);',
  ].join(''),
)}`;

interface Usage {
  userCPUTime?: number;
  systemCPUTime?: number;
  maxRSS?: number;
  rss?: number;
  heapUsed?: number;
  heapTotal?: number;
}

const lastUsage = (text: string): Usage =>
  JSON.parse([...text.matchAll(/^USAGE (\{.*\})$/gm)].at(-1)?.[1] ?? '{}') as Usage;

export interface Run {
  readonly status: number | null;
  readonly stdout: string;
  readonly wallMs: number;
  readonly cpuMs: number;
  readonly maxRssMiB: number;
}

/**
 * Runs an executable (a bin, through its shebang, or node) twice and measures it: once as a user
 * runs it, for the wall time, and once with the usage hook, for CPU and memory. The hook (an ES
 * module given by a `data:` URL) adds its own start-up: `node -e 0` took 5% longer with it
 * (20 runs each, paired, timed as whole processes from outside; 2026-12-02), so the wall time is not taken from the hooked run.
 */
export function measure(command: string, args: readonly string[], cwd = ROOT): Run {
  const started = performance.now();
  const plain = spawnSync(command, args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  const wallMs = performance.now() - started;
  const hooked = spawnSync(command, args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, NODE_OPTIONS: USAGE_HOOK },
  });
  const usage = lastUsage(hooked.stderr);
  return {
    status: plain.status === 0 ? hooked.status : plain.status,
    stdout: plain.stdout,
    wallMs,
    cpuMs: ((usage.userCPUTime ?? Number.NaN) + (usage.systemCPUTime ?? Number.NaN)) / 1000,
    maxRssMiB: (usage.maxRSS ?? Number.NaN) / 1024,
  };
}

export interface HelpFigures {
  readonly wallMs: number;
  readonly wallMinMs: number;
  readonly wallMaxMs: number;
  readonly cpuMs: number;
  readonly maxRssMiB: number;
  /** `node -e 0` on the same machine, same moment: the floor. */
  readonly emptyNodeWallMs: number;
  readonly emptyNodeCpuMs: number;
  /** `--help` wall time over `node -e 0`'s, run by run (they alternate), median. */
  readonly wallRatio: number;
  readonly runs: readonly Run[];
  readonly emptyRuns: readonly Run[];
}

const median = (values: readonly number[]) => spread(values).median;

/**
 * `media-mirror --help` through the installed bin, `runs` times (median), alternating with
 * `node -e 0` so that both see the same load; the ratio is taken pair by pair.
 */
export function measureHelp(pkg: InstalledPackage, runs = 7): HelpFigures {
  // One unmeasured run of each first: the page cache, not the bundle, would be measured otherwise.
  measure(pkg.cli, ['--help'], pkg.dir);
  measure(process.execPath, ['-e', '0'], pkg.dir);
  const help: Run[] = [];
  const empty: Run[] = [];
  for (let i = 0; i < runs; i++) {
    help.push(measure(pkg.cli, ['--help'], pkg.dir));
    empty.push(measure(process.execPath, ['-e', '0'], pkg.dir));
  }
  const walls = help.map((r) => r.wallMs);
  return {
    wallMs: median(walls),
    wallMinMs: Math.min(...walls),
    wallMaxMs: Math.max(...walls),
    cpuMs: median(help.map((r) => r.cpuMs)),
    maxRssMiB: median(help.map((r) => r.maxRssMiB)),
    emptyNodeWallMs: median(empty.map((r) => r.wallMs)),
    emptyNodeCpuMs: median(empty.map((r) => r.cpuMs)),
    wallRatio: median(help.map((r, i) => r.wallMs / (empty[i]?.wallMs ?? Number.NaN))),
    runs: help,
    emptyRuns: empty,
  };
}

/** Node's flags on the agent bin's shebang (`#!/usr/bin/env -S node <flags>`). */
export async function agentNodeFlags(pkg: InstalledPackage): Promise<string[]> {
  const shebang = (await readFile(pkg.agent, 'utf8')).split('\n', 1)[0] ?? '';
  return shebang.split(/\s+/).filter((word) => word.startsWith('--'));
}

/**
 * The peer of the agent's idle RSS: an empty `node` with the agent bin's flags that only waits
 * (a timer), read from /proc after `idleMs`, `runs` times: the difference is the agent's own.
 */
export async function measureEmptyNodeIdle(
  nodeFlags: readonly string[],
  options: { runs?: number; idleMs?: number } = {},
): Promise<number[]> {
  const rss: number[] = [];
  for (let i = 0; i < (options.runs ?? 5); i++) {
    const child = spawn(process.execPath, [...nodeFlags, '-e', 'setInterval(() => {}, 1e9)'], {
      stdio: 'ignore',
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    const exited = new Promise((resolve) => child.on('exit', resolve));
    try {
      await new Promise((resolve) => setTimeout(resolve, options.idleMs ?? 3000));
      rss.push(await rssMiBOf(child.pid));
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
  }
  return rss;
}

async function rssMiBOf(pid: number | undefined): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]) / 1024;
}

export interface AgentIdle {
  readonly rssMiB: number;
  readonly heapUsedMiB: number;
  readonly heapTotalMiB: number;
  readonly log: string;
}

/**
 * Starts the installed agent bin against `endpointsFile`, waits until it has started and then
 * `idleMs`, reads its RSS (/proc) and V8 heap, stops it with SIGTERM. Rejects if it does not
 * start, or does not stop with exit 0.
 */
export async function measureAgentIdle(
  pkg: InstalledPackage,
  options: { endpointsFile: string; target: string; dir: string; idleMs?: number },
): Promise<AgentIdle> {
  const lines: string[] = [];
  const child: ChildProcess = spawn(
    pkg.agent,
    [
      '--target',
      options.target,
      '--dir',
      options.dir,
      '--endpoints',
      options.endpointsFile,
      '--log-format',
      'json',
    ],
    { cwd: pkg.dir, env: { ...process.env, NODE_OPTIONS: USAGE_HOOK }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  for (const stream of [child.stdout, child.stderr])
    stream?.on('data', (d: Buffer) => lines.push(d.toString()));
  try {
    await waitFor(
      'the agent to start',
      () => {
        if (child.exitCode !== null)
          throw new Error(`the agent exited with ${child.exitCode}: ${lines.join('')}`);
        return lines.join('').includes('agent starting') ? true : undefined;
      },
      60_000,
    );
    // Idle: connected, its catch-up done, long-polling an empty queue.
    await new Promise((resolve) => setTimeout(resolve, options.idleMs ?? 10_000));
    const rssMiB = await rssMiBOf(child.pid);
    const before = lines.join('').length;
    child.kill('SIGUSR2');
    await waitFor(
      'the agent to print its heap',
      () => (/USAGE \{/.test(lines.join('').slice(before)) ? true : undefined),
      10_000,
      50,
    );
    const usage = lastUsage(lines.join('').slice(before));
    child.kill('SIGTERM');
    const code = await exited;
    if (code !== 0) throw new Error(`the agent exited with ${code} on SIGTERM: ${lines.join('')}`);
    return {
      rssMiB,
      heapUsedMiB: (usage.heapUsed ?? Number.NaN) / MiB,
      heapTotalMiB: (usage.heapTotal ?? Number.NaN) / MiB,
      log: lines.join(''),
    };
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

const round = (n: number, digits = 0) => Number(n.toFixed(digits));

const AGENT_RUNS = 5;

/** `npm run bench -- --only=bundle`: both figures beside their peers and their goals. */
export async function benchBundle(options: { log: (line: string) => void }): Promise<Row[]> {
  const work = await mkdtemp(join(tmpdir(), 'mirror-bench-bundle-'));
  const sandbox = await startSandbox({
    dataDir: join(work, 'data'),
    port: 0,
    s3Port: 0,
    sqsPort: 0,
    dynamodbPort: 0,
    topology: parseTopology({ homeRegion: 'us-east-1', targets: [{ id: 'onprem-dc1', kind: 'pull' }] }),
    env: {},
    webDir: null,
    schedules: false,
    agents: false,
    log: () => {},
    functionLog: () => {},
  });
  try {
    const pkg = await installPackage(join(work, 'package'));
    options.log(`bundles built into ${pkg.dir} (${pkg.bytes} bytes of JavaScript)`);
    const help = measureHelp(pkg);
    const agents: AgentIdle[] = [];
    for (let i = 0; i < AGENT_RUNS; i++)
      agents.push(
        await measureAgentIdle(pkg, {
          endpointsFile: sandbox.endpointsFile,
          target: 'onprem-dc1',
          dir: join(work, 'mirror'),
        }),
      );
    const agentRss = spread(agents.map((a) => a.rssMiB));
    const flags = await agentNodeFlags(pkg);
    const emptyRss = spread(await measureEmptyNodeIdle(flags));
    const heapUsed = median(agents.map((a) => a.heapUsedMiB));
    const heapTotal = median(agents.map((a) => a.heapTotalMiB));
    return [
      {
        figure: `media-mirror --help, installed bin (bundle), wall time, median of ${help.runs.length}`,
        measured: `${show(spread(help.runs.map((r) => r.wallMs)), 'ms', 0)} (CPU ${round(help.cpuMs)} ms, max RSS ${round(help.maxRssMiB, 1)} MiB)`,
        peer: `node -e 0, alternating: ${show(spread(help.emptyRuns.map((r) => r.wallMs)), 'ms', 0)} (CPU ${round(help.emptyNodeCpuMs)} ms)`,
        ratio: `${round(help.wallRatio, 2)}x node -e 0 (wall, pair by pair)`,
        goal: `< ${HELP_GOAL_MS} ms`,
        met: help.wallMs < HELP_GOAL_MS,
      },
      {
        figure: `agent idle RSS, installed bin (bundle), 10 s after start, median of ${agents.length}`,
        measured: `${show(agentRss, 'MiB', 1)} (V8 heap ${round(heapUsed, 1)} MiB used of ${round(heapTotal, 1)})`,
        peer: `empty idle node (${flags.join(' ')}): ${show(emptyRss, 'MiB', 1)}`,
        ratio: `+${round(agentRss.median - emptyRss.median, 1)} MiB over it`,
        goal: `< ${AGENT_IDLE_GOAL_MIB} MiB`,
        met: agentRss.median < AGENT_IDLE_GOAL_MIB,
      },
    ];
  } finally {
    await sandbox.stop();
    await rm(work, { recursive: true, force: true });
  }
}
