/**
 * EventBridge schedule → per-target replication lag, backlog and agent heartbeat age as CloudWatch
 * metrics; on the way it re-sends changes whose fan-out never completed (the outbox).
 */
import type { Context, ScheduledEvent } from 'aws-lambda';
import type { Telemetry } from '../adapters/powertools.js';
import { type LagDeps, measureLag, type TargetLag } from '../core/lag.js';

export interface LagMonitorHandlerDeps extends LagDeps {
  readonly telemetry: Telemetry;
}

export function createLagMonitorHandler(
  deps: LagMonitorHandlerDeps,
): (event: ScheduledEvent, context: Context) => Promise<TargetLag[]> {
  const { logger, metrics } = deps.telemetry;
  return async (_event, context) => {
    logger.addContext(context);
    try {
      const report = await measureLag(deps);
      for (const t of report) {
        const dimensions = { target: t.targetId };
        metrics.seconds('ReplicationLagSeconds', t.lagSeconds, dimensions);
        metrics.count('PendingReplications', t.pending, dimensions);
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
