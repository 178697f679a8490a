import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { FALLBACK_CONTENT_TYPE, guessContentType } from '../../../cli/content-type.ts';
import { describeApiError } from '../../../cli/errors.ts';
import { createJsonLinesProgress } from '../../../cli/progress.ts';
import {
  formatAge,
  formatTable,
  formatTargetsOverview,
  getPathStatus,
  getTargetsOverview,
} from '../../../cli/status.ts';
import { createTtySyncProgress, type SyncCounts } from '../../../cli/sync-progress.ts';
import { formatBytes } from '../../../common/format-bytes.ts';
import { ApiError } from '../../../web/client/errors.ts';
import { unreadable } from '../../../web/client/upload/hash.ts';

describe('content type', () => {
  it('guesses from the extension, case-insensitively, else octet-stream', () => {
    expect(guessContentType('a/B.JPG')).toBe('image/jpeg');
    expect(guessContentType('x.jpeg')).toBe('image/jpeg');
    expect(guessContentType('x.svg')).toBe('image/svg+xml');
    expect(guessContentType('x.mov')).toBe('video/quicktime');
    expect(guessContentType('x.mp3')).toBe('audio/mpeg');
    expect(guessContentType('x.json')).toBe('application/json');
    expect(guessContentType('x.tar.gz')).toBe(FALLBACK_CONTENT_TYPE);
    expect(guessContentType('README')).toBe(FALLBACK_CONTENT_TYPE);
    expect(guessContentType('x.constructor')).toBe(FALLBACK_CONTENT_TYPE);
  });
});

describe('progress as JSON lines', () => {
  it('writes one line per phase change and nothing per byte', () => {
    const lines: string[] = [];
    let t = 0;
    const sink = createJsonLinesProgress({ write: (s: string) => lines.push(s) }, () => t);
    sink.phase('hashing', 10, { file: 'a.jpg' });
    sink.bytes(5);
    sink.bytes(10);
    t = 1500;
    sink.phase('uploading', 10, { uploadId: 'u' });
    sink.phase('uploading', 10);
    sink.phase('done', undefined, { version: 2 });
    sink.stop();
    expect(lines.map((l) => JSON.parse(l))).toEqual([
      { phase: 'hashing', total: 10, file: 'a.jpg', elapsedSeconds: 0 },
      { phase: 'uploading', total: 10, uploadId: 'u', elapsedSeconds: 1.5 },
      { phase: 'done', version: 2, elapsedSeconds: 1.5 },
    ]);
    expect(lines.every((l) => l.endsWith('\n') && !l.slice(0, -1).includes('\n'))).toBe(true);
  });

  it('formats bytes', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(5 * 1024 ** 3)).toBe('5.0 GiB');
  });

  it('formats a rate (not a whole number) without a run of digits, and rounds up to the next unit', () => {
    expect(formatBytes(263.1578947368421)).toBe('263 B');
    expect(formatBytes(1023.7)).toBe('1.0 KiB'); // not "1024 B"
    expect(formatBytes(1024 ** 2 - 1)).toBe('1.0 MiB'); // not "1024.0 KiB"
    expect(formatBytes(1536.123456)).toBe('1.5 KiB');
  });
});

describe("sync's bar on a terminal", () => {
  it('shows the versions and pages read while listing, then the files settled', () => {
    const stream = Object.assign(new PassThrough(), { isTTY: true, columns: 200 });
    let written = '';
    stream.on('data', (chunk: Buffer) => (written += chunk.toString()));
    const bar = createTtySyncProgress(stream, () => 0);
    const counts: SyncCounts = {
      phase: 'listing',
      filesTotal: 10,
      filesDone: 0,
      versionsRead: 3000,
      pages: 3,
      bytesHashed: 0,
      bytesSent: 0,
      failed: 0,
    };
    bar.update(counts);
    expect(written).toMatch(/listing +3000 version\(s\) read in 3 page\(s\)/);
    bar.update({ ...counts, phase: 'syncing', filesDone: 4, bytesSent: 10.5 });
    bar.stop();
    expect(written).toMatch(/syncing +\[[^\]]*\] 4\/10 files/);
  });
});

