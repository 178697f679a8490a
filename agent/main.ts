/**
 * Stand-alone entry of the agent: `node --import tsx agent/main.ts [verify] --target <id> --dir <folder> ...`
 * takes the same flags as `media-mirror agent` (agent/command.ts); the tests run it as a child process.
 */
import { Command, CommanderError } from 'commander';
import { registerAgentCommand } from './command.ts';
import { AgentExitError } from './errors.ts';

const program = new Command()
  .name('media-mirror')
  .exitOverride()
  .option(
    '--endpoints <file>',
    'endpoints file written by npm start (default: $MIRROR_DATA_DIR/endpoints.json)',
  );
registerAgentCommand(program);

try {
  await program.parseAsync(['agent', ...process.argv.slice(2)], { from: 'user' });
  process.exitCode = 0;
} catch (error) {
  if (error instanceof CommanderError) {
    process.exitCode = error.exitCode === 0 ? 0 : 2;
  } else if (error instanceof AgentExitError) {
    process.stderr.write(`media-mirror: ${error.message}\n`);
    process.exitCode = error.exitCode;
  } else {
    process.stderr.write(`media-mirror: unexpected error: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 1;
  }
}
