/**
 * `media-mirror status [path]`: the deployment's targets with their replication lag,
 * backlog, agent heartbeat and parked failures; or one path's head and where it has reached.
 */

import { formatBytes } from '../common/format-bytes.ts';
import { terminalText } from '../common/terminal-text.ts';
import type { FileStatus, Health, TargetList } from '../contracts/api.ts';
import type { MirrorApi } from '../web/client/api.ts';
import { ApiError } from '../web/client/errors.ts';
import { NotFoundCliError } from './errors.ts';
import { readSample, readSamples } from './prom-text.ts';

/** A target as the API lists it, with its parked failures when they can be read. */
type Target = TargetList['targets'][number] & { failures?: number };

export interface TargetsOverview {
  api: string;
  /**
   * The API's targets. `failures`: (local stack) the messages in the target's DLQ read from
   * `/metrics`, else absent.
   */
  targets: Target[];
  /** The health answer, or why there is none (the targets are still shown). */
  health: Health | { status: 'unavailable'; error: string };
  /** (Local stack) the DLQs of no target (the ingest's, the completions') and the messages each holds. */
  otherDlqs?: { queue: string; messages: number }[];
}

export async function getTargetsOverview(
  client: Pick<MirrorApi, 'listTargets' | 'health' | 'baseUrl'> & Partial<Pick<MirrorApi, 'metricsText'>>,
): Promise<TargetsOverview> {
  const [targets, health, metrics] = await Promise.all([
    client.listTargets(),
    client.health().catch((err: unknown) => ({
      status: 'unavailable' as const,
      error: err instanceof Error ? err.message : String(err),
    })),
    client.metricsText ? client.metricsText() : Promise.resolve(undefined),
  ]);
  return {
    api: client.baseUrl,
    targets: targets.targets.map((t) => {
      if (metrics === undefined) return t;
      const parked = readSample(metrics, 'mirror_dlq_messages', { target: t.id });
      return parked === undefined ? t : { ...t, failures: parked };
    }),
    health,
    ...(metrics === undefined
      ? {}
      : {
          otherDlqs: readSamples(metrics, 'mirror_dlq_messages')
            .filter((s) => s.labels.target === undefined && s.labels.queue !== undefined)
            .map((s) => ({ queue: s.labels.queue as string, messages: s.value })),
        }),
  };
}

export async function getPathStatus(client: Pick<MirrorApi, 'getFile'>, path: string): Promise<FileStatus> {
  try {
    return await client.getFile(path);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      throw new NotFoundCliError(`no such path: ${path}`, { cause: err });
    }
    throw err;
  }
}

/** Lag figures older than this are said to be so: the lag monitor runs every minute or more often. */
const STALE_FIGURES_MS = 2 * 60_000;

/**
 * The API's time as its health check told it, else `fallback` (this host's). The lag monitor
 * stamps `measuredAt` and the API `appliedAt` on AWS's clocks: aged on a laptop's clock minutes
 * off, a running monitor looked stopped, or a stopped one running, and every time "in the future".
 */
export function apiNow(health: TargetsOverview['health'] | undefined, fallback: number): number {
  const time = health !== undefined && 'time' in health ? Date.parse(health.time) : Number.NaN;
  return Number.isNaN(time) ? fallback : time;
}

export function formatTargetsOverview(overview: TargetsOverview, localNow = Date.now()): string {
  const health = overview.health;
  const now = apiNow(health, localNow);
  const healthText =
    'error' in health && health.status === 'unavailable'
      ? `unavailable (${String(health.error)})`
      : (health.status ?? 'answered');
  const lines = [`api     ${overview.api}`, `health  ${healthText}`, ''];
  if (overview.targets.length === 0) {
    lines.push('no targets');
  } else {
    lines.push(
      formatTable(
        ['TARGET', 'KIND', 'LAG (S)', 'BACKLOG', 'HEARTBEAT', 'FAILED (DLQ)', 'REGION', 'PATH PREFIX'],
        overview.targets.map(targetRow),
      ),
    );
    for (const t of overview.targets) lines.push(...targetNotes(t, now));
  }
  // Uploads whose bytes were never verified, completions never made: parked outside every target.
  for (const dlq of overview.otherDlqs ?? []) {
    if (dlq.messages > 0) lines.push(`${dlq.queue}: ${dlq.messages} message(s) parked`);
  }
  return lines.join('\n');
}

/** Under the table: a target's oldest pending change, and figures too old to go by. */
function targetNotes(t: Target, now: number): string[] {
  const notes: string[] = [];
  const o = t.lag.oldestPending;
  if (o) notes.push(`${t.id}: oldest pending ${o.path} v${o.version}, committed ${o.committedAt}`);
  // The figures are the lag monitor's last: a monitor that stopped leaves them as they were.
  if (!measured(t)) {
    notes.push(`${t.id}: lag and backlog never measured: is the lag monitor running?`);
  } else if (now - Date.parse(t.lag.measuredAt as string) > STALE_FIGURES_MS) {
    const age = now - Date.parse(t.lag.measuredAt as string);
    notes.push(`${t.id}: lag and backlog measured ${formatAge(age)}: is the lag monitor running?`);
  }
  return notes;
}

