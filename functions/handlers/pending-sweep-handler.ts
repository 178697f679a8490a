/**
 * EventBridge schedule → the lost-notification sweep (core/pending-sweep.ts): pending uploads whose
 * bytes are stored get their S3 event sent to the ingest queue again.
 */
import type { Context } from 'aws-lambda';
import type { Telemetry } from '../adapters/powertools.js';
import {
  type PendingSweepDeps,
  type PendingSweepOptions,
  type PendingSweepReport,
  sweepLostNotifications,
} from '../core/pending-sweep.js';

export interface PendingSweepHandlerDeps extends Omit<PendingSweepDeps, 'metrics'> {
  readonly telemetry: Telemetry;
  /** Overrides of the run's bounds (tests, the local stack); the deadline comes from the invocation. */
  readonly options?: Omit<PendingSweepOptions, 'deadline'> | undefined;
}

/** The run stops starting pages with a quarter of its time left (30 s at most) for the page in flight. */
export function sweepDeadline(context: Pick<Context, 'getRemainingTimeInMillis'>, now = Date.now()): number {
  const remaining = context.getRemainingTimeInMillis();
  return now + remaining - Math.min(remaining / 4, 30_000);
}

export function createPendingSweepHandler(
  deps: PendingSweepHandlerDeps,
): (event: unknown, context: Context) => Promise<PendingSweepReport> {
  const { logger, metrics } = deps.telemetry;
  return async (_event, context) => {
    logger.addContext(context);
    try {
      const report = await sweepLostNotifications(
        { ...deps, metrics },
        { ...deps.options, deadline: sweepDeadline(context) },
      );
      if (report.sent > 0 || report.completionsResent > 0) {
        logger.warn('lost S3 notifications or multipart completions sent again', { report });
      } else logger.info('swept pending uploads', { report });
      return report;
    } finally {
      deps.telemetry.flush();
    }
  };
}
