/** EventBridge schedule (or a direct invoke) → anti-entropy over every target; counts as metrics. */
import type { Context } from 'aws-lambda';
import { z } from 'zod';
import type { Telemetry } from '../adapters/powertools.js';
import { type ExpiryDeps, type ExpirySweepReport, expirePendingUploads } from '../core/expiry.js';
import { type ReconcileDeps, type ReconcileReport, reconcileTargets } from '../core/reconcile.js';

/** No blob store: the reconcile function holds no permission on the origin (docs/deploy.md). */
export interface ReconcileHandlerDeps
  extends Omit<ReconcileDeps, 'ledger'>,
    Pick<ExpiryDeps, 'clock' | 'metrics'> {
  readonly ledger: ReconcileDeps['ledger'] & ExpiryDeps['ledger'];
  readonly telemetry: Telemetry;
}

/**
 * A scheduled event carries none of these; a direct invoke may narrow the run, or ask for every
 * head from the first (`fromStart`: the local stack's start-up run, which stands in for queues lost
 * anywhere in the table, not only past where a run cut short by the crash had got to).
 */
const requestSchema = z
  .object({
    targetIds: z.array(z.string()).optional(),
    dryRun: z.boolean().optional(),
    fromStart: z.boolean().optional(),
  })
  .loose()
  .catch({});

/** When the run stops starting pages: time is kept for the page in flight and the expiry sweep after it. */
export function reconcileDeadline(
  context: Pick<Context, 'getRemainingTimeInMillis'>,
  now = Date.now(),
): number {
  const remaining = context.getRemainingTimeInMillis();
  return now + remaining - Math.min(remaining / 4, 60_000);
}

export function createReconcileHandler(
  handlerDeps: ReconcileHandlerDeps,
): (event: unknown, context: Context) => Promise<ReconcileReport & { uploads: ExpirySweepReport }> {
  const { logger, metrics } = handlerDeps.telemetry;
  const deps = { ...handlerDeps, metrics };
  return async (event, context) => {
    logger.addContext(context);
    const request = requestSchema.parse(event);
    try {
      const narrowed =
        request.targetIds !== undefined || request.dryRun === true || request.fromStart === true;
      const report = await reconcileTargets(deps, {
        ...(request.targetIds ? { targetIds: request.targetIds } : {}),
        dryRun: request.dryRun ?? false,
        // A scheduled run goes on where the last one stopped; a narrowed, dry or from-start one
        // leaves the checkpoint to the schedule and starts at the first head.
        resume: !narrowed,
        // Time for the page in flight, and for the expiry sweep after it (a quarter, or 60 s at most).
        deadline: reconcileDeadline(context),
      });
      emitReconcileMetrics(report, handlerDeps.telemetry);
      // Pending uploads past their expiry are ended here too (UploadsExpired counts them), not only
      // when their bytes turn up: an abandoned upload leaves nothing behind.
      const uploads = await expirePendingUploads(deps, { dryRun: request.dryRun ?? false });
      logger.info('reconciled', { report, uploads });
      return { ...report, uploads };
    } finally {
      handlerDeps.telemetry.flush();
    }
  };
}

/** Per target: the drift the walk found and what it re-sent; the foreign objects of each target listed. */
function emitReconcileMetrics(report: ReconcileReport, { logger, metrics }: Telemetry): void {
  for (const [target, counts] of Object.entries(report.targets)) {
    // A dry run's counts are what it would re-send: it sent nothing, so it says nothing was resent.
    if (!report.dryRun) metrics.count('ReconcileResent', counts.resent, { target });
    metrics.count('ReconcileMissing', counts.missing, { target });
    metrics.count('ReconcileAltered', counts.altered, { target });
  }
  // Only for the targets this run listed, in whole or in part (a scheduled run lists at a cycle's
  // start, and goes on with a listing an earlier run left unfinished): a 0 then says "listed,
  // nothing foreign", never "not looked".
  for (const [target, found] of Object.entries(report.foreign)) {
    metrics.count('ReconcileForeign', found.foreign, { target });
    if (found.foreign > 0) logger.warn('foreign objects in a replica bucket', { target, ...found });
  }
}