/** A pull target's agent: when it last reported and, while something stops it, what (`disk-full`). */
function agentCell(t: Target): string {
  if (t.kind !== 'pull') return '-';
  const heartbeat = t.lag.heartbeatAgeSeconds;
  if (heartbeat === null || heartbeat === undefined) return 'never';
  const notes = [...(t.lag.agentRebuilding ? ['rebuilding'] : []), ...(t.lag.agentConditions ?? [])];
  return `${formatLagSeconds(heartbeat)}s ago${notes.length > 0 ? ` (${notes.join(', ')})` : ''}`;
}

/**
 * The API answers 0 lag and 0 pending, without `measuredAt`, for a target the lag monitor has not
 * measured yet (it never ran, or the target was just added): not a target caught up.
 */
const measured = (t: Target) => t.lag.measuredAt !== undefined && !Number.isNaN(Date.parse(t.lag.measuredAt));

function targetRow(t: Target): string[] {
  return [
    `${t.id}${t.dryRun ? ' (dry run)' : ''}`,
    t.kind,
    measured(t) ? formatLagSeconds(t.lag.lagSeconds) : '-',
    measured(t) ? `${t.lag.pending}${t.lag.pendingCapped ? '+' : ''}` : '-',
    agentCell(t),
    t.failures === undefined ? '-' : String(t.failures),
    t.region ?? '-',
    t.pathPrefix ?? '(all)',
  ];
}

/** Seconds with one decimal below a minute, whole seconds above; `0` when caught up. */
function formatLagSeconds(seconds: number): string {
  if (seconds === 0) return '0';
  return seconds < 60 ? seconds.toFixed(1) : String(Math.round(seconds));
}

/**
 * For `status <path>`: the conditions each pull target's agent reports (`GET /v1/targets`), asked
 * only when such a target lacks the head. While the agent retries (a full disk, a read-only
 * folder) the path's own row says only "pending" (probe C1).
 */
export async function agentConditionsFor(
  client: Pick<MirrorApi, 'listTargets'>,
  status: FileStatus,
): Promise<Map<string, string[]>> {
  const behind = status.targets.filter(
    (t) => t.kind === 'pull' && (t.appliedVersion ?? 0) < status.head.version,
  );
  if (behind.length === 0) return new Map();
  // A note beside the path's own status: if the targets cannot be read, the status is printed without it.
  const targets = await client.listTargets().then(
    (answer) => answer.targets,
    () => [],
  );
  return new Map(
    targets
      .filter((t) => behind.some((b) => b.id === t.id) && (t.lag.agentConditions ?? []).length > 0)
      .map((t) => [t.id, t.lag.agentConditions ?? []]),
  );
}

export function formatFileStatus(
  status: FileStatus,
  now: Date = new Date(),
  agentConditions: ReadonlyMap<string, readonly string[]> = new Map(),
): string {
  const head = status.head;
  const lines = [
    `path       ${status.path}`,
    `version    ${head.version}${head.deleted ? ' (deleted)' : ''}`,
    `sha256     ${head.sha256 ?? '(deleted)'}`,
    `size       ${formatBytes(head.size)} (${head.size} bytes)`,
    `type       ${head.contentType ?? '-'}`,
    `committed  ${formatWhen(head.committedAt, now)}`,
    '',
  ];
  if (status.targets.length === 0) {
    lines.push('no targets select this path');
  } else {
    lines.push(
      formatTable(
        ['TARGET', 'KIND', 'APPLIED', 'STATUS', 'SINCE'],
        status.targets.map((t) => [
          t.id,
          t.kind,
          t.appliedVersion === null || t.appliedVersion === undefined
            ? '-'
            : `${t.appliedVersion}${t.appliedVersion < head.version ? ` (behind ${head.version - t.appliedVersion})` : ''}`,
          t.status,
          formatWhen(t.appliedAt, now),
        ]),
      ),
    );
    const failed = status.targets.filter((t) => t.failure);
    if (failed.length > 0) {
      lines.push('', 'last failures');
      const width = Math.max(...failed.map((t) => t.id.length));
      for (const t of failed) {
        const f = t.failure as NonNullable<typeof t.failure>;
        lines.push(`  ${t.id.padEnd(width)}  v${f.version} ${formatWhen(f.at, now)}: ${oneLine(f.reason)}`);
      }
    }
    for (const [id, conditions] of agentConditions)
      lines.push(
        '',
        `${id}'s agent reports ${conditions.map(terminalText).join(', ')}: it retries until that clears`,
      );
  }
  return lines.join('\n');
}

/** Left-aligned columns separated by two spaces; no trailing blanks. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  // Cells are names and the server's words: escaped before the widths are taken, so a line break
  // in one cannot start a row and the columns stay aligned.
  rows = rows.map((row) => row.map(terminalText));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** `2025-01-02T03:04:05.678Z` → `2025-01-02 03:04:05Z (5m ago)`. */
function formatWhen(iso: string | null | undefined, now: Date): string {
  if (iso === null || iso === undefined || iso === '') return '-';
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return iso;
  const text = `${at.toISOString().slice(0, 19).replace('T', ' ')}Z`;
  return `${text} (${formatAge(now.getTime() - at.getTime())})`;
}

export function formatAge(ms: number): string {
  if (ms < 0) return 'in the future';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86_400)}d ago`;
}

function oneLine(text: string, max = 160): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}
