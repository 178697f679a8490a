/**
 * `sync --wait`'s waiting (cli/sync-wait.ts) against a fake API on a virtual clock: it returns
 * once every selecting target holds every file, asks no more about a file every target holds,
 * lets fresh lag figures vouch for a whole target, and on a timeout names the targets and files
 * still behind.
 */
import { describe, expect, it } from 'vitest';
import {
  formatWaitReport,
  type WaitClient,
  waitForTargets,
  waitTimeoutMessage,
} from '../../../cli/sync-wait.ts';
import type { Clock } from '../../../cli/upload.ts';
import type { FileStatus, TargetList } from '../../../contracts/api.ts';

type Target = TargetList['targets'][number];
type Lag = Target['lag'];

/** A virtual clock (ms) that also maps to the API's wall clock. */
function virtualClock(): Clock & { t: number; iso: () => string } {
  const clock = {
    t: 0,
    now: () => clock.t,
    sleep: async (ms: number) => {
      clock.t += ms;
    },
    iso: () => new Date(Date.UTC(2026, 10, 30) + clock.t).toISOString(),
  };
  return clock;
}

interface FakeMirror {
  targets: { id: string; kind: 's3' | 'pull'; pathPrefix?: string; dryRun?: true }[];
  /** The version a target has applied of a path at virtual time t. */
  applied: (target: string, path: string, t: number) => number;
  lag?: (target: string, t: number) => Lag;
  failure?: (target: string, path: string) => string | undefined;
}

function fakeApi(clock: ReturnType<typeof virtualClock>, mirror: FakeMirror) {
  const calls = { getFile: [] as string[], listTargets: 0 };
  const noLag: Lag = { lagSeconds: 0, pending: 0, pendingCapped: false };
  const client: WaitClient = {
    async health() {
      return { status: 'ok', time: clock.iso() };
    },
    async listTargets() {
      calls.listTargets++;
      return {
        targets: mirror.targets.map((t) => ({ ...t, lag: mirror.lag?.(t.id, clock.t) ?? noLag })),
      };
    },
    async getFile(path: string): Promise<FileStatus> {
      calls.getFile.push(path);
      clock.t += 5;
      return {
        path,
        head: {
          version: 1,
          sha256: 'a'.repeat(64),
          size: 1,
          contentType: 'image/jpeg',
          committedAt: clock.iso(),
          deleted: false,
        },
        targets: mirror.targets
          .filter((t) => t.pathPrefix === undefined || path.startsWith(t.pathPrefix))
          .map((t) => {
            const failure = mirror.failure?.(t.id, path);
            return {
              id: t.id,
              kind: t.kind,
              appliedVersion: mirror.applied(t.id, path, clock.t),
              status: 'copied' as const,
              appliedAt: null,
              ...(failure === undefined ? {} : { failure: { version: 1, reason: failure, at: clock.iso() } }),
            };
          }),
      };
    },
  } as unknown as WaitClient;
  return { client, calls };
}

const items = (n: number, version = 1) =>
  Array.from({ length: n }, (_, i) => ({ path: `photos/${String(i).padStart(3, '0')}.jpg`, version }));

