/**
 * EventBridge schedule → per-target replication lag, backlog and agent heartbeat age as CloudWatch
 * metrics; on the way it re-sends changes whose fan-out never completed (the outbox).
 */
import type { Context, ScheduledEvent } from 'aws-lambda';
import type { Telemetry } from '../adapters/powertools.js';
import { type LagDeps, type LagOptions, measureLag, type TargetLag } from '../core/lag.js';

export interface LagMonitorHandlerDeps extends LagDeps {
  readonly telemetry: Telemetry;
  /** Overrides of the run's budget (tests); the deadline comes from the invocation's remaining time. */
  readonly budget?: Pick<LagOptions, 'callsPerTarget' | 'lookAhead'> | undefined;
}

/**
 * The run stops starting pages this long before the function's timeout: enough to finish the
 * page in flight, save, and publish the metrics (a run cut off by its timeout reports nothing).
 */
export function lagDeadline(context: Pick<Context, 'getRemainingTimeInMillis'>, now = Date.now()): number {
  const remaining = context.getRemainingTimeInMillis();
  return now + remaining - Math.min(Math.max(5_000, remaining / 4), remaining / 2);
}

export function createLagMonitorHandler(
  deps: LagMonitorHandlerDeps,
): (event: ScheduledEvent, context: Context) => Promise<TargetLag[]> {
  const { logger, metrics } = deps.telemetry;
  return async (_event, context) => {
    logger.addContext(context);
    try {
      const started = Date.now();
      const report = await measureLag(deps, { ...deps.budget, deadline: lagDeadline(context) });
      // The monitor's own work: a run that nears its budget or deadline, or a target that stays
      // behind (not caught up run after run), shows here before its lag figures go stale.
      metrics.milliseconds('LagMonitorRunMilliseconds', Date.now() - started);
      metrics.count(
        'LagMonitorLedgerCalls',
        report.reduce((sum, t) => sum + t.ledgerCalls, 0),
      );
      for (const t of report) {
        const dimensions = { target: t.targetId };
        metrics.seconds('ReplicationLagSeconds', t.lagSeconds, dimensions);
        metrics.count('PendingReplications', t.pending, dimensions);
        metrics.count('LagMonitorTargetLedgerCalls', t.ledgerCalls, dimensions);
        metrics.count('LagMonitorCaughtUp', t.caughtUp ? 1 : 0, dimensions);
        if (t.kind === 'pull') {
          // A never-seen agent counts as infinitely old: its heartbeat alarm must fire.
          metrics.seconds('AgentHeartbeatAgeSeconds', t.heartbeatAgeSeconds ?? 86_400 * 365, dimensions);
        }
      }
      logger.info('lag measured', { report });
      return report;
    } finally {
      deps.telemetry.flush();
    }
  };
}