describe('status formatting', () => {
  it('aligns table columns without trailing blanks', () => {
    expect(
      formatTable(
        ['A', 'LONG'],
        [
          ['xyz', ''],
          ['1', '2'],
        ],
      ),
    ).toBe('A    LONG\nxyz\n1    2');
  });

  it('ages', () => {
    expect(formatAge(59_000)).toBe('59s ago');
    expect(formatAge(3 * 86_400_000)).toBe('3d ago');
    expect(formatAge(-1)).toBe('in the future');
  });

  it('says when the lag figures are old: a lag monitor that stopped leaves them as they were (probe 12, O3)', () => {
    const now = Date.parse('2026-12-01T12:00:00Z');
    const target = (id: string, measuredAt: string) => ({
      id,
      kind: 's3' as const,
      lag: { lagSeconds: 5.5, pending: 2, pendingCapped: false, measuredAt },
    });
    const text = formatTargetsOverview(
      {
        api: 'http://a',
        targets: [target('fresh', '2026-12-01T11:59:30Z'), target('stale', '2026-12-01T11:50:00Z')],
        health: { status: 'ok', time: '2026-12-01T12:00:00Z' },
      },
      now,
    );
    expect(text).toContain('stale: lag and backlog measured 10m ago: is the lag monitor running?');
    expect(text).not.toContain('fresh: lag and backlog measured');
  });

  it("reads the figures' age on the API's clock, not this host's (probe skew)", () => {
    const api = '2026-12-01T12:00:00Z';
    const target = (id: string, measuredAt: string) => ({
      id,
      kind: 's3' as const,
      lag: { lagSeconds: 5.5, pending: 2, pendingCapped: false, measuredAt },
    });
    const overview = {
      api: 'http://a',
      targets: [target('fresh', '2026-12-01T11:59:30Z'), target('stale', '2026-12-01T11:50:00Z')],
      health: { status: 'ok' as const, time: api },
    };
    // This host's clock 20 minutes fast: the monitor that measured 30 s ago is not "stopped".
    const fast = formatTargetsOverview(overview, Date.parse(api) + 20 * 60_000);
    expect(fast).not.toContain('fresh: lag and backlog measured');
    expect(fast).toContain('stale: lag and backlog measured 10m ago: is the lag monitor running?');
    // Two hours slow: the monitor that stopped 10 minutes ago is still said to be.
    const slow = formatTargetsOverview(overview, Date.parse(api) - 2 * 3600_000);
    expect(slow).toContain('stale: lag and backlog measured 10m ago: is the lag monitor running?');
    expect(slow).not.toContain('fresh: lag and backlog measured');
  });

  it('does not show a target the lag monitor never measured as caught up (probe ops2)', () => {
    // The API answers 0 and 0 without measuredAt before the monitor's first run for a target (a
    // monitor that never ran, a target just added): the table printed 0 lag, 0 backlog, no note,
    // while the stopped agent had a file to apply.
    const text = formatTargetsOverview(
      {
        api: 'http://a',
        targets: [
          {
            id: 'onprem-dc1',
            kind: 'pull',
            lag: {
              lagSeconds: 0,
              pending: 0,
              pendingCapped: false,
              caughtUp: false,
              heartbeatAgeSeconds: 12,
            },
          },
        ],
        health: { status: 'ok', time: '2026-12-01T12:00:00Z' },
      },
      Date.parse('2026-12-01T12:00:00Z'),
    );
    expect(text).toMatch(/^onprem-dc1\s+pull\s+-\s+-\s+12\.0s ago\s/m);
    expect(text).toContain('onprem-dc1: lag and backlog never measured: is the lag monitor running?');
  });

  it('names the DLQs of no target (the ingest, the completions) when they hold messages (probe 12, O4)', async () => {
    const metrics = [
      '# TYPE mirror_dlq_messages gauge',
      'mirror_dlq_messages{queue="mirror-ingest-dlq"} 2',
      'mirror_dlq_messages{queue="mirror-completion-dlq"} 0',
      'mirror_dlq_messages{queue="mirror-target-eu-west-1-dlq.fifo",target="eu-west-1"} 1',
    ].join('\n');
    const overview = await getTargetsOverview({
      baseUrl: 'http://a',
      listTargets: async () => ({
        targets: [
          {
            id: 'eu-west-1',
            kind: 's3',
            lag: { lagSeconds: 0, pending: 0, pendingCapped: false, measuredAt: new Date().toISOString() },
          },
        ],
      }),
      health: async () => ({ status: 'ok', time: '2026-12-01T12:00:00Z' }),
      metricsText: async () => metrics,
    });
    const text = formatTargetsOverview(overview);
    expect(text).toContain('mirror-ingest-dlq: 2 message(s) parked');
    expect(text).not.toContain('mirror-completion-dlq');
    expect(text).toMatch(/^eu-west-1\s+s3\s+0\s+0\s+-\s+1\s/m);
  });

  it('shows an unavailable health check next to the targets', () => {
    const text = formatTargetsOverview({
      api: 'http://a',
      targets: [],
      health: { status: 'unavailable', error: 'error 503 http_503: down' },
    });
    expect(text).toBe('api     http://a\nhealth  unavailable (error 503 http_503: down)\n\nno targets');
  });

  it('maps only 404 to "no such path"', async () => {
    const failing = (status: number) => ({
      getFile: async () => {
        throw new ApiError('y', 'not_found', status);
      },
    });
    await expect(getPathStatus(failing(404), 'a/b.jpg')).rejects.toThrow(/^no such path: a\/b\.jpg$/);
    await expect(getPathStatus(failing(500), 'a/b.jpg')).rejects.toMatchObject({ status: 500, message: 'y' });
  });
});

describe('describeApiError', () => {
  it('a file that cannot be read any more says it may have changed since it was hashed, not "error 0"', () => {
    const error = unreadable(new Error('The blob could not be read'));
    const line = describeApiError(error);
    expect(line).toMatch(
      /^cannot read the file: The blob could not be read \(was the file changed, moved or deleted after it was hashed\?/,
    );
    expect(line).not.toMatch(/error 0/);
    expect(describeApiError(new ApiError('no such file', 'not_found', 404, 'path'))).toBe(
      'error 404 not_found: no such file (field: path)',
    );
  });

  it('an error of the client itself (status 0: a verify timeout) carries no "0" for a status', () => {
    expect(describeApiError(new ApiError('not verified within 1 s', 'verify_timeout', 0))).toBe(
      'error verify_timeout: not verified within 1 s',
    );
  });
});