describe('waitForTargets', () => {
  it('returns once every target holds every file, and asks no more about a file every target holds', async () => {
    const clock = virtualClock();
    // The S3 target holds everything at once; the agent gets one file per 200 ms.
    const { client, calls } = fakeApi(clock, {
      targets: [
        { id: 'eu-west-1', kind: 's3' },
        { id: 'onprem', kind: 'pull' },
      ],
      applied: (target, path, t) => (target === 'eu-west-1' || Number(path.slice(7, 10)) * 200 < t ? 1 : 0),
    });
    const report = await waitForTargets({ client, clock }, items(20), { timeoutSeconds: 60 });
    expect(report.timedOut).toBe(false);
    expect(report.behindFiles).toBe(0);
    expect(report.targets).toEqual([
      { id: 'eu-west-1', kind: 's3', files: 20, held: 20, seconds: expect.any(Number) },
      { id: 'onprem', kind: 'pull', files: 20, held: 20, seconds: expect.any(Number) },
    ]);
    const [s3, agent] = report.targets;
    expect(s3?.seconds).toBeLessThan(1);
    // The last file is held from 3.8 s on; the wait saw it within a round's pause (at most 5 s).
    expect(agent?.seconds).toBeGreaterThanOrEqual(3.8);
    expect(agent?.seconds).toBeLessThan(9);
    // Every file was asked for once it was held and never again.
    const asked = new Map<string, number>();
    for (const p of calls.getFile) asked.set(p, (asked.get(p) ?? 0) + 1);
    const lastAsks = [...asked.keys()].map((p) => calls.getFile.lastIndexOf(p));
    expect(new Set(lastAsks).size).toBe(20);
    // Far fewer requests than one per file per round.
    expect(calls.getFile.length).toBeLessThan(20 * 3);
    expect(report.requests).toBe(calls.getFile.length + calls.listTargets + 1);
    expect(formatWaitReport(report)).toMatch(
      /^target eu-west-1 \(s3\): 20\/20 file\(s\) held, after 0\.\d s\ntarget onprem \(pull\): 20\/20 file\(s\) held, after \d\.\d s$/,
    );
  });

  it('times out naming the targets and the files still behind, with their last failure', async () => {
    const clock = virtualClock();
    const { client } = fakeApi(clock, {
      targets: [
        { id: 'eu-west-1', kind: 's3' },
        { id: 'onprem', kind: 'pull' },
      ],
      // The agent never gets photos/003.jpg and photos/007.jpg.
      applied: (target, path) => (target === 'onprem' && /00[37]/.test(path) ? 0 : 1),
      failure: (target, path) => (target === 'onprem' && path.includes('007') ? 'disk full' : undefined),
    });
    const report = await waitForTargets({ client, clock }, items(10), { timeoutSeconds: 5 });
    expect(report.timedOut).toBe(true);
    expect(clock.t).toBeGreaterThanOrEqual(5000);
    expect(clock.t).toBeLessThan(6000);
    expect(report.targets.map((t) => [t.id, t.held, t.files, t.seconds === null])).toEqual([
      ['eu-west-1', 10, 10, false],
      ['onprem', 8, 10, true],
    ]);
    expect(report.behindFiles).toBe(2);
    expect(report.behind).toEqual([
      { path: 'photos/003.jpg', version: 1, targets: [{ id: 'onprem', appliedVersion: 0 }] },
      {
        path: 'photos/007.jpg',
        version: 1,
        targets: [{ id: 'onprem', appliedVersion: 0, failure: 'disk full' }],
      },
    ]);
    expect(waitTimeoutMessage(report)).toBe(
      'not every target holds the files after 5 s: onprem (2 of 10 behind, e.g. photos/003.jpg, photos/007.jpg)',
    );
    expect(formatWaitReport(report)).toContain(
      'behind: photos/007.jpg v1: onprem has v0 (last failure: disk full)',
    );
  });

  it("names the pull target's agent's conditions (disk full, read-only) while its files wait, which no file's row says (probe C1)", async () => {
    const clock = virtualClock();
    const { client } = fakeApi(clock, {
      targets: [
        { id: 'eu-west-1', kind: 's3' },
        { id: 'onprem', kind: 'pull' },
      ],
      applied: (target) => (target === 'onprem' ? 0 : 1),
      lag: (target) => ({
        lagSeconds: 30,
        pending: 3,
        pendingCapped: false,
        ...(target === 'onprem' ? { agentConditions: ['disk-full'] } : {}),
      }),
    });
    const report = await waitForTargets({ client, clock }, items(3), { timeoutSeconds: 5 });
    expect(report.timedOut).toBe(true);
    expect(report.targets.find((t) => t.id === 'onprem')?.agentConditions).toEqual(['disk-full']);
    expect(report.targets.find((t) => t.id === 'eu-west-1')?.agentConditions).toBeUndefined();
    expect(formatWaitReport(report)).toContain(
      'target onprem (pull): 0/3 file(s) held, not all within 5 s; its agent reports disk-full',
    );
    expect(waitTimeoutMessage(report)).toMatch(
      /onprem \(3 of 3 behind, e\.g\. .*\); its agent reports disk-full$/,
    );
  });

  it('takes a newer version at the target as holding the file (someone changed it since)', async () => {
    const clock = virtualClock();
    const { client } = fakeApi(clock, { targets: [{ id: 'eu-west-1', kind: 's3' }], applied: () => 3 });
    const report = await waitForTargets({ client, clock }, items(3, 2), { timeoutSeconds: 5 });
    expect(report.timedOut).toBe(false);
    expect(report.targets[0]?.held).toBe(3);
  });

  it('lets lag figures measured after the commits (whole feed read, nothing pending) vouch for a whole target', async () => {
    const clock = virtualClock();
    const start = clock.iso();
    const { client, calls } = fakeApi(clock, {
      targets: [{ id: 'eu-west-1', kind: 's3' }],
      // Per file, the target looks behind for a minute; its lag monitor measures every 3 s.
      applied: (_target, _path, t) => (t > 60_000 ? 1 : 0),
      lag: (_target, t) => ({
        lagSeconds: 0,
        pending: 0,
        pendingCapped: false,
        caughtUp: true,
        measuredAt: new Date(Date.parse(start) + Math.floor(t / 3000) * 3000).toISOString(),
      }),
    });
    const report = await waitForTargets({ client, clock }, items(500), { timeoutSeconds: 60 });
    expect(report.timedOut).toBe(false);
    expect(report.targets[0]).toMatchObject({ held: 500, files: 500 });
    // Vouched for by the first measurement that started 2 s (the margin) after the wait began.
    expect(clock.t).toBeGreaterThanOrEqual(3000);
    expect(clock.t).toBeLessThan(8000);
    expect(calls.getFile.length).toBeLessThan(50);
  });

  it('does not let lag figures vouch when measured before the commits, or still counting a backlog', async () => {
    for (const lag of [
      {
        lagSeconds: 0,
        pending: 0,
        pendingCapped: false,
        caughtUp: true,
        measuredAt: '2026-11-29T00:00:00.000Z',
      },
      {
        lagSeconds: 3,
        pending: 1,
        pendingCapped: false,
        caughtUp: true,
        measuredAt: '2027-01-01T00:00:00.000Z',
      },
      {
        lagSeconds: 3,
        pending: 0,
        pendingCapped: true,
        caughtUp: false,
        measuredAt: '2027-01-01T00:00:00.000Z',
      },
      { lagSeconds: 0, pending: 0, pendingCapped: false },
    ]) {
      const clock = virtualClock();
      const { client } = fakeApi(clock, {
        targets: [{ id: 'eu-west-1', kind: 's3' }],
        applied: () => 0,
        lag: () => lag,
      });
      const report = await waitForTargets({ client, clock }, items(5), { timeoutSeconds: 3 });
      expect({ lag, timedOut: report.timedOut, held: report.targets[0]?.held }).toEqual({
        lag,
        timedOut: true,
        held: 0,
      });
    }
  });

  it('waits only for the targets that select a path, and not for dry-run targets', async () => {
    const clock = virtualClock();
    const { client, calls } = fakeApi(clock, {
      targets: [
        { id: 'eu-west-1', kind: 's3' },
        { id: 'videos-only', kind: 's3', pathPrefix: 'videos/' },
        { id: 'trial', kind: 's3', dryRun: true },
      ],
      applied: (target) => (target === 'eu-west-1' ? 1 : 0),
    });
    const report = await waitForTargets({ client, clock }, items(4), { timeoutSeconds: 5 });
    expect(report.timedOut).toBe(false);
    expect(report.targets).toEqual([
      { id: 'eu-west-1', kind: 's3', files: 4, held: 4, seconds: expect.any(Number) },
      { id: 'videos-only', kind: 's3', files: 0, held: 0, seconds: 0 },
    ]);
    expect(report.dryRunTargets).toEqual(['trial']);
    expect(calls.getFile).toHaveLength(4);
    expect(formatWaitReport(report)).toContain('target trial: dry run, copies nothing (not waited for)');
  });

  it('with nothing to wait for, returns at once', async () => {
    const clock = virtualClock();
    const { client, calls } = fakeApi(clock, {
      targets: [{ id: 'eu-west-1', kind: 's3' }],
      applied: () => 0,
    });
    const report = await waitForTargets({ client, clock }, [], { timeoutSeconds: 5 });
    expect(report).toMatchObject({ timedOut: false, behindFiles: 0, requests: 2 });
    expect(calls.getFile).toHaveLength(0);
    expect(clock.t).toBe(0);
  });
});
