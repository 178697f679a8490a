/** The local `/metrics`: functions' EMF lines (Powertools Metrics) mapped to Prometheus series. */
import { describe, expect, it } from 'vitest';
import { readSample } from '../../../cli/prom-text.ts';
import { LocalMetrics, parseEmfLine, toSeconds } from '../../../local/metrics.ts';

/** Lines as Powertools Metrics 2.x prints them (one metric with dimensions per line; the rest flushed together). */
const emf = {
  files: (target: string, n = 1) =>
    `{"_aws":{"Timestamp":1795305396793,"CloudWatchMetrics":[{"Namespace":"MediaMirror","Dimensions":[["service","target"]],"Metrics":[{"Name":"FilesReplicated","Unit":"Count"}]}]},"service":"replicate","target":"${target}","FilesReplicated":${n}}`,
  bytes: (target: string, n: number) =>
    `{"_aws":{"Timestamp":1795305396793,"CloudWatchMetrics":[{"Namespace":"MediaMirror","Dimensions":[["service","target"]],"Metrics":[{"Name":"BytesReplicated","Unit":"Bytes"}]}]},"service":"replicate","target":"${target}","BytesReplicated":${n}}`,
  latency: (target: string, ms: number) =>
    `{"_aws":{"Timestamp":1795305396794,"CloudWatchMetrics":[{"Namespace":"MediaMirror","Dimensions":[["service","target"]],"Metrics":[{"Name":"ReplicationLatency","Unit":"Milliseconds"}]}]},"service":"replicate","target":"${target}","ReplicationLatency":${ms}}`,
  failure: (target: string) =>
    `{"_aws":{"Timestamp":1795305396794,"CloudWatchMetrics":[{"Namespace":"MediaMirror","Dimensions":[["service","target"]],"Metrics":[{"Name":"ReplicationFailures","Unit":"Count"}]}]},"service":"replicate","target":"${target}","ReplicationFailures":1}`,
  ingest:
    '{"_aws":{"Timestamp":1795305396795,"CloudWatchMetrics":[{"Namespace":"MediaMirror","Dimensions":[["service"]],"Metrics":[{"Name":"VersionsCommitted","Unit":"Count"},{"Name":"IngestRejected","Unit":"Count"},{"Name":"BlobsVerified","Unit":"Count"}]}]},"service":"ingest","VersionsCommitted":[1,1],"IngestRejected":3,"BlobsVerified":2}',
  lag: (target: string, name: string, value: number, unit = 'Seconds') =>
    `{"_aws":{"Timestamp":1795305396796,"CloudWatchMetrics":[{"Namespace":"MediaMirror","Dimensions":[["service","target"]],"Metrics":[{"Name":"${name}","Unit":"${unit}"}]}]},"service":"lag-monitor","target":"${target}","${name}":${value}}`,
};

const targets = [
  { id: 'eu-west-1', kind: 's3' as const },
  { id: 'onprem-dc1', kind: 'pull' as const },
];

describe('parseEmfLine', () => {
  it('reads each metric with the dimensions its directive names', () => {
    expect(parseEmfLine(emf.latency('eu-west-1', 420))).toEqual([
      {
        name: 'ReplicationLatency',
        unit: 'Milliseconds',
        value: 420,
        dimensions: { service: 'replicate', target: 'eu-west-1' },
      },
    ]);
  });

  it('one sample per value of a metric recorded several times', () => {
    const samples = parseEmfLine(emf.ingest) ?? [];
    expect(samples.map((s) => [s.name, s.value])).toEqual([
      ['VersionsCommitted', 1],
      ['VersionsCommitted', 1],
      ['IngestRejected', 3],
      ['BlobsVerified', 2],
    ]);
    expect(samples[0]?.dimensions).toEqual({ service: 'ingest' });
  });

  it('anything that is not an EMF record is not one', () => {
    for (const line of [
      '',
      'plain text with "_aws" in it',
      '{"level":"INFO","message":"replicated","_aws":"not an object"}',
      '{"_aws":{"Timestamp":1}}',
      '{"_aws":{"CloudWatchMetrics":[',
      '[{"_aws":{"CloudWatchMetrics":[]}}]',
      '{"level":"INFO","message":"lag measured"}',
    ]) {
      expect(parseEmfLine(line)).toBeUndefined();
    }
    // A directive naming a metric the record lacks, or a non-numeric value: no sample.
    expect(
      parseEmfLine(
        '{"_aws":{"CloudWatchMetrics":[{"Dimensions":[[]],"Metrics":[{"Name":"A"},{"Name":"B"},{"Name":7}]}]},"B":"x"}',
      ),
    ).toEqual([]);
  });

  it('converts units to seconds', () => {
    expect(toSeconds(1500, 'Milliseconds')).toBe(1.5);
    expect(toSeconds(2_000_000, 'Microseconds')).toBe(2);
    expect(toSeconds(7, 'Seconds')).toBe(7);
    expect(toSeconds(7, undefined)).toBe(7);
  });
});

