/**
 * EventBridge schedule → per-target replication lag, backlog and agent heartbeat age as CloudWatch
 * metrics; on the way it re-sends changes whose fan-out never completed (the outbox).
 */
import type { Context, ScheduledEvent } from 'aws-lambda';
import { makeLogger, makeMetrics, metricsPort, publishMetrics } from '../adapters/powertools.js';
import { readRuntimeConfig } from '../adapters/runtime-config.js';
import { makeDeps } from '../adapters/wiring.js';
import { measureLag, type TargetLag } from '../core/lag.js';

const config = readRuntimeConfig();
const logger = makeLogger('lag-monitor');
const metrics = makeMetrics('lag-monitor');
const port = metricsPort(metrics);
const { ledger, clock, fanout } = makeDeps(config, port);

export const handler = async (_event: ScheduledEvent, context: Context): Promise<TargetLag[]> => {
  logger.addContext(context);
  try {
    const report = await measureLag({
      ledger,
      clock,
      fanout,
      feedShards: config.feedShards,
      targets: config.targets,
    });
    for (const t of report) {
      const dimensions = { target: t.targetId };
      port.seconds('ReplicationLagSeconds', t.lagSeconds, dimensions);
      port.count('PendingReplications', t.pending, dimensions);
      if (t.kind === 'pull') {
        // A never-seen agent counts as infinitely old: its heartbeat alarm must fire.
        port.seconds('AgentHeartbeatAgeSeconds', t.heartbeatAgeSeconds ?? 86_400 * 365, dimensions);
      }
    }
    logger.info('lag measured', { report });
    return report;
  } finally {
    publishMetrics(metrics);
  }
};
