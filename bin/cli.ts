/** Entry point of the `media-mirror` CLI (run through bin/media-mirror.js, or `tsx bin/cli.ts`). */
import { processIo, runCli } from '../cli/program.ts';

process.exitCode = await runCli(process.argv, processIo());
