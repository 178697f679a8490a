/** EventBridge schedule (or a direct invoke) → anti-entropy over every target; counts as metrics. */
import type { Context } from 'aws-lambda';
import { z } from 'zod';
import { makeLogger, makeMetrics, metricsPort, publishMetrics } from '../adapters/powertools.js';
import { readRuntimeConfig } from '../adapters/runtime-config.js';
import { makeDeps } from '../adapters/wiring.js';
import { type ExpirySweepReport, expirePendingUploads } from '../core/expiry.js';
import { type ReconcileReport, reconcileTargets } from '../core/reconcile.js';

const config = readRuntimeConfig();
const logger = makeLogger('reconcile');
const metrics = makeMetrics('reconcile');
const port = metricsPort(metrics);
const deps = makeDeps(config, port);

/** A scheduled event carries none of these; a direct invoke may narrow the run. */
const requestSchema = z
  .object({ targetIds: z.array(z.string()).optional(), dryRun: z.boolean().optional() })
  .loose()
  .catch({});

export const handler = async (
  event: unknown,
  context: Context,
): Promise<ReconcileReport & { uploads: ExpirySweepReport }> => {
  logger.addContext(context);
  const request = requestSchema.parse(event);
  try {
    const report = await reconcileTargets(deps, {
      ...(request.targetIds ? { targetIds: request.targetIds } : {}),
      dryRun: request.dryRun ?? false,
    });
    for (const [target, counts] of Object.entries(report.targets)) {
      port.count('ReconcileResent', counts.resent, { target });
      port.count('ReconcileMissing', counts.missing, { target });
      port.count('ReconcileAltered', counts.altered, { target });
    }
    // Pending uploads past their expiry are ended here too (UploadsExpired counts them), not only
    // when their bytes turn up: an abandoned upload leaves nothing behind.
    const uploads = await expirePendingUploads(deps, { dryRun: request.dryRun ?? false });
    logger.info('reconciled', { report, uploads });
    return { ...report, uploads };
  } finally {
    publishMetrics(metrics);
  }
};
