/** A CLI run as a child process, for tests that signal it mid-way: its output so far, and how it ended. */
import { type ChildProcess, spawn } from 'node:child_process';

export interface WatchedChild {
  readonly child: ChildProcess;
  /** Exit code and the signal that ended it, once its output is read to the end. */
  readonly exited: Promise<[number | null, string | null]>;
  readonly err: () => string;
  readonly out: () => string;
}

export function spawnWatched(
  args: readonly string[],
  options: { cwd: string; env: NodeJS.ProcessEnv },
): WatchedChild {
  const child = spawn(process.execPath, [...args], { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr?.on('data', (b: Buffer) => {
    err += b.toString();
  });
  let out = '';
  child.stdout?.on('data', (b: Buffer) => {
    out += b.toString();
  });
  const exited = new Promise<[number | null, string | null]>((resolve) =>
    child.on('close', (code, signal) => resolve([code, signal])),
  );
  return { child, exited, err: () => err, out: () => out };
}
