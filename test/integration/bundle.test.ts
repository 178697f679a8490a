/**
 * The CLI and the agent as bundled JavaScript (cli/bundle.ts): `media-mirror --help` from the
 * bundle against the same through tsx, and the bundled agent idling against the local stack.
 * Prints wall time, CPU time and peak memory (CPU time is the steadier figure on a loaded machine).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BundleResult, bundleCli } from '../../cli/bundle.ts';
import { parseTopology } from '../../contracts/topology.ts';
import { type Sandbox, startSandbox } from '../../local/sandbox.ts';
import { waitFor } from '../support/wait.js';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const PULL = 'onprem-dc1';

let work: string;
let bundle: BundleResult;
let sandbox: Sandbox;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'mirror-bundle-'));
  bundle = await bundleCli(join(work, 'dist'));
  sandbox = await startSandbox({
    dataDir: join(work, 'data'),
    port: 0,
    s3Port: 0,
    sqsPort: 0,
    dynamodbPort: 0,
    topology: parseTopology({ homeRegion: 'us-east-1', targets: [{ id: PULL, kind: 'pull' }] }),
    env: {},
    webDir: null,
    schedules: false,
    agents: false,
    log: () => {},
    functionLog: () => {},
  });
}, 180_000);

afterAll(async () => {
  await sandbox?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** Makes a Node child print its own CPU time and peak RSS on exit (process.resourceUsage). */
const USAGE_HOOK =
  'data:text/javascript,process.on("exit",()=>process.stderr.write("\\nUSAGE "+JSON.stringify(process.resourceUsage())+"\\n"))';

interface Run {
  status: number | null;
  stdout: string;
  wallMs: number;
  cpuMs: number;
  rssMiB: number;
}

function runNode(args: readonly string[]): Run {
  const started = performance.now();
  const child = spawnSync(process.execPath, ['--import', USAGE_HOOK, ...args], {
    cwd: repoRoot,
    encoding: 'utf8',
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  const wallMs = performance.now() - started;
  const usage = JSON.parse(/USAGE (\{.*\})/.exec(child.stderr)?.[1] ?? '{}') as {
    userCPUTime?: number;
    systemCPUTime?: number;
    maxRSS?: number;
  };
  return {
    status: child.status,
    stdout: child.stdout,
    wallMs,
    cpuMs: ((usage.userCPUTime ?? Number.NaN) + (usage.systemCPUTime ?? Number.NaN)) / 1000,
    rssMiB: (usage.maxRSS ?? Number.NaN) / 1024,
  };
}

const median = (values: readonly number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;
const figures = (runs: readonly Run[]) => ({
  wallMs: Math.round(median(runs.map((r) => r.wallMs))),
  cpuMs: Math.round(median(runs.map((r) => r.cpuMs))),
  rssMiB: Math.round(median(runs.map((r) => r.rssMiB)) * 10) / 10,
});

describe('the bundled CLI and agent', () => {
  it('media-mirror --help from the bundle lists every command, in less CPU and memory than through tsx', () => {
    const bundled = Array.from({ length: 5 }, () => runNode([bundle.cli, '--help']));
    for (const run of bundled) {
      expect(run.status).toBe(0);
      for (const command of ['upload', 'sync', 'ls', 'log', 'get', 'rm', 'limits', 'status', 'agent']) {
        expect(run.stdout).toMatch(new RegExp(`^  ${command}\\b`, 'm'));
      }
    }
    const tsx = Array.from({ length: 3 }, () => runNode(['bin/media-mirror.js', '--help']));
    expect(tsx.every((r) => r.status === 0)).toBe(true);
    const empty = Array.from({ length: 5 }, () => runNode(['-e', '0']));
    const [b, t, e] = [figures(bundled), figures(tsx), figures(empty)];
    console.log(
      `media-mirror --help (median): bundle ${b.wallMs} ms wall, ${b.cpuMs} ms CPU, ${b.rssMiB} MiB; ` +
        `tsx ${t.wallMs} ms wall, ${t.cpuMs} ms CPU, ${t.rssMiB} MiB; empty node ${e.wallMs} ms wall, ` +
        `${e.cpuMs} ms CPU, ${e.rssMiB} MiB; bundle ${bundle.bytes} bytes of JavaScript`,
    );
    expect(b.cpuMs).toBeLessThan(t.cpuMs);
    expect(b.rssMiB).toBeLessThan(t.rssMiB);
  }, 180_000);

  it('the bundled agent starts against the local stack, idles, and stops on SIGTERM', async () => {
    const dir = join(work, 'mirror');
    const lines: string[] = [];
    const child: ChildProcess = spawn(
      process.execPath,
      [
        bundle.agent,
        '--target',
        PULL,
        '--dir',
        dir,
        '--endpoints',
        sandbox.endpointsFile,
        '--log-format',
        'json',
      ],
      { cwd: work, env: { ...process.env, NODE_OPTIONS: '' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    for (const stream of [child.stdout, child.stderr])
      stream?.on('data', (d: Buffer) => lines.push(d.toString()));
    await waitFor(
      'the agent to start',
      () => (lines.join('').includes('agent starting') ? true : undefined),
      60_000,
    );
    // Idle: connected, its catch-up done, long-polling an empty queue.
    await new Promise((resolve) => setTimeout(resolve, 10_000));
    const status = await readFile(`/proc/${child.pid}/status`, 'utf8');
    const rssMiB = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]) / 1024;
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(lines.join('')).toContain('agent stopped');
    console.log(`bundled agent idle: ${rssMiB.toFixed(1)} MiB RSS after 10 s`);
    expect(rssMiB).toBeGreaterThan(0);
  }, 180_000);
});
