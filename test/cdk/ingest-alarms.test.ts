/**
 * The ingest alarms' thresholds are construct options (MonitoringOptions; the topology file has no
 * key for them): a Monitoring built with other values alarms on those, and nonsense is refused.
 * The defaults are pinned in test/cdk/monitoring.test.ts.
 */
import { Duration } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { Monitoring, type MonitoringOptions } from '../../lib/constructs/monitoring.js';
import { settingsFromTopology } from '../../lib/grants.js';
import { buildTestApp, props, resourcesOfType, testTopology } from './fixture.js';

type Json = Record<string, unknown>;

/** A second Monitoring in a test app's home stack, named `Custom-…`, with these options. */
function customMonitoring(options: MonitoringOptions) {
  const topology = testTopology();
  const mirror = buildTestApp(topology, { nag: false });
  const { home } = mirror;
  const monitoring = new Monitoring(home, 'CustomMonitoring', {
    ...options,
    namePrefix: 'Custom',
    ledger: home.ledger,
    origin: home.origin,
    targets: home.targets,
    ingest: home.ingest,
    settings: settingsFromTopology(topology),
  });
  return { home, monitoring };
}

const alarmNamed = (template: Template, name: string) =>
  Object.values(resourcesOfType(template, 'AWS::CloudWatch::Alarm'))
    .map((a) => props(a))
    .find((a) => a.AlarmName === name) as Json | undefined;

describe('ingest and pending-upload alarms with options', () => {
  it('thresholds given as options are the alarms’ thresholds', () => {
    const { home } = customMonitoring({
      ingestErrorThreshold: 2,
      ingestQueueAgeThreshold: Duration.minutes(10),
      pendingPastExpiryThreshold: 5,
      reconcileInterval: Duration.minutes(15),
    });
    const template = Template.fromStack(home);
    expect(alarmNamed(template, 'Custom-ingest-errors')).toMatchObject({
      MetricName: 'Errors',
      Threshold: 2,
    });
    expect(alarmNamed(template, 'Custom-ingest-queue-age')).toMatchObject({
      MetricName: 'ApproximateAgeOfOldestMessage',
      Threshold: 600,
    });
    expect(alarmNamed(template, 'Custom-uploads-pending-past-expiry')).toMatchObject({
      MetricName: 'UploadsPendingPastExpiry',
      Threshold: 5,
      Period: 900,
    });
  });

  it('a negative threshold or a queue age that is not positive is refused, naming the option', () => {
    expect(() => customMonitoring({ ingestErrorThreshold: -1 })).toThrow(
      /ingestErrorThreshold: must be 0 or more/,
    );
    expect(() => customMonitoring({ pendingPastExpiryThreshold: Number.NaN })).toThrow(
      /pendingPastExpiryThreshold: must be 0 or more/,
    );
    expect(() => customMonitoring({ ingestQueueAgeThreshold: Duration.seconds(0) })).toThrow(
      /ingestQueueAgeThreshold: must be positive/,
    );
  });
});
