/**
 * The small chaos run (docs/chaos.md) as `npm run chaos` runs it, in a child process of its own
 * (its crash points are read from the environment at load): functions crash at their crash
 * points (the agent, its own process, is killed at its own and started again), deliveries are
 * lost, doubled, delayed and reordered, SQS restarts twice; after the
 * faults stop the stack must converge with every target equal to the ledger.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));
/** Small enough for the suite on 2 busy cores; `npm run chaos -- --uploads 100` is the larger small run. */
const UPLOADS = process.env.CHAOS_TEST_UPLOADS ?? '20';

function runChaos(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/chaos.ts', ...args], {
      cwd: root,
      env: { ...process.env, NODE_NO_WARNINGS: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('chaos (small run)', () => {
  it('converges under crashes, lost, doubled and reordered deliveries and SQS restarts: no gap, no duplicate, every target equal to the ledger, every DLQ message explained', async () => {
    const run = await runChaos(['--uploads', UPLOADS, '--converge-timeout', '240']);
    const last = run.stdout.trim().split('\n').at(-1) ?? '';
    let report: Record<string, unknown>;
    try {
      report = JSON.parse(last) as Record<string, unknown>;
    } catch {
      throw new Error(
        `no JSON line from the chaos run (exit ${run.code}):\n${run.stdout}\n${run.stderr.slice(-4000)}`,
      );
    }
    console.log(run.stdout);
    expect(report).toMatchObject({
      uploads: Number(UPLOADS),
      uploadsNotCommitted: 0,
      gaps: 0,
      duplicateVersions: 0,
      targetsEqual: true,
      dlqUnexplained: 0,
      converged: true,
    });
    expect(report.versionsCommitted).toBeGreaterThanOrEqual(
      Number(UPLOADS) - (report.refusedAtApi as number),
    );
    // The faults happened: a run without them proves nothing.
    const crashes = Object.values(report.crashes as Record<string, number>).reduce((a, b) => a + b, 0);
    expect(crashes).toBeGreaterThan(0);
    expect(report.sqsRestarts).toBe(2);
    // The agent ran as its own process, and every restart followed a kill at one of its crash points.
    const agent = (report.agentProcesses as Record<string, { starts: number; crashes: number }>)[
      'onprem-dc1'
    ];
    expect(agent?.starts).toBeGreaterThanOrEqual(1);
    expect(agent?.starts).toBe((agent?.crashes ?? 0) + 1);
    expect(run.code).toBe(0);
  }, 420_000);
});
