/**
 * The local stand-in for CloudWatch metrics: `GET /metrics` in Prometheus text format.
 *
 * The functions publish embedded-metric-format (EMF) lines on stdout, as they do on
 * Lambda (Powertools Metrics). Every stdout line that is a JSON object with an
 * `_aws.CloudWatchMetrics` key is read here and mapped to Prometheus series; the DLQ
 * depths are read from SQS when scraped, as CloudWatch's SQS metrics would show them.
 *
 * Every configured target's series exist from the first scrape, so that an `absent()` alert
 * means a target is missing from the configuration, not that the lag monitor has not run yet.
 * Counters start at 0. The lag monitor's gauges (lag, pending, heartbeat age) start at NaN,
 * "not measured yet": 0 would claim a target caught up before anything measured it, and a
 * comparison with NaN is false, so `lag > 900` neither fires nor clears on it.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Latency buckets in seconds: sub-second copies up to S3 RTC's 15-minute bar and beyond. */
export const LATENCY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];

/** One metric value of an EMF record, with the record's dimensions. */
export interface EmfSample {
  readonly name: string;
  readonly unit: string | undefined;
  readonly value: number;
  readonly dimensions: Readonly<Record<string, string>>;
}

interface MetricDirective {
  readonly Dimensions?: unknown;
  readonly Metrics?: unknown;
}

/**
 * The samples of one log line, or undefined when the line is not an EMF record.
 * A metric recorded more than once in an invocation carries an array of values: one sample each.
 */
export function parseEmfLine(line: string): EmfSample[] | undefined {
  const text = line.trim();
  if (!text.startsWith('{') || !text.includes('"_aws"')) return undefined;
  let record: unknown;
  try {
    record = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (record === null || typeof record !== 'object' || Array.isArray(record)) return undefined;
  const fields = record as Record<string, unknown>;
  const aws = fields._aws as { CloudWatchMetrics?: unknown } | undefined;
  if (aws === null || typeof aws !== 'object' || !Array.isArray(aws.CloudWatchMetrics)) return undefined;

  return (aws.CloudWatchMetrics as MetricDirective[]).flatMap((directive) =>
    directive === null || typeof directive !== 'object' ? [] : directiveSamples(directive, fields),
  );
}

const arrayOrEmpty = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);

/** The samples one CloudWatchMetrics directive selects from the record's fields. */
function directiveSamples(directive: MetricDirective, fields: Record<string, unknown>): EmfSample[] {
  const dimensions = directiveDimensions(directive, fields);
  return arrayOrEmpty(directive.Metrics).flatMap((metric) => {
    const { Name, Unit } = (metric ?? {}) as { Name?: unknown; Unit?: unknown };
    if (typeof Name !== 'string') return [];
    const raw = fields[Name];
    const values = Array.isArray(raw) ? raw : [raw];
    const unit = typeof Unit === 'string' ? Unit : undefined;
    return values
      .filter((value): value is number => typeof value === 'number' && Number.isFinite(value))
      .map((value) => ({ name: Name, unit, value, dimensions }));
  });
}

function directiveDimensions(
  directive: MetricDirective,
  fields: Record<string, unknown>,
): Record<string, string> {
  const dimensions: Record<string, string> = {};
  for (const set of arrayOrEmpty(directive.Dimensions)) {
    for (const key of arrayOrEmpty(set)) {
      const value = fields[String(key)];
      if (typeof value === 'string') dimensions[String(key)] = value;
    }
  }
  return dimensions;
}

/** Converts an EMF value to seconds by its unit (Powertools writes `Milliseconds`, `Seconds`...). */
export function toSeconds(value: number, unit: string | undefined): number {
  switch (unit) {
    case 'Milliseconds':
      return value / 1000;
    case 'Microseconds':
      return value / 1_000_000;
    default:
      return value;
  }
}

export interface DlqRef {
  /** Queue name, the `queue` label. */
  readonly queue: string;
  readonly url: string;
  /** The target whose DLQ it is; absent for the ingest DLQ. */
  readonly target?: string | undefined;
}

/**
 * The value of a lag-monitor gauge no run has set yet: not measured. prom-client writes it `Nan`,
 * which Prometheus reads as NaN (its parser takes special values in any case).
 */
export const NOT_MEASURED = Number.NaN;

export interface LocalMetricsOptions {
  /**
   * The configured targets: their series show from the first scrape, counters at 0, the lag
   * monitor's gauges at NOT_MEASURED (the heartbeat age for pull targets only).
   */
  readonly targets: readonly { readonly id: string; readonly kind: 's3' | 'pull' }[];
  /** Messages in a queue, waiting or being read, read at scrape time. */
  readonly queueDepth?: (url: string) => Promise<number>;
  readonly dlqs?: readonly DlqRef[];
  /** A DLQ that could not be read. */
  readonly onError?: (error: Error) => void;
}

