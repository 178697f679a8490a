/**
 * The chaos run's accounting of versions (bench/chaos-check.ts ledgerFigures): a version no
 * operation accounts for is a duplicate, but an operation whose API call died after its commit
 * (a crash point in the api function) does account for the version it committed.
 */
import { describe, expect, it } from 'vitest';
import { ledgerFigures, type PathState } from '../../../bench/chaos-check.ts';
import { failedOp, type OpResult } from '../../../bench/chaos-workload.ts';
import { ApiError } from '../../../web/client/errors.ts';

const content = { id: 1, size: 3, sha256: 'a'.repeat(64), file: '/x' };
const upload = (path: string, uploadId: string, extra: Partial<OpResult> = {}): OpResult => ({
  op: { kind: 'upload', path, content, reused: false },
  uploadId,
  ...extra,
});
const del = (path: string, extra: Partial<OpResult> = {}): OpResult => ({
  op: { kind: 'delete', path },
  ...extra,
});
const state = (versions: number[], tombstones: number[] = []): PathState => ({
  head: undefined,
  versions,
  tombstones,
  applied: new Map(),
});

describe('ledgerFigures', () => {
  it('an upload committed although its client heard an error (the proof’s API call died after the commit) is no duplicate', () => {
    const results = [upload('a', 'u1'), upload('a', 'u2', { error: 'ApiError: upload "u2" is committed' })];
    const outcomes = new Map([
      ['u1', { status: 'committed', version: 1 }],
      ['u2', { status: 'committed', version: 2 }],
    ]);
    expect(ledgerFigures(new Map([['a', state([1, 2])]]), results, outcomes)).toEqual({
      versionsCommitted: 2,
      gaps: 0,
      duplicateVersions: 0,
      duplicateDetail: [],
    });
  });

  it('a delete whose call died (still in progress, 5xx) may account for one tombstone; a refused one (404) for none', () => {
    const outcomes = new Map([['u1', { status: 'committed', version: 1 }]]);
    const died = [upload('d', 'u1'), del('d', { error: 'ApiError: DELETE answered 409: still in progress' })];
    expect(ledgerFigures(new Map([['d', state([1, 2], [2])]]), died, outcomes).duplicateVersions).toBe(0);
    const refused = [
      upload('d', 'u1'),
      del('d', { error: 'ApiError: DELETE /v1/files/d answered 404: no such file' }),
    ];
    expect(ledgerFigures(new Map([['d', state([1, 2], [2])]]), refused, outcomes).duplicateVersions).toBe(1);
  });

  it('still counts a version nothing accounts for, and two operations holding one version', () => {
    const outcomes = new Map([
      ['u1', { status: 'committed', version: 1 }],
      ['u2', { status: 'committed', version: 1 }],
    ]);
    const results = [upload('p', 'u1'), upload('p', 'u2')];
    // Version 1 held by both uploads (1), version 2 by nothing (1).
    expect(ledgerFigures(new Map([['p', state([1, 2])]]), results, outcomes).duplicateVersions).toBe(2);
  });
});

describe('failedOp', () => {
  const op = { kind: 'upload' as const, path: 'm', content, reused: false };

  it('an upload whose wait for its verdict ran out (the client’s verify_timeout) is pending, not refused: the run waits for it', () => {
    const timeout = new ApiError('the upload was stored but not verified within 5 s', 'verify_timeout', 0);
    expect(failedOp(op, timeout, 'u9')).toEqual({ op, uploadId: 'u9' });
  });

  it('any other failure is an error, with the id of the upload it claimed', () => {
    const refused = new ApiError('upload "u9" is committed', 'conflict', 409);
    expect(failedOp(op, refused, 'u9')).toMatchObject({
      op,
      uploadId: 'u9',
      error: expect.stringContaining('committed'),
    });
  });
});
