/**
 * `npm start` (bin/local.ts) as a user runs it: its banner, and a clean stop on SIGTERM. The
 * banner names the page and the token for a terminal, but keeps the token out of anything else:
 * `npm start > stack.log` writes a file others may read (SECURITY.md: no token in logs), while the
 * stack keeps it in its data folder's endpoints file, readable by its owner alone.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { npmStartEnv } from '../support/npm-start-env.ts';
import { waitFor } from '../support/wait.js';

const ROOT = resolve(import.meta.dirname, '../..');
const ENDPOINTS = 'endpoints.json';

let child: ChildProcess | undefined;
let dataDir: string | undefined;

afterEach(async () => {
  if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
    const gone = new Promise((done) => child?.once('exit', done));
    process.kill(-child.pid, 'SIGKILL');
    await gone;
  }
  if (dataDir) await rm(dataDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
});

/** Starts `cmd` in its own process group with the stack on free ports; collects what it prints. */
async function startStack(command: string, args: string[]) {
  dataDir = await mkdtemp(join(tmpdir(), 'mirror-npm-start-'));
  let output = '';
  child = spawn(command, args, {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: npmStartEnv(dataDir),
  });
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const started = child;
  await waitFor(
    `the banner of npm start (printed so far: ${output})`,
    () => {
      if (started.exitCode !== null) throw new Error(`it exited with ${started.exitCode}: ${output}`);
      return output.includes('Ctrl-C stops');
    },
    180_000,
    200,
  );
  const endpointsFile = join(dataDir, ENDPOINTS);
  const { token, api } = JSON.parse(await readFile(endpointsFile, 'utf8')) as { token: string; api: string };
  return { output: () => output, token, api, endpointsFile, child: started };
}

describe('npm start', () => {
  it('printing into a pipe or a file, the banner names the page and where its token is, never the token; SIGTERM stops it, exit 0', async () => {
    const stack = await startStack(process.execPath, ['--import', 'tsx', 'bin/local.ts']);
    expect(stack.token.length).toBeGreaterThan(20);
    expect(stack.output()).not.toContain(stack.token);
    expect(stack.output()).not.toContain(encodeURIComponent(stack.token));
    expect(stack.output()).toContain(`${stack.api}/`);
    expect(stack.output()).toContain(stack.endpointsFile);
    expect((await stat(stack.endpointsFile)).mode & 0o777).toBe(0o600);

    const exit = new Promise<number | null>((done) => stack.child.once('exit', (code) => done(code)));
    process.kill(stack.child.pid as number, 'SIGTERM');
    expect(await exit).toBe(0);
    expect(stack.output()).toContain('stopped.');
  }, 240_000);

  it('in a terminal, the banner gives the page address with its token, to open as it is', async () => {
    // script(1) runs it on a pseudo-terminal, as a user's shell would.
    const command = `${process.execPath} --import tsx bin/local.ts`;
    const stack = await startStack('script', ['-qfec', command, '/dev/null']);
    expect(stack.output()).toContain(`${stack.api}/#token=${encodeURIComponent(stack.token)}`);
  }, 240_000);
});
