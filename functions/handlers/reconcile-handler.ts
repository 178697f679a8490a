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

/** A scheduled event carries none of these; a direct invoke may narrow the run. */
const requestSchema = z
  .object({ targetIds: z.array(z.string()).optional(), dryRun: z.boolean().optional() })
  .loose()
  .catch({});

export function createReconcileHandler(
  handlerDeps: ReconcileHandlerDeps,
): (event: unknown, context: Context) => Promise<ReconcileReport & { uploads: ExpirySweepReport }> {
  const { logger, metrics } = handlerDeps.telemetry;
  const deps = { ...handlerDeps, metrics };
  return async (event, context) => {
    logger.addContext(context);
    const request = requestSchema.parse(event);
    try {
      const report = await reconcileTargets(deps, {
        ...(request.targetIds ? { targetIds: request.targetIds } : {}),
        dryRun: request.dryRun ?? false,
      });
      for (const [target, counts] of Object.entries(report.targets)) {
        metrics.count('ReconcileResent', counts.resent, { target });
        metrics.count('ReconcileMissing', counts.missing, { target });
        metrics.count('ReconcileAltered', counts.altered, { target });
      }
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
