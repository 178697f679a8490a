/**
 * The agent's output. On a terminal: one status line rewritten in place (files/s,
 * bytes/s, backlog, lag) with notable events printed above it. Otherwise (systemd,
 * docker, pipes): one JSON object per line, for journald and log shippers.
 * Everything goes to stderr; stdout stays free for command results (verify).
 */
import { formatBytes } from '../common/format-bytes.ts';
import { terminalText } from '../common/terminal-text.ts';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Readonly<Record<string, unknown>>;

export interface StatusView {
  readonly targetId: string;
  readonly applied: number;
  readonly filesPerSecond: number;
  readonly bytesPerSecond: number;
  readonly inFlight: number;
  readonly backlogQueue: number | undefined;
  readonly backlogFeed: number | undefined;
  readonly lagSeconds: number;
  readonly refused: number;
  readonly catchingUp: boolean;
  readonly conditions: readonly string[];
}

export interface AgentLog {
  log(level: LogLevel, msg: string, fields?: LogFields): void;
  /** One file applied, skipped or refused: a JSON line (unless quiet); on a TTY only the status line moves. */
  file(msg: string, fields: LogFields): void;
  /** The live status (called about once a second); JSON logs ignore it. */
  status(view: StatusView): void;
  close(): void;
}

export interface Writable {
  write(chunk: string): unknown;
}

function jsonSafe(fields: LogFields | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields ?? {})) {
    out[k] = v instanceof Error ? v.message : v;
  }
  return out;
}

export function createJsonLog(
  out: Writable,
  options: { quiet?: boolean; debug?: boolean; now?: () => Date; base?: LogFields } = {},
): AgentLog {
  const now = options.now ?? (() => new Date());
  const write = (level: LogLevel, msg: string, fields?: LogFields) => {
    out.write(
      `${JSON.stringify({ time: now().toISOString(), level, msg, ...jsonSafe(options.base), ...jsonSafe(fields) })}\n`,
    );
  };
  return {
    log(level, msg, fields) {
      if (level === 'debug' && !options.debug) return;
      write(level, msg, fields);
    },
    file(msg, fields) {
      if (!options.quiet) write('info', msg, fields);
    },
    status() {},
    close() {},
  };
}

const CLEAR_LINE = '\r\x1b[2K';

export function formatStatusLine(v: StatusView): string {
  const backlog =
    v.backlogQueue === undefined && v.backlogFeed === undefined
      ? 'backlog ?'
      : `backlog ${v.backlogQueue ?? '?'} queued, ${v.backlogFeed ?? '?'} in feed`;
  const parts = [
    `${v.targetId}${v.catchingUp ? ' (catching up)' : ''}`,
    `${v.applied} applied`,
    `${v.filesPerSecond.toFixed(1)} files/s`,
    `${formatBytes(v.bytesPerSecond)}/s`,
    `${v.inFlight} in flight`,
    backlog,
    `lag ${v.lagSeconds < 10 ? v.lagSeconds.toFixed(1) : Math.round(v.lagSeconds)} s`,
  ];
  if (v.refused > 0) parts.push(`${v.refused} refused`);
  if (v.conditions.length > 0) parts.push(`waiting: ${v.conditions.join(', ')}`);
  return parts.join(' | ');
}

function textFields(fields: LogFields | undefined): string {
  const entries = Object.entries(jsonSafe(fields));
  if (entries.length === 0) return '';
  return ` ${entries.map(([k, v]) => `${k}=${typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v)}`).join(' ')}`;
}

/** The terminal view: a status line kept at the bottom, events printed above it. */
export function createTtyLog(
  stream: Writable & { columns?: number },
  options: { verbose?: boolean; debug?: boolean; now?: () => Date } = {},
): AgentLog {
  const now = options.now ?? (() => new Date());
  let line = '';
  const redraw = () => {
    const width = Math.max(20, (stream.columns ?? 120) - 1);
    stream.write(`${CLEAR_LINE}${line.length > width ? `${line.slice(0, width - 1)}…` : line}`);
  };
  const print = (text: string) => {
    stream.write(`${CLEAR_LINE}${text}\n`);
    if (line) redraw();
  };
  const stamp = () => now().toTimeString().slice(0, 8);
  return {
    log(level, msg, fields) {
      if (level === 'debug' && !options.debug) return;
      const tag = level === 'info' ? '' : `${level.toUpperCase()} `;
      print(`${stamp()} ${tag}${terminalText(`${msg}${textFields(fields)}`)}`);
    },
    file(msg, fields) {
      if (options.verbose) print(`${stamp()} ${terminalText(`${msg}${textFields(fields)}`)}`);
    },
    status(view) {
      line = formatStatusLine(view);
      redraw();
    },
    close() {
      if (line) stream.write(`${CLEAR_LINE}${line}\n`);
      line = '';
    },
  };
}

export interface MemoryLog extends AgentLog {
  readonly entries: { level: LogLevel | 'file'; msg: string; fields: LogFields }[];
}

/** Keeps every entry in memory: for tests and embedding. */
export function createMemoryLog(echo?: AgentLog): MemoryLog {
  const entries: MemoryLog['entries'] = [];
  return {
    entries,
    log(level, msg, fields = {}) {
      entries.push({ level, msg, fields });
      echo?.log(level, msg, fields);
    },
    file(msg, fields) {
      entries.push({ level: 'file', msg, fields });
      echo?.file(msg, fields);
    },
    status(view) {
      echo?.status(view);
    },
    close() {
      echo?.close();
    },
  };
}

export const silentLog: AgentLog = { log() {}, file() {}, status() {}, close() {} };