describe('LocalMetrics', () => {
  it('every target shows from the first scrape, at zero', async () => {
    const text = await new LocalMetrics({ targets }).text();
    for (const name of [
      'mirror_files_replicated_total',
      'mirror_bytes_replicated_total',
      'mirror_failed_replications_total',
    ]) {
      for (const t of targets) expect(readSample(text, name, { target: t.id })).toBe(0);
    }
    expect(readSample(text, 'mirror_ingest_rejections_total')).toBe(0);
    expect(readSample(text, 'mirror_versions_committed_total')).toBe(0);
  });

  it('counters add up, latency milliseconds become seconds in the histogram, lag gauges keep the last value', async () => {
    const m = new LocalMetrics({ targets });
    for (const line of [
      emf.files('eu-west-1'),
      emf.files('eu-west-1', 2),
      emf.bytes('eu-west-1', 1000),
      emf.bytes('eu-west-1', 24),
      emf.latency('eu-west-1', 420),
      emf.latency('eu-west-1', 3000),
      emf.failure('eu-west-1'),
      emf.failure('eu-west-1'),
      emf.ingest,
      emf.lag('onprem-dc1', 'ReplicationLagSeconds', 12.5),
      emf.lag('onprem-dc1', 'ReplicationLagSeconds', 17.5),
      emf.lag('onprem-dc1', 'PendingReplications', 4, 'Count'),
      emf.lag('onprem-dc1', 'AgentHeartbeatAgeSeconds', 31),
      emf.lag('eu-west-1', 'ReplicationLagSeconds', 0),
      '{"level":"INFO","message":"replicated"}',
      'not json',
    ]) {
      m.observeLine(line);
    }
    expect(m.records).toBe(14);
    const text = await m.text();
    const value = (name: string, labels: Record<string, string> = {}) => readSample(text, name, labels);
    expect(value('mirror_files_replicated_total', { target: 'eu-west-1' })).toBe(3);
    expect(value('mirror_bytes_replicated_total', { target: 'eu-west-1' })).toBe(1024);
    expect(value('mirror_failed_replications_total', { target: 'eu-west-1' })).toBe(2);
    expect(value('mirror_failed_replications_total', { target: 'onprem-dc1' })).toBe(0);
    expect(value('mirror_versions_committed_total')).toBe(2);
    expect(value('mirror_ingest_rejections_total')).toBe(3);
    expect(value('mirror_replication_latency_seconds_count', { target: 'eu-west-1' })).toBe(2);
    expect(value('mirror_replication_latency_seconds_sum', { target: 'eu-west-1' })).toBeCloseTo(3.42);
    expect(value('mirror_replication_latency_seconds_bucket', { target: 'eu-west-1', le: '0.25' })).toBe(0);
    expect(value('mirror_replication_latency_seconds_bucket', { target: 'eu-west-1', le: '0.5' })).toBe(1);
    expect(value('mirror_replication_latency_seconds_bucket', { target: 'eu-west-1', le: '5' })).toBe(2);
    expect(value('mirror_replication_lag_seconds', { target: 'onprem-dc1' })).toBe(17.5);
    expect(value('mirror_replication_lag_seconds', { target: 'eu-west-1' })).toBe(0);
    expect(value('mirror_pending_replications', { target: 'onprem-dc1' })).toBe(4);
    expect(value('mirror_agent_heartbeat_age_seconds', { target: 'onprem-dc1' })).toBe(31);
    expect(text).toContain('# TYPE mirror_replication_latency_seconds histogram');
    expect(text).toContain('# TYPE mirror_files_replicated_total counter');
  });

  it('says when the lag monitor last measured each target: 0 until it has, so a stopped monitor shows', async () => {
    // The lag gauges keep their last value: a lag monitor that fails every run (or whose schedule
    // stopped) left 0 there while the backlog grew, and nothing in /metrics told the difference.
    const m = new LocalMetrics({ targets });
    const first = await m.text();
    for (const t of targets)
      expect(readSample(first, 'mirror_lag_measured_timestamp_seconds', { target: t.id })).toBe(0);
    const before = Date.now() / 1000;
    m.observeLine(emf.lag('eu-west-1', 'ReplicationLagSeconds', 0));
    const after = Date.now() / 1000;
    const text = await m.text();
    const at = readSample(text, 'mirror_lag_measured_timestamp_seconds', { target: 'eu-west-1' }) ?? 0;
    expect(at).toBeGreaterThanOrEqual(Math.floor(before));
    expect(at).toBeLessThanOrEqual(after);
    expect(readSample(text, 'mirror_lag_measured_timestamp_seconds', { target: 'onprem-dc1' })).toBe(0);
    expect(text).toContain('# TYPE mirror_lag_measured_timestamp_seconds gauge');
  });
  it("an in-process agent's outcomes count for its pull target", async () => {
    const m = new LocalMetrics({ targets });
    const now = Date.parse('2026-01-01T00:00:10Z');
    m.observeAgentOutcome('onprem-dc1', { kind: 'applied', bytes: 500 }, '2026-01-01T00:00:08Z', now);
    m.observeAgentOutcome('onprem-dc1', { kind: 'deleted' }, '2026-01-01T00:00:09Z', now);
    m.observeAgentOutcome('onprem-dc1', { kind: 'skipped' }, '2026-01-01T00:00:09Z', now);
    m.observeAgentOutcome('onprem-dc1', { kind: 'refused' }, '2026-01-01T00:00:09Z', now);
    m.observeAgentOutcome('onprem-dc1', { kind: 'failed' }, '2026-01-01T00:00:09Z', now);
    const text = await m.text();
    expect(readSample(text, 'mirror_files_replicated_total', { target: 'onprem-dc1' })).toBe(2);
    expect(readSample(text, 'mirror_bytes_replicated_total', { target: 'onprem-dc1' })).toBe(500);
    expect(readSample(text, 'mirror_failed_replications_total', { target: 'onprem-dc1' })).toBe(2);
    expect(readSample(text, 'mirror_replication_latency_seconds_sum', { target: 'onprem-dc1' })).toBe(3);
  });

  it('reads every DLQ at scrape time; one that cannot be read is reported and left out', async () => {
    const depths: Record<string, number> = { 'http://q/ingest-dlq': 0, 'http://q/eu-dlq': 3 };
    const errors: string[] = [];
    let reads = 0;
    const m = new LocalMetrics({
      targets,
      dlqs: [
        { queue: 'mirror-ingest-dlq', url: 'http://q/ingest-dlq' },
        { queue: 'mirror-target-eu-west-1-dlq.fifo', url: 'http://q/eu-dlq', target: 'eu-west-1' },
        { queue: 'mirror-target-onprem-dc1-dlq.fifo', url: 'http://q/gone', target: 'onprem-dc1' },
      ],
      queueDepth: async (url) => {
        reads++;
        const n = depths[url];
        if (n === undefined) throw new Error('AWS.SimpleQueueService.NonExistentQueue');
        return n;
      },
      onError: (e) => errors.push(e.message),
    });
    let text = await m.text();
    expect(readSample(text, 'mirror_dlq_messages', { queue: 'mirror-ingest-dlq' })).toBe(0);
    expect(readSample(text, 'mirror_dlq_messages', { target: 'eu-west-1' })).toBe(3);
    expect(readSample(text, 'mirror_dlq_messages', { target: 'onprem-dc1' })).toBeUndefined();
    expect(errors).toEqual([
      'reading the depth of mirror-target-onprem-dc1-dlq.fifo failed: AWS.SimpleQueueService.NonExistentQueue',
    ]);
    depths['http://q/eu-dlq'] = 0;
    text = await m.text();
    expect(readSample(text, 'mirror_dlq_messages', { target: 'eu-west-1' })).toBe(0);
    expect(reads).toBe(6);
  });

  it('a DLQ read before that cannot be read now is left out, not shown at its last depth (probe ops2)', async () => {
    // The gauge kept the depth of the last read that worked: with the queue gone (deleted on a
    // local stack), /metrics and status went on saying 0 parked at every scrape.
    let readable = true;
    const m = new LocalMetrics({
      targets,
      dlqs: [{ queue: 'mirror-target-eu-west-1-dlq.fifo', url: 'http://q/eu-dlq', target: 'eu-west-1' }],
      queueDepth: async () => {
        if (!readable) throw new Error('AWS.SimpleQueueService.NonExistentQueue');
        return 0;
      },
      onError: () => undefined,
    });
    expect(readSample(await m.text(), 'mirror_dlq_messages', { target: 'eu-west-1' })).toBe(0);
    readable = false;
    expect(readSample(await m.text(), 'mirror_dlq_messages', { target: 'eu-west-1' })).toBeUndefined();
    readable = true;
    expect(readSample(await m.text(), 'mirror_dlq_messages', { target: 'eu-west-1' })).toBe(0);
  });
});

describe('readSample', () => {
  it('finds a series by name and labels, escapes included', () => {
    const text = [
      '# HELP x_total a counter',
      '# TYPE x_total counter',
      'x_total{target="a"} 1',
      'x_total{target="b",queue="q \\"1\\""} 2.5',
      'y 7',
    ].join('\n');
    expect(readSample(text, 'x_total', { target: 'b' })).toBe(2.5);
    expect(readSample(text, 'x_total', { queue: 'q "1"' })).toBe(2.5);
    expect(readSample(text, 'x_total')).toBe(1);
    expect(readSample(text, 'y')).toBe(7);
    expect(readSample(text, 'x_total', { target: 'c' })).toBeUndefined();
    expect(readSample(text, 'x')).toBeUndefined();
  });
});
