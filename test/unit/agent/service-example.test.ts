/**
 * docs/examples/media-mirror-agent.service is pasted as it is: its flags must be the agent's, its
 * environment file must name only variables the agent (or the AWS SDK's credential chain, as
 * docs/agent.md sets it up) reads, and its exit statuses must be those docs/agent.md gives.
 */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { registerAgentCommand } from '../../../agent/command.ts';

const unit = readFileSync(
  new URL('../../../docs/examples/media-mirror-agent.service', import.meta.url),
  'utf8',
);
const agentDoc = readFileSync(new URL('../../../docs/agent.md', import.meta.url), 'utf8');

describe('docs/examples/media-mirror-agent.service', () => {
  it("starts the agent with the agent's own flags", () => {
    const program = new Command();
    registerAgentCommand(program, {
      stdout: { write: () => true },
      stderr: { write: () => true },
      env: {},
      cwd: '/',
      onSignal: () => () => undefined,
    });
    const agent = program.commands.find((c) => c.name() === 'agent');
    const known = new Set([...(agent?.options ?? []).map((o) => o.long), '--endpoints']);
    const execStart = /^ExecStart=(.*)$/m.exec(unit)?.[1] ?? '';
    const flags = execStart
      .split(/\s+/)
      .slice(execStart.split(/\s+/).findIndex((word) => word.endsWith('media-mirror-agent.js')) + 1)
      .filter((word) => word.startsWith('--'));
    expect(flags.length).toBeGreaterThan(0);
    expect(flags.filter((flag) => !known.has(flag))).toEqual([]);
  });

  it("names, in its environment file, only the agent's variables and the credential files docs/agent.md uses", () => {
    const documented = new Set([...agentDoc.matchAll(/`((?:MIRROR|AWS)_[A-Z0-9_]+)/g)].map((m) => m[1]));
    const named = [...unit.matchAll(/^#[ #]*((?:MIRROR|AWS)_[A-Z0-9_]+)=/gm)].map((m) => m[1] as string);
    expect(named.length).toBeGreaterThan(5);
    expect(named.filter((name) => !documented.has(name))).toEqual([]);
    // Keys in the environment come first in the SDK's chain: the agent would call AWS as the user,
    // which may only assume the role, and never assume it (docs/agent.md, "An access key").
    expect(named).not.toContain('AWS_ACCESS_KEY_ID');
    expect(named).not.toContain('AWS_SECRET_ACCESS_KEY');
  });

  it('does not restart on the exits docs/agent.md says it must not', () => {
    expect(/^RestartPreventExitStatus=(.*)$/m.exec(unit)?.[1]?.split(/\s+/).sort()).toEqual(['73', '78']);
    expect(agentDoc).toContain('`RestartPreventExitStatus=78 73`');
  });
});