export class LocalMetrics {
  readonly registry = new Registry();
  readonly contentType: string = this.registry.contentType;
  private readonly filesReplicated: Counter<'target'>;
  private readonly bytesReplicated: Counter<'target'>;
  private readonly failedReplications: Counter<'target'>;
  private readonly ingestRejections: Counter;
  private readonly versionsCommitted: Counter;
  private readonly uploadsExpired: Counter;
  private readonly lostNotificationsResent: Counter;
  private readonly lostCompletionsResent: Counter;
  private readonly latency: Histogram<'target'>;
  private readonly lag: Gauge<'target'>;
  private readonly pending: Gauge<'target'>;
  private readonly heartbeatAge: Gauge<'target'>;
  private readonly lagMeasuredAt: Gauge<'target'>;
  private readonly pendingPastExpiry: Gauge;
  /** EMF records read (all, not only the mapped ones). */
  records = 0;

  constructor(options: LocalMetricsOptions) {
    const registers = [this.registry];
    this.filesReplicated = new Counter({
      name: 'mirror_files_replicated_total',
      help: 'Versions applied at a target (FilesReplicated; pull targets: the local agents).',
      labelNames: ['target'],
      registers,
    });
    this.bytesReplicated = new Counter({
      name: 'mirror_bytes_replicated_total',
      help: 'Bytes written at a target (BytesReplicated; pull targets: the local agents).',
      labelNames: ['target'],
      registers,
    });
    this.failedReplications = new Counter({
      name: 'mirror_failed_replications_total',
      help: 'Failed attempts to apply a version at a target (ReplicationFailures).',
      labelNames: ['target'],
      registers,
    });
    this.ingestRejections = new Counter({
      name: 'mirror_ingest_rejections_total',
      help: 'Uploads rejected at ingest (IngestRejected).',
      registers,
    });
    this.versionsCommitted = new Counter({
      name: 'mirror_versions_committed_total',
      help: 'Versions committed by the ingest (VersionsCommitted).',
      registers,
    });
    this.uploadsExpired = new Counter({
      name: 'mirror_uploads_expired_total',
      help: 'Pending uploads ended as expired, never committed (UploadsExpired).',
      registers,
    });
    this.lostNotificationsResent = new Counter({
      name: 'mirror_lost_notifications_resent_total',
      help: 'S3 events of stored bytes the lost-notification sweep sent to the ingest (LostNotificationsResent).',
      registers,
    });
    this.lostCompletionsResent = new Counter({
      name: 'mirror_lost_completions_resent_total',
      help: 'Multipart completions the lost-notification sweep sent to the completion queue again (LostCompletionsResent).',
      registers,
    });
    this.latency = new Histogram({
      name: 'mirror_replication_latency_seconds',
      help: 'Commit to applied at the target (ReplicationLatency).',
      labelNames: ['target'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.lag = new Gauge({
      name: 'mirror_replication_lag_seconds',
      help: 'Age of the oldest committed change the target has not applied (lag monitor, ReplicationLagSeconds).',
      labelNames: ['target'],
      registers,
    });
    this.pending = new Gauge({
      name: 'mirror_pending_replications',
      help: 'Committed changes the target has not applied (lag monitor, PendingReplications).',
      labelNames: ['target'],
      registers,
    });
    this.heartbeatAge = new Gauge({
      name: 'mirror_agent_heartbeat_age_seconds',
      help: "Seconds since a pull target's agent last reported (lag monitor, AgentHeartbeatAgeSeconds).",
      labelNames: ['target'],
      registers,
    });
    // The lag gauges keep their last value: without this, a lag monitor that stopped (failing every
    // run, its schedule gone) left them at 0 while the backlog grew. CloudWatch tells it by missing
    // data, which the lag alarm treats as breaching; here `time() - this > 180` does.
    this.lagMeasuredAt = new Gauge({
      name: 'mirror_lag_measured_timestamp_seconds',
      help: 'When the lag monitor last measured the target (Unix seconds; 0: never). The lag and pending gauges are as of then.',
      labelNames: ['target'],
      registers,
    });
    this.pendingPastExpiry = new Gauge({
      name: 'mirror_uploads_pending_past_expiry',
      help: "Pending uploads past their expiry, as reconcile's expiry sweep last found them (UploadsPendingPastExpiry; NaN until its first run).",
      registers,
    });
    const dlqs = options.dlqs ?? [];
    const depth = options.queueDepth;
    new Gauge({
      name: 'mirror_dlq_messages',
      help: 'Messages in a dead-letter queue, waiting or being read (SQS ApproximateNumberOfMessages + ApproximateNumberOfMessagesNotVisible, read at scrape time).',
      labelNames: ['queue', 'target'],
      registers,
      async collect() {
        if (!depth) return;
        const read = await Promise.all(
          dlqs.map(async (dlq) => {
            try {
              return { dlq, n: await depth(dlq.url) };
            } catch (err) {
              options.onError?.(
                new Error(`reading the depth of ${dlq.queue} failed: ${(err as Error).message}`, {
                  cause: err,
                }),
              );
              return undefined;
            }
          }),
        );
        // Only this scrape's reads, set at once: a DLQ that cannot be read now is left out, not
        // shown at the depth of the last read that worked.
        this.reset();
        for (const r of read) {
          if (r === undefined) continue;
          const { dlq, n } = r;
          this.set(
            dlq.target === undefined ? { queue: dlq.queue } : { queue: dlq.queue, target: dlq.target },
            n,
          );
        }
      },
    });

    this.showFromTheStart(options.targets);
  }

  /** Every series at its starting value, every configured target's included (see the file's header). */
  private showFromTheStart(targets: LocalMetricsOptions['targets']): void {
    for (const t of targets) {
      this.filesReplicated.labels(t.id).inc(0);
      this.bytesReplicated.labels(t.id).inc(0);
      this.failedReplications.labels(t.id).inc(0);
      this.lag.labels(t.id).set(NOT_MEASURED);
      this.pending.labels(t.id).set(NOT_MEASURED);
      this.lagMeasuredAt.labels(t.id).set(0);
      if (t.kind === 'pull') this.heartbeatAge.labels(t.id).set(NOT_MEASURED);
    }
    this.pendingPastExpiry.set(NOT_MEASURED);
    this.ingestRejections.inc(0);
    this.versionsCommitted.inc(0);
    this.uploadsExpired.inc(0);
    this.lostNotificationsResent.inc(0);
    this.lostCompletionsResent.inc(0);
  }

  /** Feeds one line a function wrote on stdout; anything but an EMF record is ignored. */
  observeLine(line: string): void {
    const samples = parseEmfLine(line);
    if (samples === undefined) return;
    this.records++;
    for (const sample of samples) this.observe(sample);
  }

  /** Applies one EMF sample to its Prometheus series (unknown names are ignored). */
  observe(sample: EmfSample): void {
    const target = sample.dimensions.target;
    if (this.observeGlobal(sample) || target === undefined) return;
    this.observeTarget(sample, target);
  }

  /** Series without a target label; false when the sample is not one of theirs. */
  private observeGlobal({ name, value }: EmfSample): boolean {
    if (name === 'UploadsPendingPastExpiry') {
      this.pendingPastExpiry.set(value);
      return true;
    }
    const counters: Record<string, Counter | undefined> = {
      VersionsCommitted: this.versionsCommitted,
      IngestRejected: this.ingestRejections,
      UploadsExpired: this.uploadsExpired,
      LostNotificationsResent: this.lostNotificationsResent,
      LostCompletionsResent: this.lostCompletionsResent,
    };
    const counter = Object.hasOwn(counters, name) ? counters[name] : undefined;
    if (counter === undefined) return false;
    if (value > 0) counter.inc(value);
    return true;
  }

  private observeTarget(sample: EmfSample, target: string): void {
    const value = sample.value;
    switch (sample.name) {
      case 'FilesReplicated':
        if (value > 0) this.filesReplicated.labels(target).inc(value);
        break;
      case 'BytesReplicated':
        if (value > 0) this.bytesReplicated.labels(target).inc(value);
        break;
      case 'ReplicationFailures':
        if (value > 0) this.failedReplications.labels(target).inc(value);
        break;
      case 'ReplicationLatency':
        this.latency.labels(target).observe(Math.max(0, toSeconds(value, sample.unit ?? 'Milliseconds')));
        break;
      case 'ReplicationLagSeconds':
        this.lag.labels(target).set(toSeconds(value, sample.unit));
        this.lagMeasuredAt.labels(target).set(Math.floor(Date.now() / 1000));
        break;
      case 'PendingReplications':
        this.pending.labels(target).set(value);
        break;
      case 'AgentHeartbeatAgeSeconds':
        this.heartbeatAge.labels(target).set(toSeconds(value, sample.unit));
        break;
      default:
        break;
    }
  }

  /**
   * An in-process agent settled a version (the agent emits no EMF): applied files count as
   * replicated (bytes, latency from the commit), refused and failed ones as failures.
   */
  observeAgentOutcome(
    target: string,
    outcome: { kind: string; bytes?: number },
    committedAt: string,
    now: number = Date.now(),
  ): void {
    switch (outcome.kind) {
      case 'applied':
      case 'deleted': {
        this.filesReplicated.labels(target).inc();
        if (outcome.bytes !== undefined && outcome.bytes > 0)
          this.bytesReplicated.labels(target).inc(outcome.bytes);
        const committed = Date.parse(committedAt);
        if (Number.isFinite(committed))
          this.latency.labels(target).observe(Math.max(0, (now - committed) / 1000));
        break;
      }
      case 'refused':
      case 'failed':
        this.failedReplications.labels(target).inc();
        break;
      default:
        break;
    }
  }

  /** The exposition text (polls the DLQs first). */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}
