/**
 * Stand-alone entry of the agent: `node --import tsx agent/main.ts [verify] --target <id> --dir <folder> ...`
 * takes the same flags as `media-mirror agent` (agent/command.ts); the tests run it as a child process.
 */
import { Command, CommanderError } from 'commander';
import { registerAgentCommand } from './command.ts';
import { AgentExitError } from './errors.ts';

// Run through its own bin, the agent is `media-mirror-agent`, not a verb of `media-mirror`: its
// help names it so (`media-mirror-agent verify`, not `media-mirror agent verify`). Set before the
// agent's commands are added, which inherit it.
const program = new Command()
  .name('media-mirror-agent')
  .exitOverride()
  .configureHelp({
    // --endpoints is this program's own option: shown in the help of the commands that read it.
    showGlobalOptions: true,
    commandUsage: (cmd) => {
      const names: string[] = [];
      for (let c: Command | null = cmd; c !== null; c = c.parent)
        if (c.parent !== program) names.unshift(c.name());
      return `${names.join(' ')} ${cmd.usage()}`;
    },
  })
  .option(
    '--endpoints <file>',
    'endpoints file written by npm start (env MIRROR_ENDPOINTS; default: $MIRROR_DATA_DIR/endpoints.json)',
  );
registerAgentCommand(program);

try {
  await program.parseAsync(['agent', ...process.argv.slice(2)], { from: 'user' });
  process.exitCode = 0;
} catch (error) {
  if (error instanceof CommanderError) {
    // Commander has printed the problem (an unknown flag, a flag without its value). Under systemd
    // it is a bad configuration a restart cannot fix: 78, which the unit does not restart.
    process.exitCode = error.exitCode === 0 ? 0 : 78;
  } else if (error instanceof AgentExitError) {
    process.stderr.write(`media-mirror-agent: ${error.message}\n`);
    process.exitCode = error.exitCode;
  } else {
    process.stderr.write(
      `media-mirror-agent: unexpected error: ${(error as Error).stack ?? String(error)}\n`,
    );
    process.exitCode = 1;
  }
}
