/**
 * "Logs are JSON lines on stderr" (docs/agent.md) holds for process warnings too: the AWS SDK's
 * multi-line NodeVersionSupportWarning (process.emitWarning) becomes one JSON `warn` line instead
 * of Node's plain-text print, which `journalctl -o cat | jq` cannot read.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

async function stderrOf(script: string): Promise<string> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: repoRoot,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (chunk: Buffer) => {
    err += chunk.toString();
  });
  await once(child, 'exit');
  return err;
}

describe('process warnings in the agent', () => {
  it('a multi-line warning (as the AWS SDK emits it) is one JSON warn line on stderr', async () => {
    const err = await stderrOf(`
      import { captureProcessWarnings, processIo } from './agent/command.ts';
      import { createJsonLog } from './agent/log.ts';
      captureProcessWarnings(processIo(), createJsonLog(process.stderr, { base: { target: 'onprem-dc1' } }));
      process.emitWarning('NodeVersionSupportWarning: The AWS SDK for JavaScript (v3)\\nwill require node >=22.\\n\\nMore information');
      await new Promise((r) => setTimeout(r, 50));
    `);
    const lines = err.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] as string)).toMatchObject({
      level: 'warn',
      msg: 'process warning',
      target: 'onprem-dc1',
      name: 'Warning',
      warning: expect.stringContaining('will require node >=22.'),
    });
  }, 30_000);

  it.runIf(Number(process.versions.node.split('.')[0]) < 22)(
    "the AWS SDK's own warning on this Node, from the agent's clients: only JSON lines",
    async () => {
      const err = await stderrOf(`
        import { captureProcessWarnings, processIo } from './agent/command.ts';
        import { makeClients } from './agent/aws.ts';
        import { createJsonLog } from './agent/log.ts';
        captureProcessWarnings(processIo(), createJsonLog(process.stderr));
        makeClients({ targetId: 'onprem-dc1', region: 'us-east-1', aws: { s3ForcePathStyle: true } });
        await new Promise((r) => setTimeout(r, 50));
      `);
      const lines = err.trimEnd().split('\n');
      expect(lines.map((line) => JSON.parse(line).msg)).toEqual(['process warning']);
      expect(err).toContain('NodeVersionSupportWarning');
    },
    30_000,
  );
});
