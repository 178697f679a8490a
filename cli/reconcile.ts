/**
 * `media-mirror reconcile [--target <id>...] [--dry-run]`: anti-entropy on demand. Compares
 * the ledger's heads with what each target holds (S3 targets: the objects themselves,
 * paced; pull targets: what their agent reported) and re-sends what is missing,
 * outdated or altered (functions/core/reconcile.ts, as the scheduled function does).
 */
import { makeReconcileDeps } from '../functions/adapters/wiring.ts';
import { type ForeignReason, type ReconcileReport, reconcileTargets } from '../functions/core/reconcile.ts';
import { ConfigError } from './errors.ts';
import type { OpsClients, OpsContext } from './ops-context.ts';
import { selectTargets } from './ops-context.ts';
import { formatTable } from './status.ts';

export interface ReconcileCommandOptions {
  readonly targetIds?: readonly string[] | undefined;
  readonly dryRun: boolean;
  /** HEADs per second against the replica buckets. @default 50 */
  readonly checksPerSecond?: number | undefined;
  /** Check S3 objects, not only the ledger's record of them. @default true */
  readonly checkObjects?: boolean | undefined;
}

export interface ReconcileResult extends ReconcileReport {
  readonly mode: 'local' | 'aws';
  readonly seconds: number;
  /** S3 targets whose bucket is unknown: checked against the ledger only. */
  readonly uncheckedTargets: readonly string[];
}

export async function runReconcile(
  ctx: OpsContext,
  clients: OpsClients,
  options: ReconcileCommandOptions,
): Promise<ReconcileResult> {
  if (!ctx.table) throw new ConfigError('no ledger table: pass --table (or MIRROR_TABLE)');
  const selected = selectTargets(ctx, options.targetIds);
  const withoutQueue = selected.filter((t) => !t.queueUrl).map((t) => t.id);
  if (withoutQueue.length > 0 && !options.dryRun) {
    throw new ConfigError(
      `no queue URL for ${withoutQueue.join(', ')}: pass --queue-url <id>=<url> (or --dry-run to only count)`,
    );
  }
  // S3 targets whose bucket is unknown are checked against the ledger only.
  const unchecked = selected.filter((t) => t.kind === 's3' && !t.bucket).map((t) => t.id);
  const deps = makeReconcileDeps(
    {
      table: ctx.table,
      region: ctx.region,
      clockOffsetMs: 0,
      originBucket: ctx.originBucket ?? '',
      s3ForcePathStyle: false,
      targets: selected,
    },
    undefined,
    { dynamodb: clients.dynamodb, sqs: clients.sqs, s3: (region) => clients.s3(region) },
  );
  const started = performance.now();
  const report = await reconcileTargets(deps, {
    targetIds: selected.map((t) => t.id),
    dryRun: options.dryRun,
    ...(options.checkObjects === false ? { checkObjects: false } : {}),
    ...(options.checksPerSecond === undefined ? {} : { checksPerSecond: options.checksPerSecond }),
  });
  return {
    ...report,
    mode: ctx.mode,
    seconds: (performance.now() - started) / 1000,
    uncheckedTargets: unchecked,
  };
}

export function formatReconcileResult(result: ReconcileResult): string {
  const rows = Object.entries(result.targets).map(([id, c]) => [
    id,
    String(c.resent),
    String(c.missing),
    String(c.altered),
    String(c.resent - c.missing - c.altered),
  ]);
  const verb = result.dryRun ? 'would re-send' : 're-sent';
  const total = Object.values(result.targets).reduce((n, c) => n + c.resent, 0);
  const lines = [
    `reconcile${result.dryRun ? ' (dry run: nothing changed)' : ''}: ${result.heads} path(s) checked in ${result.seconds.toFixed(1)} s, ${verb} ${total} version(s)`,
    '',
    formatTable(['TARGET', result.dryRun ? 'TO RESEND' : 'RESENT', 'MISSING', 'ALTERED', 'BEHIND'], rows),
  ];
  lines.push(...formatForeign(result));
  if (result.uncheckedTargets.length > 0) {
    lines.push(
      '',
      `objects not checked (bucket unknown, pass --bucket <id>=<name>): ${result.uncheckedTargets.join(', ')}`,
    );
  }
  return lines.join('\n');
}

function foreignReason(reason: ForeignReason, dryRun: boolean): string {
  if (reason === 'deleted') return `deleted in the mirror: delete ${dryRun ? 'to re-send' : 're-sent'}`;
  if (reason === 'unknown') return 'unknown to the mirror: left alone';
  return "outside the target's path prefix: left alone";
}

/** Objects found in replica buckets that the mirror does not hold: counts, then the sample by key. */
function formatForeign(result: ReconcileResult): string[] {
  const listed = Object.entries(result.foreign);
  if (listed.length === 0) return [];
  const rows = listed.map(([id, f]) => [id, String(f.listed), String(f.foreign), String(f.deleted)]);
  const lines = [
    '',
    'objects in replica buckets the mirror holds no live file for (foreign):',
    formatTable(
      ['TARGET', 'LISTED', 'FOREIGN', result.dryRun ? 'DELETES TO RE-SEND' : 'DELETES RE-SENT'],
      rows,
    ),
  ];
  for (const [id, f] of listed) {
    for (const o of f.sample) lines.push(`  ${id}: ${o.key} (${foreignReason(o.reason, result.dryRun)})`);
    if (f.foreign > f.sample.length) lines.push(`  ${id}: ${f.foreign - f.sample.length} more not shown`);
    if (!f.complete) lines.push(`  ${id}: listing not complete (stopped at the deadline)`);
  }
  return lines;
}
