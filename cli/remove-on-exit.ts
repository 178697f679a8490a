/**
 * A temporary file or folder that does not outlive the process: `sync --from` spools objects
 * under `$TMPDIR/media-mirror-sync-*`, `get` downloads into `.mm-get-*` next to the
 * destination, and a Ctrl-C (SIGINT), a SIGTERM or a `process.exit` must not leave either (any
 * size, and a partial file sits beside the user's own) behind. The command's own end, success or
 * error, removes it (cli/sync-source.ts's `close()`, cli/files.ts's `getFile`); this covers the
 * ends that skip `finally` blocks.
 */
import { rmSync } from 'node:fs';

const SIGNALS = ['SIGINT', 'SIGTERM'] as const;

/**
 * Removes `path`, a file or a folder (synchronously: no await runs after a signal's handler),
 * when the process is interrupted or exits, then lets the signal end the process as it would
 * have. Returns the function that cancels this, for when it is removed (or renamed into place)
 * the ordinary way.
 */
export function removeOnExit(path: string): () => void {
  const remove = () => {
    // A listener that throws while the process exits prints a stack trace over the command's own
    // error (probe V6): what cannot be removed now is left to the next run's sweep.
    try {
      rmSync(path, { recursive: true, force: true });
    } catch {}
  };
  const onSignal = (signal: NodeJS.Signals) => {
    remove();
    cancel();
    // With no other listener left, the default action ends the process by the signal (exit
    // status 130 or 143 in a shell), as it would have ended without this handler.
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };
  const cancel = () => {
    for (const signal of SIGNALS) process.off(signal, onSignal);
    process.off('exit', remove);
  };
  for (const signal of SIGNALS) process.on(signal, onSignal);
  process.on('exit', remove);
  return cancel;
}
