/**
 * The agent's own bin names itself: `media-mirror-agent --help` and its `verify` say
 * `media-mirror-agent`, from the checkout's bin (bin/launch.js: the bundle if up to date, else
 * the sources through tsx) and from a fresh bundle; `media-mirror agent --help` keeps its name.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { bundleCli } from '../../../cli/bundle.ts';
import { runCli } from '../../../cli/program.ts';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const exec = promisify(execFile);
const dirs: string[] = [];

afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function help(script: string, ...args: string[]): Promise<string> {
  const { stdout } = await exec(process.execPath, [script, ...args, '--help'], { cwd: repoRoot });
  return stdout;
}

describe('media-mirror-agent names itself', () => {
  it('in the help of the bin and of its verify command', async () => {
    const bin = join(repoRoot, 'bin/media-mirror-agent.js');
    const top = await help(bin);
    expect(top.split('\n')[0]).toBe('Usage: media-mirror-agent [options] [command]');
    expect(top).not.toContain('media-mirror agent');
    const verify = await help(bin, 'verify');
    expect(verify.split('\n')[0]).toBe('Usage: media-mirror-agent verify [options]');
    // Every flag it takes is in its help, --endpoints too (it belongs to the bin's own program; probe docs, D7).
    for (const text of [top, verify]) expect(text).toMatch(/--endpoints <file>/);
  }, 60_000);

  it('in the help of the bundled agent (dist/agent.mjs as npm pack builds it)', async () => {
    const out = await mkdtemp(join(tmpdir(), 'mirror-agent-bundle-'));
    dirs.push(out);
    const built = await bundleCli(out);
    expect((await help(built.agent)).split('\n')[0]).toBe('Usage: media-mirror-agent [options] [command]');
    expect((await help(built.agent, 'verify')).split('\n')[0]).toBe(
      'Usage: media-mirror-agent verify [options]',
    );
  }, 120_000);

  it('while `media-mirror agent` keeps the verb form in the CLI', async () => {
    let out = '';
    const code = await runCli(['node', 'media-mirror', 'agent', '--help'], {
      stdout: { write: (s: string) => (out += s) },
      stderr: { write: () => true },
      env: {},
      cwd: repoRoot,
    });
    expect(code).toBe(0);
    expect(out.split('\n')[0]).toBe('Usage: media-mirror agent [options] [command]');
  });
});
