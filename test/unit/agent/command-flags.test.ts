/**
 * Bad flag values are a bad configuration like bad environment values: every problem named at
 * once with its flag, exit 78 (docs/agent.md, "Configuration"), so the unit's
 * RestartPreventExitStatus=78 does not restart an agent whose ExecStart has a typo.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerAgentCommand } from '../../../agent/command.ts';
import { AgentExitError } from '../../../agent/errors.ts';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const exec = promisify(execFile);
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-agent-flags-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function run(args: string[], env: NodeJS.ProcessEnv = {}) {
  const program = new Command().exitOverride();
  const stderr: string[] = [];
  registerAgentCommand(program, {
    stdout: { write: () => true },
    stderr: { write: (chunk: string) => stderr.push(chunk) },
    env,
    cwd: dir,
    onSignal: () => () => undefined,
  });
  const base = ['agent', '--target', 'onprem-dc1', '--dir', join(dir, 'm'), '--table', 'ledger'];
  const aws = ['--origin-bucket', 'origin', '--queue-url', 'https://sqs.invalid/q.fifo'];
  return program.parseAsync([...base, ...aws, ...args], { from: 'user' }).then(
    () => undefined,
    (error: unknown) => error,
  );
}

describe('agent flags', () => {
  it('bad values of several flags: one bad-configuration error naming each flag, exit 78', async () => {
    const error = await run([
      '--concurrency',
      '0',
      '--check-interval',
      '30',
      '--feed-shards',
      'four',
      '--max-bytes-per-second',
      'fast',
      '--log-format',
      'xml',
    ]);
    expect(error).toBeInstanceOf(AgentExitError);
    expect((error as AgentExitError).exitCode).toBe(78);
    const message = (error as Error).message;
    expect(message).toMatch(/^bad agent configuration:/);
    for (const flag of [
      '--concurrency',
      '--check-interval',
      '--feed-shards',
      '--max-bytes-per-second',
      '--log-format',
    ])
      expect(message).toContain(`${flag}:`);
  });

  it('the same value from a flag and from the environment: the same exit and message, naming its source', async () => {
    const fromFlag = (await run(['--heartbeat', '0'])) as AgentExitError;
    const fromEnv = (await run([], { MIRROR_AGENT_HEARTBEAT: '0' })) as AgentExitError;
    expect([fromFlag.exitCode, fromEnv.exitCode]).toEqual([78, 78]);
    expect(fromFlag.message.replace('--heartbeat', 'X')).toBe(
      fromEnv.message.replace('MIRROR_AGENT_HEARTBEAT', 'X'),
    );
  });

  it('--dir naming a file, or a folder under a file: a bad configuration (78) naming it, not an unexpected error (probe agent3)', async () => {
    const file = join(dir, 'a-file');
    await writeFile(file, 'not a folder');
    for (const where of [file, join(file, 'media')]) {
      const error = await run(['--dir', where]);
      expect(error).toBeInstanceOf(AgentExitError);
      expect((error as AgentExitError).exitCode).toBe(78);
      expect((error as AgentExitError).message).toContain(`the mirror folder ${where} cannot be a folder`);
    }
  });

  it("--dir where the file system makes no folder (/proc): a bad configuration (78) at once, not a hang (Node's recursive mkdir loops there)", async () => {
    const started = Date.now();
    const error = await run(['--dir', '/proc/self/no-such/media']);
    expect(error).toBeInstanceOf(AgentExitError);
    expect((error as AgentExitError).exitCode).toBe(78);
    expect((error as AgentExitError).message).toMatch(
      /the mirror folder \/proc\/self\/no-such\/media cannot be made: ENOENT/,
    );
    expect(Date.now() - started).toBeLessThan(5_000);
  }, 10_000);

  it("media-mirror-agent --help names each flag of docs/agent.md's table with its variable and numeric default", async () => {
    const { stdout: help } = await exec(process.execPath, ['--import', 'tsx', 'agent/main.ts', '--help'], {
      cwd: repoRoot,
    });
    // Each option's text, its wrapped lines joined: from its flag to the next option.
    const optionText = (flag: string) => {
      const start = help.search(new RegExp(`^ {2}${flag}\\b`, 'm'));
      if (start < 0) return undefined;
      const next = help.slice(start + 2).search(/^ {2}-/m);
      return help.slice(start, next < 0 ? undefined : start + 2 + next).replace(/\s+/g, ' ');
    };
    const doc = readFileSync(join(repoRoot, 'docs', 'agent.md'), 'utf8');
    const table = doc.split('\n## Configuration\n')[1]?.split('\n## ')[0] ?? '';
    const rows = [
      ...table.matchAll(/^\| `(--[a-z0-9-]+)[^`]*` \| (?:`([A-Z0-9_]+)[^`]*`)? *\| ([^|]*) \|/gm),
    ];
    expect(rows.length).toBeGreaterThan(20);
    for (const [, flag, env, defaultText] of rows) {
      const text = optionText(flag as string);
      expect(text, `${flag} in media-mirror-agent --help`).toBeDefined();
      if (env !== undefined) expect(text, `${flag}: its variable`).toContain(env);
      const numeric = /^`?(\d+)`?$/.exec((defaultText ?? '').trim())?.[1];
      if (numeric !== undefined)
        expect(text, `${flag}: its default`).toMatch(new RegExp(`default ${numeric}\\b`));
    }
  }, 30_000);

  it('media-mirror-agent with an unknown flag exits 78 too (a bad configuration under systemd)', async () => {
    const error = await exec(process.execPath, ['--import', 'tsx', 'agent/main.ts', '--concurency', '8'], {
      cwd: repoRoot,
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 78 });
    expect((error as { stderr: string }).stderr).toContain("unknown option '--concurency'");
  }, 30_000);
});
