/**
 * The agent host's wall clock stepped while it runs (NTP correcting a drifted clock, a VM
 * resumed): how long a condition held and how fast files go are time passed, not the jump.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Conditions } from '../../../agent/conditions.ts';
import { createMemoryLog } from '../../../agent/log.ts';
import { RateWindow } from '../../../agent/util.ts';

afterEach(() => {
  vi.useRealTimers();
});

/** Only Date is faked: performance.now() and the timers run as they do. */
const stepWallClock = (ms: number) => vi.setSystemTime(Date.now() + ms);

describe('a wall clock stepped under the agent (probe skew)', () => {
  it('a network outage of a moment is logged as a moment, not the 2 hours the clock jumped (probe skew)', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const log = createMemoryLog();
    const conditions = new Conditions(log);
    conditions.raise('network', new Error('ECONNRESET'));
    stepWallClock(2 * 3600_000);
    conditions.clearRemote();
    const recovered = log.entries.find((e) => e.msg === 'recovered: network');
    expect(recovered?.fields.seconds).toBeLessThan(1);
    expect(recovered?.fields.seconds).toBeGreaterThanOrEqual(0);
  });

  it('files applied a moment ago still count in files/s after the clock jumps a minute ahead (probe skew)', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const files = new RateWindow();
    for (let i = 0; i < 5; i++) files.add();
    stepWallClock(60_000);
    expect(files.perSecond()).toBe(0.5);
  });
});
