/**
 * The agent's command stops gracefully on SIGHUP as on SIGTERM and SIGINT (a closed ssh session,
 * a supervisor's "reload"): Node's default would end the process at once, with no last heartbeat
 * and its temp files left behind (docs/agent.md, "Running it as a service").
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

/** A process that subscribes as the agent command does, then is sent `signal`. */
async function sendTo(
  signal: NodeJS.Signals,
): Promise<{ code: number | null; signal: string | null; out: string }> {
  const script = `
    import { processIo } from './agent/command.ts';
    processIo().onSignal((s) => process.stdout.write('handled ' + s, () => process.exit(0)));
    process.stdout.write('ready\\n');
    setTimeout(() => process.exit(3), 10000);
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    if (out.includes('ready\n')) child.kill(signal);
  });
  const [code, got] = (await once(child, 'exit')) as [number | null, string | null];
  return { code, signal: got, out };
}

describe('agent signals', () => {
  it.each(['SIGHUP', 'SIGTERM', 'SIGINT'] as const)(
    '%s reaches the graceful stop',
    async (signal) => {
      const result = await sendTo(signal);
      expect(result).toMatchObject({ signal: null, code: 0 });
      expect(result.out).toContain(`handled ${signal}`);
    },
    30_000,
  );
});
