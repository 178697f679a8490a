/**
 * The custom metrics the handlers emit, as CloudWatch stores them, so that the
 * alarms and the dashboard ask for exactly those.
 *
 * The handlers write embedded metric format through Powertools
 * (functions/adapters/powertools.ts): namespace `MediaMirror`, and every metric
 * carries the dimension `service` (Powertools adds it: the name each handler
 * passes to `makeMetrics()`) plus, for per-target metrics, `target`. CloudWatch
 * matches a metric on its full set of dimensions, so an alarm that left out
 * `service` would watch a metric that does not exist and never leave
 * INSUFFICIENT_DATA (or, treating missing data as breaching, never leave ALARM).
 */
import type { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';

/** The namespace of every custom metric (functions/adapters/powertools.ts NAMESPACE). */
export const METRICS_NAMESPACE = 'MediaMirror';

/** Each per-target metric and the handler (Powertools `service`) that emits it. */
export const TARGET_METRICS = {
  /** Age in seconds of the oldest committed change the target has not applied (0 when caught up). */
  ReplicationLagSeconds: 'lag-monitor',
  /** Committed changes the target has not applied (counted up to the monitor's look-ahead). */
  PendingReplications: 'lag-monitor',
  /** Pull targets: seconds since the agent's last heartbeat (a year if it never reported). */
  AgentHeartbeatAgeSeconds: 'lag-monitor',
  /** 1 when the monitor's run reached the target's oldest unapplied change (its lag exact), else 0. */
  LagMonitorCaughtUp: 'lag-monitor',
  /** Ledger calls the monitor's run made for the target (bounded by its budget per target). */
  LagMonitorTargetLedgerCalls: 'lag-monitor',
  /** A version that failed to apply (S3 targets; it returns to the queue, then its DLQ). */
  ReplicationFailures: 'replicate',
  FilesReplicated: 'replicate',
  BytesReplicated: 'replicate',
  /** Milliseconds from commit to applied. */
  ReplicationLatency: 'replicate',
  /** Dry-run targets: what would have been applied. */
  ReplicationsPlanned: 'replicate',
} as const;
export type TargetMetricName = keyof typeof TARGET_METRICS;

/** Metrics without a target dimension, and the handler that emits them. */
export const SERVICE_METRICS = {
  /** Ledger calls of one lag-monitor run, every target's together. */
  LagMonitorLedgerCalls: 'lag-monitor',
  /** How long one lag-monitor run took (it stops before its deadline). */
  LagMonitorRunMilliseconds: 'lag-monitor',
  /** An upload refused at ingest (hash or size mismatch, type not allowed, …), per upload. */
  IngestRejected: 'ingest',
  /**
   * Pending uploads reconcile's expiry sweep found past their expiry, per run (0 included): bytes
   * that never came, or came and were not committed. The sweep ends each a day after its expiry.
   */
  UploadsPendingPastExpiry: 'reconcile',
  /** S3 events the pending sweep sent again for stored bytes never ingested, per run (0 included). */
  LostNotificationsResent: 'pending-sweep',
  /** Multipart completions the pending sweep sent again (asked for, never assembled), per run (0 included). */
  LostCompletionsResent: 'pending-sweep',
} as const;
export type ServiceMetricName = keyof typeof SERVICE_METRICS;

export interface MetricOptions {
  readonly statistic: string;
  readonly period: Duration;
  /** Legend label. @default - the metric name */
  readonly label?: string;
}

/** A per-target metric: dimensions `service` and `target`. */
export function targetMetric(
  name: TargetMetricName,
  targetId: string,
  options: MetricOptions,
): cloudwatch.Metric {
  return new cloudwatch.Metric({
    namespace: METRICS_NAMESPACE,
    metricName: name,
    dimensionsMap: { service: TARGET_METRICS[name], target: targetId },
    ...options,
  });
}

/** A metric without a target: dimension `service` only. */
export function serviceMetric(name: ServiceMetricName, options: MetricOptions): cloudwatch.Metric {
  return new cloudwatch.Metric({
    namespace: METRICS_NAMESPACE,
    metricName: name,
    dimensionsMap: { service: SERVICE_METRICS[name] },
    ...options,
  });
}
