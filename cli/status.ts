/** `media-mirror status [path]`: the deployment's targets, or one path's head and where it has reached. */
import type { FileStatus, HealthResponse, MirrorApiClient, TargetsResponse } from './api-client.ts';
import { ApiError, MirrorCliError } from './errors.ts';
import { formatBytes } from './progress.ts';

export interface TargetsOverview {
  api: string;
  targets: TargetsResponse['targets'];
  /** The health answer, or why there is none (the targets are still shown). */
  health: HealthResponse | { status: 'unavailable'; error: string };
}

export async function getTargetsOverview(
  client: Pick<MirrorApiClient, 'listTargets' | 'health' | 'baseUrl'>,
): Promise<TargetsOverview> {
  const [targets, health] = await Promise.all([
    client.listTargets(),
    client.health().catch((err: unknown) => ({
      status: 'unavailable' as const,
      error: err instanceof Error ? err.message : String(err),
    })),
  ]);
  return { api: client.baseUrl, targets: targets.targets, health };
}

export async function getPathStatus(
  client: Pick<MirrorApiClient, 'getFile'>,
  path: string,
): Promise<FileStatus> {
  try {
    return await client.getFile(path);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      throw new MirrorCliError(`no such path: ${path}`, { cause: err });
    }
    throw err;
  }
}

export function formatTargetsOverview(overview: TargetsOverview): string {
  const health = overview.health;
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
        ['TARGET', 'KIND', 'REGION', 'PATH PREFIX'],
        overview.targets.map((t) => [t.id, t.kind, t.region ?? '-', t.pathPrefix ?? '(all)']),
      ),
    );
  }
  return lines.join('\n');
}

export function formatFileStatus(status: FileStatus, now: Date = new Date()): string {
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
  }
  return lines.join('\n');
}

/** Left-aligned columns separated by two spaces; no trailing blanks. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** `2025-01-02T03:04:05.678Z` → `2025-01-02 03:04:05Z (5m ago)`. */
export function formatWhen(iso: string | null | undefined, now: Date): string {
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
