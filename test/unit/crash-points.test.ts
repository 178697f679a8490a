import { afterEach, describe, expect, it, vi } from 'vitest';
import { CRASH_POINTS, parseCrashPoints } from '../../common/crash-points.ts';

/** The configuration is read once at load: each case loads the module afresh under its own variable. */
async function loadWith(spec: string | undefined) {
  vi.resetModules();
  if (spec === undefined) delete process.env.MIRROR_CRASH_POINTS;
  else process.env.MIRROR_CRASH_POINTS = spec;
  return import('../../common/crash-points.ts');
}

afterEach(() => {
  delete process.env.MIRROR_CRASH_POINTS;
  vi.restoreAllMocks();
});

describe('crash points', () => {
  it('are off without MIRROR_CRASH_POINTS: no point fires, crashDuring hands back the same promise', async () => {
    const m = await loadWith(undefined);
    for (const point of CRASH_POINTS) for (let i = 0; i < 100; i++) m.crashPoint(point);
    const work = Promise.resolve(7);
    expect(m.crashDuring('replicate.mid-copy', work)).toBe(work);
  });

  it('a point at rate 1 throws CrashPointError naming it (outside a function environment); others stay off', async () => {
    const m = await loadWith('commit.before-fanout=1');
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    expect(() => m.crashPoint('commit.before-fanout')).toThrow(m.CrashPointError);
    expect(() => m.crashPoint('commit.before-fanout')).toThrow(/commit\.before-fanout/);
    expect(() => m.crashPoint('replicate.mid-copy')).not.toThrow();
  });

  it('fires at about its rate', async () => {
    const m = await loadWith('agent.before-rename=0.3');
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    let fired = 0;
    for (let i = 0; i < 4000; i++) {
      try {
        m.crashPoint('agent.before-rename');
      } catch {
        fired++;
      }
    }
    expect(fired / 4000).toBeGreaterThan(0.25);
    expect(fired / 4000).toBeLessThan(0.35);
  });

  it('crashDuring rejects while the work goes on unawaited', async () => {
    const m = await loadWith('*=1');
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    let finished = false;
    const work = new Promise<number>((resolve) =>
      setTimeout(() => {
        finished = true;
        resolve(1);
      }, 50),
    );
    await expect(m.crashDuring('replicate.mid-copy', work)).rejects.toThrow(m.CrashPointError);
    expect(finished).toBe(false);
    await work;
    expect(finished).toBe(true);
  });

  it('a wrong name or rate is refused with the rule, so a typo cannot silently test nothing', () => {
    expect(() => parseCrashPoints('commit.befor-fanout=0.1')).toThrow(
      /unknown crash point "commit.befor-fanout"/,
    );
    expect(() => parseCrashPoints('commit.before-fanout=2')).toThrow(/<point>=<rate 0-1>/);
    expect(() => parseCrashPoints('commit.before-fanout')).toThrow(/<point>=<rate 0-1>/);
    expect(parseCrashPoints(' ')).toBeUndefined();
    expect(parseCrashPoints('*=0.5')?.size).toBe(CRASH_POINTS.length);
  });
});

describe('crash points with an off file', () => {
  it('fall silent once the file exists, and count what fired before', async () => {
    const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = await mkdtemp(join(tmpdir(), 'crash-off-'));
    const off = join(dir, 'off');
    process.env.MIRROR_CRASH_POINTS_OFF_FILE = off;
    try {
      const m = await loadWith('commit.before-fanout=1');
      vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
      expect(() => m.crashPoint('commit.before-fanout')).toThrow(m.CrashPointError);
      await writeFile(off, '');
      expect(() => m.crashPoint('commit.before-fanout')).not.toThrow();
      expect(m.crashesFired().get('commit.before-fanout')).toBe(1);
    } finally {
      delete process.env.MIRROR_CRASH_POINTS_OFF_FILE;
      await rm(dir, { recursive: true, force: true });
    }
  });
});
