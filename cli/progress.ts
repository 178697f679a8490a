/**
 * Progress of an upload through its phases: hashing → uploading → verifying → done.
 * On a terminal: a cli-progress bar per phase with bytes and rate. Otherwise: one
 * JSON line per phase change, for logs and scripts. Both write to stderr, so stdout
 * carries only the result.
 */
import { type Options, type Params, SingleBar } from 'cli-progress';
import { formatBytes } from '../common/format-bytes.ts';

export type Phase = 'hashing' | 'uploading' | 'verifying' | 'done';

export interface ProgressSink {
  /** A phase begins; `total` is its byte count for hashing and uploading. */
  phase(
    phase: Phase,
    total?: number,
    details?: Readonly<Record<string, string | number | boolean | null>>,
  ): void;
  /** Bytes done so far within the current phase. */
  bytes(done: number): void;
  /** Finish (after success or failure): leaves the terminal tidy. Safe to call twice. */
  stop(): void;
}

export interface Writable {
  write(chunk: string): unknown;
}

/** One JSON line per phase change: `{"phase":"uploading","total":1048576,"elapsedSeconds":0.41,...}`. */
export function createJsonLinesProgress(out: Writable, now: () => number = Date.now): ProgressSink {
  const start = now();
  let current: Phase | undefined;
  return {
    phase(phase, total, details) {
      if (phase === current) return;
      current = phase;
      const line: Record<string, unknown> = { phase };
      if (total !== undefined) line.total = total;
      Object.assign(line, details);
      line.elapsedSeconds = round3((now() - start) / 1000);
      out.write(`${JSON.stringify(line)}\n`);
    },
    bytes() {},
    stop() {},
  };
}

const LABELS: Record<Phase, string> = {
  hashing: 'hashing  ',
  uploading: 'uploading',
  verifying: 'verifying',
  done: 'done     ',
};

/**
 * A bar per phase; each finished phase stays on screen as one line. Ctrl-C (or
 * SIGTERM) restores the cursor and then lets the signal end the process as usual;
 * cli-progress's own `gracefulExit` would swallow the first Ctrl-C instead.
 */
export function createTtyProgress(stream: NodeJS.WritableStream): ProgressSink {
  let bar: SingleBar | undefined;
  let total = 0;
  let listening = false;

  const stopBar = (): void => {
    if (bar === undefined) return;
    bar.stop();
    bar = undefined;
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    stopBar();
    unlisten();
    process.kill(process.pid, signal);
  };
  const unlisten = (): void => {
    if (!listening) return;
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    listening = false;
  };

  return {
    phase(phase, phaseTotal) {
      stopBar();
      if (phase === 'done') return;
      if (!listening) {
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        listening = true;
      }
      total = phaseTotal ?? 0;
      const options: Options = {
        stream,
        format: (_options: Options, params: Params) => formatBar(phase, params, total, Date.now()),
        hideCursor: true,
        gracefulExit: false,
        clearOnComplete: false,
        fps: 8,
      };
      bar = new SingleBar(options);
      // Verifying has no byte count: a zero-of-one bar that shows the waiting time.
      bar.start(phase === 'verifying' ? 1 : Math.max(total, 1), 0);
    },
    bytes(done) {
      bar?.update(done);
    },
    stop() {
      stopBar();
      unlisten();
    },
  };
}

function formatBar(phase: Phase, params: Params, total: number, nowMs: number): string {
  const seconds = Math.max((nowMs - params.startTime) / 1000, 0.001);
  if (phase === 'verifying') {
    return `${LABELS[phase]} waiting for commit ${seconds.toFixed(1)} s`;
  }
  const width = 30;
  const ratio = total > 0 ? Math.min(params.value / total, 1) : 1;
  const filled = Math.round(ratio * width);
  const barText = '█'.repeat(filled) + '░'.repeat(width - filled);
  const percent = `${Math.floor(ratio * 100)}`.padStart(3);
  const rate = `${formatBytes(params.value / seconds)}/s`;
  return `${LABELS[phase]} ${barText} ${percent}% | ${formatBytes(params.value)} / ${formatBytes(total)} | ${rate}`;
}

export function round3(n: number): number {
  return Math.round(n * 1000) / 1000;
}
