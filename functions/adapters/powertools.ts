/** Logs and metrics through Powertools for AWS Lambda (EMF lines on stdout). */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Metrics as MetricsPort } from '../core/ports.js';

export const NAMESPACE = 'MediaMirror';

export function makeLogger(serviceName: string): Logger {
  return new Logger({ serviceName });
}

export function makeMetrics(serviceName: string): Metrics {
  return new Metrics({ namespace: NAMESPACE, serviceName });
}

/** The domain's metrics port: metrics with dimensions go out at once in their own EMF line. */
export function metricsPort(metrics: Metrics): MetricsPort {
  const add = (
    name: string,
    unit: (typeof MetricUnit)[keyof typeof MetricUnit],
    value: number,
    dimensions?: Record<string, string>,
  ) => {
    if (dimensions && Object.keys(dimensions).length > 0) {
      const single = metrics.singleMetric();
      single.addDimensions(dimensions);
      single.addMetric(name, unit, value);
    } else {
      metrics.addMetric(name, unit, value);
    }
  };
  return {
    count: (name, value = 1, dimensions) => add(name, MetricUnit.Count, value, dimensions),
    countAtOnce: (name, value = 1) => {
      metrics.addMetric(name, MetricUnit.Count, value);
      metrics.publishStoredMetrics();
    },
    bytes: (name, value, dimensions) => add(name, MetricUnit.Bytes, value, dimensions),
    milliseconds: (name, value, dimensions) => add(name, MetricUnit.Milliseconds, value, dimensions),
    seconds: (name, value, dimensions) => add(name, MetricUnit.Seconds, value, dimensions),
  };
}

/** Flushes buffered metrics; an invocation that recorded none prints nothing. */
export function publishMetrics(metrics: Metrics): void {
  if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
}

/** What a handler logs and counts through, and flushes after each invocation. */
export interface Telemetry {
  readonly logger: Logger;
  readonly metrics: MetricsPort;
  flush(): void;
}

/** A Lambda's telemetry: Powertools' logger and EMF metrics, published after each invocation. */
export function makeTelemetry(logger: Logger, metrics: Metrics): Telemetry {
  return { logger, metrics: metricsPort(metrics), flush: () => publishMetrics(metrics) };
}

/** Telemetry that logs nothing and counts into `metrics` (tests, the CLI). */
export function quietTelemetry(metrics: MetricsPort): Telemetry {
  return { logger: new Logger({ serviceName: 'quiet', logLevel: 'SILENT' }), metrics, flush: () => {} };
}
