/**
 * One contract for every Ledger (functions/core/ports.ts): each port method's documented
 * behaviour, run against InMemoryLedger (test/unit/core/in-memory-ledger.test.ts) and
 * DynamoLedger on the gated DynamoDB (test/integration/dynamo-ledger-contract.test.ts), so the
 * two cannot drift apart.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Change, FileVersion, TargetState, Upload } from '../../contracts/model.js';
import { commitVersion } from '../../functions/core/commit.js';
import { ClaimTakenError } from '../../functions/core/errors.js';
import {
  type AgentReport,
  type CommitWrite,
  type Ledger,
  pendingClaimOf,
} from '../../functions/core/ports.js';
import { shardOf } from '../../functions/core/shards.js';

export interface LedgerFixture {
  readonly ledger: Ledger;
  /** Writes a pull agent's heartbeat where the on-prem agent writes it (its own row). */
  recordAgentHeartbeat(
    targetId: string,
    heartbeatAt: string,
    conditions?: readonly string[],
    rebuilding?: AgentReport['rebuilding'],
  ): Promise<void>;
}

export interface ContractOptions {
  /** Concurrent writers in the contention tests (fewer on a slow emulator). */
  readonly writers?: number;
}

const T0 = '2026-11-30T00:00:00.000Z';
const at = (seconds: number) => new Date(Date.parse(T0) + seconds * 1000).toISOString();
const sha = (n: number) => n.toString(16).padStart(64, '0');

export function pendingUpload(overrides: Partial<Upload> = {}): Upload {
  return {
    uploadId: randomUUID(),
    path: 'media/a.png',
    sha256: sha(1),
    size: 10,
    contentType: 'image/png',
    status: 'pending',
    createdAt: T0,
    updatedAt: T0,
    ...overrides,
  };
}

/** The write commitVersion would make for `path` at `version`, entry `seq` of `shard`. */
export function commitWrite(
  path: string,
  version: number,
  seq: number,
  options: {
    shard?: number;
    uploadId?: string;
    sha256?: string | null;
    endsUpload?: { deduplicated: boolean };
  } = {},
): CommitWrite {
  const sha256 = options.sha256 === undefined ? sha(version) : options.sha256;
  const v: FileVersion = {
    path,
    version,
    sha256,
    size: sha256 === null ? 0 : 10,
    contentType: sha256 === null ? null : 'image/png',
    deleted: sha256 === null,
    committedAt: at(version),
    uploadId: options.uploadId ?? randomUUID(),
  };
  const change: Change = {
    shard: options.shard ?? 0,
    seq,
    path,
    version,
    sha256: v.sha256,
    size: v.size,
    contentType: v.contentType,
    deleted: v.deleted,
    committedAt: v.committedAt,
    appendedAt: at(seq),
  };
  return { version: v, change, upload: options.endsUpload };
}

/** Reads the path's commit state and writes the next version: what commitVersion does once. */
async function commitNext(
  ledger: Ledger,
  path: string,
  options: { shard?: number; uploadId?: string; sha256?: string | null } = {},
) {
  const state = await ledger.readCommitState(path, options.shard ?? 0);
  const write = commitWrite(path, state.version + 1, state.feedSeq + 1, options);
  expect(await ledger.commit(write)).toEqual({ committed: true });
  return write;
}

/** Everything a refused commit must leave as it was. */
async function snapshot(ledger: Ledger, paths: readonly string[], shard: number) {
  return {
    heads: await Promise.all(paths.map((p) => ledger.getHead(p))),
    versions: await Promise.all(paths.map((p) => ledger.listVersions(p, { limit: 100 }))),
    feed: await ledger.readFeed(shard, 0, 100),
  };
}

const noFanout = { send: async () => undefined };
const systemClock = { now: () => new Date() };

export function ledgerContract(
  name: string,
  makeLedger: () => Promise<LedgerFixture>,
  options: ContractOptions = {},
): void {
  const writers = options.writers ?? 20;

  describe(`${name}: uploads`, () => {
    it('putUpload records an upload once: a second put of the same id is a ClaimTakenError and changes nothing', async () => {
      const { ledger } = await makeLedger();
      const upload = pendingUpload({ ifVersion: undefined });
      await ledger.putUpload(upload);
      expect(await ledger.getUpload(upload.uploadId)).toEqual(upload);
      await expect(ledger.putUpload({ ...upload, path: 'other.png' })).rejects.toBeInstanceOf(
        ClaimTakenError,
      );
      expect(await ledger.getUpload(upload.uploadId)).toEqual(upload);
      expect(await ledger.getUpload(randomUUID())).toBeUndefined();
    });

    it('openUpload records the upload and its pointer with its claim at once; a taken id is a ClaimTakenError and writes neither', async () => {
      const { ledger } = await makeLedger();
      const upload = pendingUpload({ ifVersion: undefined });
      await ledger.openUpload(upload);
      expect(await ledger.getUpload(upload.uploadId)).toEqual(upload);
      expect(await ledger.listPendingClaims(upload.sha256)).toEqual([
        { uploadId: upload.uploadId, claim: pendingClaimOf(upload) },
      ]);
      const again = { ...upload, path: 'other.png', sha256: sha(41) };
      await expect(ledger.openUpload(again)).rejects.toBeInstanceOf(ClaimTakenError);
      expect(await ledger.getUpload(upload.uploadId)).toEqual(upload);
      expect(await ledger.listPendingUploads(sha(41))).toEqual([]);
    });

    it('finishUpload ends a pending upload once: its first outcome stands, an unknown upload stays unknown', async () => {
      const { ledger } = await makeLedger();
      const upload = pendingUpload();
      await ledger.putUpload(upload);
      await ledger.finishUpload(upload.uploadId, { status: 'rejected', reason: 'aborted' }, at(5));
      await ledger.finishUpload(upload.uploadId, { status: 'committed', version: 3 }, at(6));
      expect(await ledger.getUpload(upload.uploadId)).toEqual({
        ...upload,
        status: 'rejected',
        reason: 'aborted',
        updatedAt: at(5),
      });
      const other = pendingUpload();
      await ledger.putUpload(other);
      await ledger.finishUpload(
        other.uploadId,
        { status: 'committed', version: 2, deduplicated: true },
        at(7),
      );
      expect(await ledger.getUpload(other.uploadId)).toMatchObject({
        status: 'committed',
        version: 2,
        deduplicated: true,
        updatedAt: at(7),
      });
      const unknown = randomUUID();
      await ledger.finishUpload(unknown, { status: 'expired', reason: 'late' }, at(8));
      expect(await ledger.getUpload(unknown)).toBeUndefined();
    });

    it('pending pointers: added once however often, listed by content in id order, removed, and scanned', async () => {
      const { ledger } = await makeLedger();
      const ids = ['b-upload', 'a-upload', 'c-upload'];
      for (const id of ids) await ledger.addPendingUpload(sha(7), id);
      await ledger.addPendingUpload(sha(7), 'a-upload');
      await ledger.addPendingUpload(sha(8), 'z-upload');
      expect(await ledger.listPendingUploads(sha(7))).toEqual(['a-upload', 'b-upload', 'c-upload']);
      await ledger.removePendingUpload(sha(7), 'b-upload');
      await ledger.removePendingUpload(sha(7), 'never-added');
      expect(await ledger.listPendingUploads(sha(7))).toEqual(['a-upload', 'c-upload']);
      expect(await ledger.listPendingUploads(sha(9))).toEqual([]);
      const scanned: { sha256: string; uploadId: string }[] = [];
      for await (const entry of ledger.scanPendingUploads()) scanned.push(entry);
      expect(scanned.sort((a, b) => a.uploadId.localeCompare(b.uploadId))).toEqual([
        { sha256: sha(7), uploadId: 'a-upload' },
        { sha256: sha(7), uploadId: 'c-upload' },
        { sha256: sha(8), uploadId: 'z-upload' },
      ]);
    });

    it('getBlobAndPending: the record and every pointer of the content, each with the claim it carries', async () => {
      const { ledger } = await makeLedger();
      expect(await ledger.getBlobAndPending(sha(13))).toEqual({ blob: undefined, pending: [] });
      const upload = pendingUpload({
        uploadId: 'b-claimed',
        sha256: sha(13),
        ifVersion: 2,
        expiresAt: at(900),
        challenge: { nonce: 'secret', ranges: [] } as unknown as Upload['challenge'],
      });
      await ledger.addPendingUpload(sha(13), upload.uploadId, upload);
      await ledger.addPendingUpload(sha(13), 'a-bare');
      await ledger.addPendingUpload(sha(14), 'other-content', pendingUpload({ sha256: sha(14) }));
      const claim = {
        uploadId: 'b-claimed',
        path: upload.path,
        size: upload.size,
        contentType: upload.contentType,
        ifVersion: 2,
        createdAt: upload.createdAt,
        expiresAt: at(900),
      };
      // Pointers only: no record yet. Never the challenge nor the status.
      expect(await ledger.getBlobAndPending(sha(13))).toEqual({
        blob: undefined,
        pending: [{ uploadId: 'a-bare' }, { uploadId: 'b-claimed', claim }],
      });
      await ledger.putBlob({ sha256: sha(13), size: 10, verifiedAt: T0, etag: '"e"', versionId: 'v1' });
      await ledger.removePendingUpload(sha(13), 'a-bare');
      expect(await ledger.getBlobAndPending(sha(13))).toEqual({
        blob: { sha256: sha(13), size: 10, verifiedAt: T0, etag: '"e"', versionId: 'v1' },
        pending: [{ uploadId: 'b-claimed', claim }],
      });
      expect(await ledger.listPendingUploads(sha(13))).toEqual(['b-claimed']);
      // The API's claim reads the pointers alone: the same list, without the record.
      expect(await ledger.listPendingClaims(sha(13))).toEqual([{ uploadId: 'b-claimed', claim }]);
      expect(await ledger.listPendingClaims(sha(15))).toEqual([]);
    });

    it("getBlobAndPendingOf: the record and that one upload's pointer, with the claim it carries", async () => {
      const { ledger } = await makeLedger();
      expect(await ledger.getBlobAndPendingOf(sha(16), 'b-sender')).toEqual({ blob: undefined, pending: [] });
      const upload = pendingUpload({ uploadId: 'b-sender', sha256: sha(16), expiresAt: at(900) });
      await ledger.addPendingUpload(sha(16), upload.uploadId, upload);
      await ledger.addPendingUpload(
        sha(16),
        'a-other',
        pendingUpload({ uploadId: 'a-other', sha256: sha(16) }),
      );
      await ledger.addPendingUpload(sha(16), 'c-bare');
      const claim = {
        uploadId: 'b-sender',
        path: upload.path,
        size: upload.size,
        contentType: upload.contentType,
        createdAt: upload.createdAt,
        expiresAt: at(900),
      };
      expect(await ledger.getBlobAndPendingOf(sha(16), 'b-sender')).toEqual({
        blob: undefined,
        pending: [{ uploadId: 'b-sender', claim }],
      });
      const blob = { sha256: sha(16), size: 10, verifiedAt: T0, etag: '"e"', versionId: 'v1' };
      await ledger.putBlob(blob);
      expect(await ledger.getBlobAndPendingOf(sha(16), 'b-sender')).toEqual({
        blob,
        pending: [{ uploadId: 'b-sender', claim }],
      });
      expect(await ledger.getBlobAndPendingOf(sha(16), 'c-bare')).toEqual({
        blob,
        pending: [{ uploadId: 'c-bare' }],
      });
      await ledger.removePendingUpload(sha(16), 'b-sender');
      expect(await ledger.getBlobAndPendingOf(sha(16), 'b-sender')).toEqual({ blob, pending: [] });
      // Another content's record is not this one's.
      expect(await ledger.getBlobAndPendingOf(sha(17), 'a-other')).toEqual({ blob: undefined, pending: [] });
    });

    it("pagePendingUploads pages through every pointer once; the sweep's checkpoint is stored and cleared", async () => {
      const { ledger } = await makeLedger();
      const pointers = [1, 2, 3, 4, 5].map((i) => ({ sha256: sha(i), uploadId: `u-${i}` }));
      for (const p of pointers) await ledger.addPendingUpload(p.sha256, p.uploadId);
      const seen: { sha256: string; uploadId: string }[] = [];
      let after: string | undefined;
      for (let pages = 1; ; pages++) {
        const page = await ledger.pagePendingUploads({ after, limit: 2 });
        expect(page.pointers.length).toBeLessThanOrEqual(2);
        seen.push(...page.pointers);
        if (page.next === undefined) break;
        after = page.next;
        expect(pages).toBeLessThan(50);
      }
      expect(seen.sort((a, b) => a.uploadId.localeCompare(b.uploadId))).toEqual(pointers);
      expect(await ledger.getSweepCheckpoint()).toBeUndefined();
      await ledger.putSweepCheckpoint('somewhere');
      expect(await ledger.getSweepCheckpoint()).toBe('somewhere');
      await ledger.putSweepCheckpoint(undefined);
      expect(await ledger.getSweepCheckpoint()).toBeUndefined();
    });

    it('a challenge is replaced only while the upload is pending, and each one is spent once', async () => {
      const { ledger } = await makeLedger();
      const challenge = (nonce: string) => ({
        nonce,
        ranges: [{ offset: 0, length: 10 }],
        expiresAt: at(900),
      });
      const upload = pendingUpload({ challenge: challenge('n1') });
      await ledger.putUpload(upload);
      expect(await ledger.spendChallenge(upload.uploadId, 'wrong')).toBe(false);
      expect(await ledger.spendChallenge(upload.uploadId, 'n1')).toBe(true);
      expect(await ledger.spendChallenge(upload.uploadId, 'n1')).toBe(false);
      await ledger.setChallenge(upload.uploadId, challenge('n2'));
      expect((await ledger.getUpload(upload.uploadId))?.challenge?.nonce).toBe('n2');
      expect(await ledger.spendChallenge(upload.uploadId, 'n1')).toBe(false);
      const both = await Promise.all([
        ledger.spendChallenge(upload.uploadId, 'n2'),
        ledger.spendChallenge(upload.uploadId, 'n2'),
      ]);
      expect(both.sort()).toEqual([false, true]);
      await ledger.finishUpload(upload.uploadId, { status: 'rejected', reason: 'aborted' }, at(1));
      await ledger.setChallenge(upload.uploadId, challenge('n3'));
      expect((await ledger.getUpload(upload.uploadId))?.challenge?.nonce).toBe('n2');
      expect(await ledger.spendChallenge(randomUUID(), 'n1')).toBe(false);
    });

    it('a completion request is recorded only while the upload is pending, and a later one moves it', async () => {
      const { ledger } = await makeLedger();
      const upload = pendingUpload();
      await ledger.putUpload(upload);
      expect(await ledger.markCompletionRequested(upload.uploadId, at(1))).toBe(true);
      expect((await ledger.getUpload(upload.uploadId))?.completionRequestedAt).toBe(at(1));
      expect(await ledger.markCompletionRequested(upload.uploadId, at(2))).toBe(true);
      expect((await ledger.getUpload(upload.uploadId))?.completionRequestedAt).toBe(at(2));
      await ledger.finishUpload(upload.uploadId, { status: 'rejected', reason: 'aborted' }, at(3));
      expect(await ledger.markCompletionRequested(upload.uploadId, at(4))).toBe(false);
      const ended = await ledger.getUpload(upload.uploadId);
      expect(ended?.completionRequestedAt).toBe(at(2));
      expect(ended?.status).toBe('rejected');
      expect(await ledger.markCompletionRequested(randomUUID(), at(1))).toBe(false);
    });

    it('parts are recorded by number (a re-sent part replaces its record) and listed in part order', async () => {
      const { ledger } = await makeLedger();
      const part = (partNumber: number, etag: string) => ({
        partNumber,
        size: 5,
        etag,
        sha256: sha(partNumber),
      });
      await ledger.recordPart('u1', part(2, '"b"'));
      await ledger.recordPart('u1', part(10, '"j"'));
      await ledger.recordPart('u1', part(1, '"a"'));
      await ledger.recordPart('u1', part(2, '"b2"'));
      await ledger.recordPart('u2', part(1, '"other"'));
      expect(await ledger.listParts('u1')).toEqual([part(1, '"a"'), part(2, '"b2"'), part(10, '"j"')]);
      expect(await ledger.listParts('none')).toEqual([]);
    });
  });

  describe(`${name}: idempotency keys`, () => {
    const claim = (key: string, token: string, now: number) => ({
      key,
      requestHash: `hash-${key}`,
      claimToken: token,
      lockedUntil: at(now + 60),
      expiresAt: at(now + 3600),
      now: at(now),
    });

    it('a key is claimed once; only its holder completes or releases it; the answer is kept for later requests', async () => {
      const { ledger } = await makeLedger();
      expect(await ledger.claimIdempotencyKey(claim('k', 'first', 0))).toBeUndefined();
      expect(await ledger.claimIdempotencyKey(claim('k', 'second', 1))).toMatchObject({
        key: 'k',
        requestHash: 'hash-k',
        status: 'in_progress',
        lockedUntil: at(60),
        expiresAt: at(3600),
      });
      expect(await ledger.completeIdempotencyKey('k', 'second', '{"x":1}')).toBe(false);
      expect(await ledger.releaseIdempotencyKey('k', 'second')).toBe(false);
      expect(await ledger.completeIdempotencyKey('k', 'first', '{"x":1}')).toBe(true);
      expect(await ledger.completeIdempotencyKey('k', 'first', '{"x":2}')).toBe(false);
      expect(await ledger.releaseIdempotencyKey('k', 'first')).toBe(false);
      // Past the lock, a completed key still answers: only its expiry frees it.
      const holder = await ledger.claimIdempotencyKey(claim('k', 'third', 120));
      expect(holder).toMatchObject({ status: 'completed', response: '{"x":1}', requestHash: 'hash-k' });
      expect(holder?.lockedUntil).toBeUndefined();
    });

    it('a released key is free; a dead claim is taken over after its lock; any key is free after its expiry', async () => {
      const { ledger } = await makeLedger();
      await ledger.claimIdempotencyKey(claim('r', 'a', 0));
      expect(await ledger.releaseIdempotencyKey('r', 'a')).toBe(true);
      expect(await ledger.claimIdempotencyKey(claim('r', 'b', 1))).toBeUndefined();

      await ledger.claimIdempotencyKey(claim('dead', 'a', 0));
      expect(await ledger.claimIdempotencyKey(claim('dead', 'b', 59))).toMatchObject({
        status: 'in_progress',
      });
      expect(await ledger.claimIdempotencyKey(claim('dead', 'b', 61))).toBeUndefined();
      // The first holder lost it: its answer is not stored.
      expect(await ledger.completeIdempotencyKey('dead', 'a', '{}')).toBe(false);
      expect(await ledger.completeIdempotencyKey('dead', 'b', '{"b":1}')).toBe(true);

      expect(await ledger.claimIdempotencyKey(claim('dead', 'c', 3600))).toMatchObject({
        status: 'completed',
      });
      expect(await ledger.claimIdempotencyKey(claim('dead', 'c', 61 + 3601))).toBeUndefined();
      expect(await ledger.claimIdempotencyKey(claim('dead', 'd', 61 + 3602))).toMatchObject({
        status: 'in_progress',
        expiresAt: at(61 + 3601 + 3600),
      });
    });
  });

  describe(`${name}: blobs`, () => {
    const blob = (versionId: string | undefined, verifiedAt = T0) => ({
      sha256: sha(42),
      size: 10,
      verifiedAt,
      etag: '"e"',
      versionId,
    });

    it('unversioned: the record follows the latest verification; deleteBlob forgets it', async () => {
      const { ledger } = await makeLedger();
      expect(await ledger.getBlob(sha(42))).toBeUndefined();
      expect(await ledger.putBlob(blob(undefined, at(1)))).toMatchObject({ verifiedAt: at(1) });
      expect(await ledger.putBlob(blob(undefined, at(2)))).toMatchObject({ verifiedAt: at(2) });
      expect(await ledger.getBlob(sha(42))).toMatchObject({ sha256: sha(42), size: 10, verifiedAt: at(2) });
      await ledger.deleteBlob(sha(42));
      expect(await ledger.getBlob(sha(42))).toBeUndefined();
    });

    it('a pinned version holds against another version; the same pin is written again; `replaces` moves a lost pin', async () => {
      const { ledger } = await makeLedger();
      expect(await ledger.putBlob(blob('v1', at(1)))).toMatchObject({ versionId: 'v1' });
      expect(await ledger.putBlob(blob('v2', at(2)))).toMatchObject({ versionId: 'v1', verifiedAt: at(1) });
      expect(await ledger.putBlob(blob('v2', at(2)), { replaces: 'v0' })).toMatchObject({ versionId: 'v1' });
      expect(await ledger.getBlob(sha(42))).toMatchObject({ versionId: 'v1', verifiedAt: at(1) });
      expect(await ledger.putBlob(blob('v1', at(3)))).toMatchObject({ versionId: 'v1', verifiedAt: at(3) });
      expect(await ledger.putBlob(blob('v2', at(4)), { replaces: 'v1' })).toMatchObject({ versionId: 'v2' });
      expect(await ledger.getBlob(sha(42))).toMatchObject({ versionId: 'v2', verifiedAt: at(4) });
    });

    it('two versions pinned at once: one wins, and both writers are told the same pin', async () => {
      const { ledger } = await makeLedger();
      const results = await Promise.all(['a', 'b', 'c'].map((v) => ledger.putBlob(blob(v))));
      const pin = (await ledger.getBlob(sha(42)))?.versionId;
      expect(['a', 'b', 'c']).toContain(pin);
      expect(results.map((r) => r.versionId)).toEqual([pin, pin, pin]);
    });

    it('a verification part-way through is kept per object version (or ETag), the latest over the earlier', async () => {
      const { ledger } = await makeLedger();
      const progress = (offset: number, object: { versionId?: string; etag?: string }) => ({
        sha256: sha(42),
        ...object,
        size: 3000,
        offset,
        state: Buffer.from(`state at ${offset}`).toString('base64'),
        eventTime: T0,
        hops: offset / 1000,
      });
      expect(await ledger.getVerificationProgress({ sha256: sha(42), versionId: 'v1' })).toBeUndefined();
      await ledger.putVerificationProgress(progress(1000, { versionId: 'v1' }));
      await ledger.putVerificationProgress(progress(1000, { versionId: 'v2' }));
      await ledger.putVerificationProgress(progress(2000, { versionId: 'v1' }));
      await ledger.putVerificationProgress(progress(1000, { etag: '"e"' }));
      expect(await ledger.getVerificationProgress({ sha256: sha(42), versionId: 'v1' })).toEqual(
        progress(2000, { versionId: 'v1' }),
      );
      expect(await ledger.getVerificationProgress({ sha256: sha(42), versionId: 'v2' })).toEqual(
        progress(1000, { versionId: 'v2' }),
      );
      expect(await ledger.getVerificationProgress({ sha256: sha(42), etag: '"e"' })).toEqual(
        progress(1000, { etag: '"e"' }),
      );
      expect(await ledger.getVerificationProgress({ sha256: sha(42), etag: '"other"' })).toBeUndefined();
      expect(await ledger.getVerificationProgress({ sha256: sha(43), versionId: 'v1' })).toBeUndefined();
      // Not the blob's record, nor one of its pending uploads.
      expect(await ledger.getBlobAndPending(sha(42))).toEqual({ blob: undefined, pending: [] });
    });
  });

  describe(`${name}: versions and the commit`, () => {
    it('an empty ledger: version 0 at feed seq 0, no head, no versions, an empty feed', async () => {
      const { ledger } = await makeLedger();
      expect(await ledger.readCommitState('nothing.png', 3)).toEqual({ version: 0, feedSeq: 0, counted: [] });
      expect(await ledger.getHead('nothing.png')).toBeUndefined();
      expect(await ledger.getVersion('nothing.png', 1)).toBeUndefined();
      expect(await ledger.listVersions('nothing.png', { limit: 10 })).toEqual([]);
      expect(await ledger.readFeed(3, 0, 10)).toEqual([]);
      expect(await ledger.latestFeedSeq(3)).toBe(0);
    });

    it('a commit writes the version, moves the head and appends the feed entry, all read back as written', async () => {
      const { ledger } = await makeLedger();
      const first = await commitNext(ledger, 'media/a.png', { shard: 2 });
      const second = await commitNext(ledger, 'media/a.png', { shard: 2 });
      const { sha256, size, contentType, deleted } = second.version;
      expect(await ledger.readCommitState('media/a.png', 2)).toEqual({
        version: 2,
        uploadId: second.version.uploadId,
        content: { sha256, size, contentType, deleted },
        feedSeq: 2,
        // Committed without the folder rule: counted into no folder.
        counted: [],
      });
      expect(await ledger.getVersion('media/a.png', 1)).toMatchObject(first.version);
      expect(await ledger.getHead('media/a.png')).toMatchObject(second.version);
      expect(await ledger.readFeed(2, 0, 10)).toEqual([first.change, second.change]);
      expect(await ledger.latestFeedSeq(2)).toBe(2);
      // Another shard's feed is its own.
      expect(await ledger.readCommitState('media/a.png', 1)).toMatchObject({ version: 2, feedSeq: 0 });
    });

    it('a commit on a stale head is refused whole and names the head that won (its version and upload)', async () => {
      const { ledger } = await makeLedger();
      const won = await commitNext(ledger, 'p.png');
      await commitNext(ledger, 'q.png');
      const before = await snapshot(ledger, ['p.png', 'q.png'], 0);
      const result = await ledger.commit(commitWrite('p.png', 1, 3));
      const { sha256, size, contentType, deleted } = won.version;
      expect(result).toEqual({
        committed: false,
        state: {
          version: 1,
          uploadId: won.version.uploadId,
          content: { sha256, size, contentType, deleted },
          feedSeq: 2,
        },
      });
      expect(await snapshot(ledger, ['p.png', 'q.png'], 0)).toEqual(before);
      // A head that does not exist yet refuses a version above 1 the same way.
      const gap = await ledger.commit(commitWrite('r.png', 2, 3));
      expect(gap).toMatchObject({ committed: false, state: { version: 0, feedSeq: 2 } });
      expect(await ledger.getVersion('r.png', 2)).toBeUndefined();
      expect(await snapshot(ledger, ['p.png', 'q.png'], 0)).toEqual(before);
    });

    it('a commit on a stale feed seq is refused whole and names the seq that won', async () => {
      const { ledger } = await makeLedger();
      await commitNext(ledger, 'a.png');
      const stale = commitWrite('b.png', 1, 1);
      const before = await snapshot(ledger, ['a.png', 'b.png'], 0);
      expect(await ledger.commit(stale)).toEqual({ committed: false, state: { version: 0, feedSeq: 1 } });
      expect(await snapshot(ledger, ['a.png', 'b.png'], 0)).toEqual(before);
      // A seq beyond the end is a hole: refused too.
      expect(await ledger.commit(commitWrite('b.png', 1, 3))).toMatchObject({
        committed: false,
        state: { version: 0, feedSeq: 1 },
      });
      expect(await snapshot(ledger, ['a.png', 'b.png'], 0)).toEqual(before);
    });

    it('a commit ends its pending upload (pointer gone); a second commit of it is refused with the upload as it ended', async () => {
      const { ledger } = await makeLedger();
      const upload = pendingUpload({ path: 'up.png', sha256: sha(5) });
      await ledger.putUpload(upload);
      await ledger.addPendingUpload(sha(5), upload.uploadId);
      const write = commitWrite('up.png', 1, 1, {
        uploadId: upload.uploadId,
        sha256: sha(5),
        endsUpload: { deduplicated: true },
      });
      expect(await ledger.commit(write)).toEqual({ committed: true });
      const ended = await ledger.getUpload(upload.uploadId);
      expect(ended).toMatchObject({
        status: 'committed',
        version: 1,
        deduplicated: true,
        updatedAt: write.version.committedAt,
      });
      expect(await ledger.listPendingUploads(sha(5))).toEqual([]);
      const before = await snapshot(ledger, ['up.png'], 0);
      const again = await ledger.commit(
        commitWrite('up.png', 2, 2, {
          uploadId: upload.uploadId,
          sha256: sha(5),
          endsUpload: { deduplicated: false },
        }),
      );
      expect(again).toEqual({ committed: false, state: { version: 1, feedSeq: 1 }, upload: ended });
      expect(await snapshot(ledger, ['up.png'], 0)).toEqual(before);
    });

    it('a commit of an upload ended otherwise (rejected) is refused with it, even when the head and seq still hold', async () => {
      const { ledger } = await makeLedger();
      const upload = pendingUpload({ path: 'gone.png', sha256: sha(6) });
      await ledger.putUpload(upload);
      await ledger.finishUpload(upload.uploadId, { status: 'expired', reason: 'late' }, at(9));
      const result = await ledger.commit(
        commitWrite('gone.png', 1, 1, {
          uploadId: upload.uploadId,
          sha256: sha(6),
          endsUpload: { deduplicated: false },
        }),
      );
      expect(result).toMatchObject({
        committed: false,
        state: { version: 0, feedSeq: 0 },
        upload: { uploadId: upload.uploadId, status: 'expired', reason: 'late' },
      });
      expect(await ledger.getHead('gone.png')).toBeUndefined();
      expect(await ledger.readFeed(0, 0, 10)).toEqual([]);
    });

    it('a commit without `upload` leaves uploads alone', async () => {
      const { ledger } = await makeLedger();
      const upload = pendingUpload({ path: 'free.png', sha256: sha(11) });
      await ledger.putUpload(upload);
      await ledger.addPendingUpload(sha(11), upload.uploadId);
      await commitNext(ledger, 'free.png', { uploadId: upload.uploadId, sha256: sha(11) });
      expect(await ledger.getUpload(upload.uploadId)).toEqual(upload);
      expect(await ledger.listPendingUploads(sha(11))).toEqual([upload.uploadId]);
    });

    it("a commit carrying a blob's record writes it with the version; another pin refuses the commit whole and is named", async () => {
      const { ledger } = await makeLedger();
      const record = (versionId: string) => ({
        sha256: sha(15),
        size: 10,
        verifiedAt: T0,
        etag: '"e"',
        versionId,
      });
      const first = {
        ...commitWrite('pin/a.png', 1, 1, { sha256: sha(15) }),
        blob: { record: record('v1') },
      };
      expect(await ledger.commit(first)).toEqual({ committed: true });
      expect(await ledger.getBlob(sha(15))).toEqual(record('v1'));
      const before = await snapshot(ledger, ['pin/b.png'], 0);
      const other = {
        ...commitWrite('pin/b.png', 1, 2, { sha256: sha(15) }),
        blob: { record: record('v2') },
      };
      expect(await ledger.commit(other)).toMatchObject({ committed: false, pinned: record('v1') });
      expect(await snapshot(ledger, ['pin/b.png'], 0)).toEqual(before);
      const replacing = { ...other, blob: { record: record('v2'), replaces: 'v1' } };
      expect(await ledger.commit(replacing)).toEqual({ committed: true });
      expect(await ledger.getBlob(sha(15))).toEqual(record('v2'));
    });

    it('a commit whose folder holds a live file is refused whole, naming the folder; absent or deleted folders pass', async () => {
      const { ledger } = await makeLedger();
      await commitNext(ledger, 'box');
      await commitNext(ledger, 'gone');
      await commitNext(ledger, 'gone', { sha256: null });
      const before = await snapshot(ledger, ['box/in.png'], 0);
      const upload = pendingUpload({ path: 'box/in.png', sha256: sha(12) });
      await ledger.putUpload(upload);
      await ledger.addPendingUpload(sha(12), upload.uploadId);
      const blocked = {
        ...commitWrite('box/in.png', 1, 4, {
          uploadId: upload.uploadId,
          sha256: sha(12),
          endsUpload: { deduplicated: false },
        }),
        folderRule: { folders: ['nothing', 'box'], change: 'appears' as const },
      };
      expect(await ledger.commit(blocked)).toMatchObject({ committed: false, occupied: 'box' });
      expect(await snapshot(ledger, ['box/in.png'], 0)).toEqual(before);
      expect(await ledger.getUpload(upload.uploadId)).toEqual(upload);
      expect(await ledger.listPendingUploads(sha(12))).toEqual([upload.uploadId]);
      const free = {
        ...commitWrite('gone/in.png', 1, 4),
        folderRule: { folders: ['nothing', 'gone'], change: 'appears' as const },
      };
      expect(await ledger.commit(free)).toEqual({ committed: true });
      expect(await ledger.getHead('gone/in.png')).toMatchObject({ version: 1 });
    });

    it('the folder rule in the write: a file that appears under x/a keeps x/a from becoming a file, whatever the live-files index says, until it goes', async () => {
      const { ledger } = await makeLedger();
      const ruled = (path: string, change: 'appears' | 'stays' | 'goes', options = {}) => {
        const folders = path
          .split('/')
          .slice(0, -1)
          .map((_, i, all) => all.slice(0, i + 1).join('/'));
        return async () => {
          const state = await ledger.readCommitState(path, 0);
          const write = commitWrite(path, state.version + 1, state.feedSeq + 1, options);
          return ledger.commit({ ...write, folderRule: { folders, change } });
        };
      };
      expect(await ruled('x/a/b.png', 'appears')()).toEqual({ committed: true });
      // The file's row records the folders it was counted into: its tombstone takes off those.
      expect((await ledger.readCommitState('x/a/b.png', 0)).counted).toEqual(['x', 'x/a']);
      expect((await ledger.readCommitState('x/a', 0)).counted).toEqual([]);
      // The file at x/a is checked by its own write (its rule row counts x/a/b.png), not by a read of
      // the index a moment before, which may not show x/a/b.png yet.
      const before = await snapshot(ledger, ['x/a'], 0);
      expect(await ruled('x/a', 'appears')()).toMatchObject({ committed: false, holdsFiles: true });
      expect(await snapshot(ledger, ['x/a'], 0)).toEqual(before);
      // A new version of x/a/b.png changes no count; its tombstone counts it out.
      expect(await ruled('x/a/b.png', 'stays')()).toEqual({ committed: true });
      expect(await ruled('x/a', 'appears')()).toMatchObject({ committed: false, holdsFiles: true });
      expect(await ruled('x/a/b.png', 'goes', { sha256: null })()).toEqual({ committed: true });
      expect((await ledger.readCommitState('x/a/b.png', 0)).counted).toEqual([]);
      expect(await ruled('x/a', 'appears')()).toEqual({ committed: true });
      // Now x/a is a live file: a file under it is refused, naming it.
      expect(await ruled('x/a/c.png', 'appears')()).toMatchObject({ committed: false, occupied: 'x/a' });
      expect(await ruled('x/a', 'goes', { sha256: null })()).toEqual({ committed: true });
      expect(await ruled('x/a/c.png', 'appears')()).toEqual({ committed: true });
    });

    it('listVersions: newest first, `limit` at a time, `before` excluded', async () => {
      const { ledger } = await makeLedger();
      for (let i = 0; i < 5; i++) await commitNext(ledger, 'many.txt');
      await commitNext(ledger, 'many.txt.bak');
      const versions = async (o: { limit: number; before?: number }) =>
        (await ledger.listVersions('many.txt', o)).map((v) => v.version);
      expect(await versions({ limit: 10 })).toEqual([5, 4, 3, 2, 1]);
      expect(await versions({ limit: 2 })).toEqual([5, 4]);
      expect(await versions({ limit: 2, before: 4 })).toEqual([3, 2]);
      expect(await versions({ limit: 10, before: 2 })).toEqual([1]);
      expect(await versions({ limit: 10, before: 1 })).toEqual([]);
      expect((await ledger.listVersions('many.txt', { limit: 1 }))[0]).toMatchObject({ path: 'many.txt' });
    });

    it('live files: a tombstone head is no live file; the folder index sees live files under a folder', async () => {
      const { ledger } = await makeLedger();
      await commitNext(ledger, 'docs/a/one.txt');
      await commitNext(ledger, 'docs/b/two.txt');
      await commitNext(ledger, 'docs/b/two.txt', { sha256: null });
      expect(await ledger.getHead('docs/b/two.txt')).toMatchObject({
        version: 2,
        deleted: true,
        sha256: null,
      });
      expect(await ledger.liveFilesAmong(['docs/b/two.txt', 'docs/a/one.txt', 'docs/none'])).toEqual([
        'docs/a/one.txt',
      ]);
      // The index is eventually consistent on DynamoDB: ask until it answers what the heads say.
      await expect.poll(() => ledger.hasLiveFileUnder('docs/a')).toBe(true);
      await expect.poll(() => ledger.hasLiveFileUnder('docs')).toBe(true);
      await expect.poll(() => ledger.hasLiveFileUnder('docs/b')).toBe(false);
      await expect.poll(() => ledger.hasLiveFileUnder('doc')).toBe(false);
      await commitNext(ledger, 'docs/b/two.txt');
      await expect.poll(() => ledger.hasLiveFileUnder('docs/b')).toBe(true);
    });

    it('listLiveFiles: live files under a prefix, in path order, `limit` index entries a page, each at its head', async () => {
      const { ledger } = await makeLedger();
      const under = ['lib/a/1.png', 'lib/a/2.png', 'lib/a/3.png', 'lib/a/sub/4.png', 'lib/a/ü.png'];
      for (const path of [...under, 'lib/ab/5.png', 'lib/b/6.png', 'lib.png', 'other/lib/a/7.png']) {
        await commitNext(ledger, path);
      }
      await commitNext(ledger, 'lib/a/2.png');
      await commitNext(ledger, 'lib/a/gone.png');
      await commitNext(ledger, 'lib/a/gone.png', { sha256: null });
      const list = async (prefix: string, limit: number) => {
        const files: FileVersion[] = [];
        let after: string | undefined;
        for (let pages = 1; ; pages++) {
          const page = await ledger.listLiveFiles({ prefix, after, limit });
          expect(page.files.length).toBeLessThanOrEqual(limit);
          files.push(...page.files);
          if (page.next === undefined) return files;
          after = page.next;
          expect(pages).toBeLessThan(50);
        }
      };
      // The index is eventually consistent on DynamoDB: ask until it answers what the heads say.
      await expect.poll(async () => (await list('lib/a/', 1000)).map((f) => f.path)).toEqual(under);
      expect((await list('lib/a/', 2)).map((f) => f.path)).toEqual(under);
      expect((await list('lib/a/', 1)).map((f) => `${f.path}@${f.version}`)).toEqual([
        'lib/a/1.png@1',
        'lib/a/2.png@2',
        'lib/a/3.png@1',
        'lib/a/sub/4.png@1',
        'lib/a/ü.png@1',
      ]);
      const two = (await list('lib/a/2', 10))[0];
      expect(two).toMatchObject({
        path: 'lib/a/2.png',
        version: 2,
        sha256: sha(2),
        size: 10,
        deleted: false,
      });
      expect(await list('lib/a/sub/', 10)).toHaveLength(1);
      expect(await list('lib/c/', 10)).toEqual([]);
      expect((await list('lib/', 3)).map((f) => f.path)).toEqual([...under, 'lib/ab/5.png', 'lib/b/6.png']);
    });

    it('listLiveFiles with no prefix: every live file of the mirror once, in pages, tombstones left out', async () => {
      const { ledger } = await makeLedger();
      const live = ['a/1.png', 'a/2.png', 'b/3.png', 'c/d/4.png', 'top.png', 'z/5.png'];
      for (const path of live) await commitNext(ledger, path);
      await commitNext(ledger, 'b/gone.png');
      await commitNext(ledger, 'b/gone.png', { sha256: null });
      const all = async (limit: number) => {
        const paths: string[] = [];
        let after: string | undefined;
        for (let pages = 1; ; pages++) {
          const page = await ledger.listLiveFiles({ prefix: '', after, limit });
          paths.push(...page.files.map((f) => f.path));
          if (page.next === undefined) return paths.sort();
          after = page.next;
          expect(pages).toBeLessThan(50);
        }
      };
      await expect.poll(() => all(1000)).toEqual(live);
      expect(await all(2)).toEqual(live);
      expect(await all(1)).toEqual(live);
    });

    it('scanHeads yields every path once, at its newest version', async () => {
      const { ledger } = await makeLedger();
      await commitNext(ledger, 'x/1');
      await commitNext(ledger, 'x/1');
      await commitNext(ledger, 'x/2', { sha256: null });
      const heads: FileVersion[] = [];
      for await (const head of ledger.scanHeads()) heads.push(head);
      expect(heads.map((h) => `${h.path}@${h.version}:${h.deleted}`).sort()).toEqual([
        'x/1@2:false',
        'x/2@1:true',
      ]);
    });
  });

  describe(`${name}: the change feed`, () => {
    it('readFeed returns entries after a seq, oldest first, `limit` at a time; markFannedOut marks one entry', async () => {
      const { ledger } = await makeLedger();
      for (let i = 0; i < 5; i++) await commitNext(ledger, `f/${i}`, { shard: 1 });
      expect((await ledger.readFeed(1, 0, 2)).map((c) => c.seq)).toEqual([1, 2]);
      expect((await ledger.readFeed(1, 2, 10)).map((c) => c.seq)).toEqual([3, 4, 5]);
      expect(await ledger.readFeed(1, 5, 10)).toEqual([]);
      await ledger.markFannedOut(1, 3);
      const entries = await ledger.readFeed(1, 0, 10);
      expect(entries.map((c) => c.fannedOut === true)).toEqual([false, false, true, false, false]);
      await expect(ledger.markFannedOut(1, 6)).rejects.toThrow(/does not exist/);
      expect(await ledger.latestFeedSeq(1)).toBe(5);
    });
  });

  describe(`${name}: contention`, () => {
    const deps = (ledger: Ledger) => ({
      ledger,
      fanout: noFanout,
      clock: systemClock,
      feedShards: 1,
      targets: [],
    });

    it(`${writers} concurrent commits to one path: versions 1..${writers} gap-free, head at the last, each once in the feed`, async () => {
      const { ledger } = await makeLedger();
      const results = await Promise.all(
        Array.from({ length: writers }, (_, i) =>
          commitVersion(deps(ledger), {
            uploadId: `w${i}`,
            path: 'hot.png',
            sha256: sha(i + 1),
            size: 1,
            contentType: 'image/png',
            deleted: false,
          }),
        ),
      );
      const range = Array.from({ length: writers }, (_, i) => i + 1);
      expect(results.map((v) => v.version).sort((a, b) => a - b)).toEqual(range);
      const stored = await ledger.listVersions('hot.png', { limit: 1000 });
      expect(stored.map((v) => v.version)).toEqual([...range].reverse());
      expect(new Set(stored.map((v) => v.uploadId)).size).toBe(writers);
      expect((await ledger.getHead('hot.png'))?.version).toBe(writers);
      const feed = await ledger.readFeed(0, 0, 1000);
      expect(feed.map((c) => c.seq)).toEqual(range);
      expect(feed.map((c) => c.version)).toEqual(range);
    });

    it(`${writers} concurrent commits to one shard: seqs 1..${writers}, and a reader following the feed meanwhile only ever sees a prefix`, async () => {
      const { ledger } = await makeLedger();
      let writing = true;
      const seen: number[] = [];
      const reader = (async () => {
        for (;;) {
          const done = !writing;
          const page = await ledger.readFeed(0, seen.length, 7);
          // Prefix-closed: what follows the cursor is the very next seq, never one past a hole.
          expect(page.map((c) => c.seq)).toEqual(page.map((_, i) => seen.length + i + 1));
          seen.push(...page.map((c) => c.seq));
          if (done && page.length === 0) return;
          // Let the writers' timers (their backoff) run: an in-memory read never waits on I/O.
          await new Promise((resolve) => setImmediate(resolve));
        }
      })();
      const paths = Array.from({ length: writers }, (_, i) => `shard/p${i}`);
      await Promise.all(
        paths.map((path, i) =>
          commitVersion(deps(ledger), {
            uploadId: `s${i}`,
            path,
            sha256: sha(i + 1),
            size: 1,
            contentType: 'image/png',
            deleted: false,
          }),
        ),
      );
      writing = false;
      await reader;
      expect(seen).toEqual(Array.from({ length: writers }, (_, i) => i + 1));
      const feed = await ledger.readFeed(0, 0, 1000);
      expect(feed.map((c) => c.path).sort()).toEqual([...paths].sort());
      expect(await ledger.latestFeedSeq(0)).toBe(writers);
    });

    it('one upload delivered by several workers at once: one version, once in the feed, the upload committed at it', async () => {
      const { ledger } = await makeLedger();
      const workers = Math.max(3, Math.floor(writers / 3));
      const upload = pendingUpload({ path: 'dup.png', sha256: sha(99) });
      await ledger.putUpload(upload);
      await ledger.addPendingUpload(sha(99), upload.uploadId);
      // Another path on the same shard keeps moving the feed meanwhile.
      const results = await Promise.all([
        ...Array.from({ length: workers }, () =>
          commitVersion(deps(ledger), {
            uploadId: upload.uploadId,
            path: 'dup.png',
            sha256: sha(99),
            size: 10,
            contentType: 'image/png',
            deleted: false,
            endsUpload: { deduplicated: false },
          }),
        ),
        commitVersion(deps(ledger), {
          uploadId: 'bystander',
          path: 'other.png',
          sha256: sha(98),
          size: 1,
          contentType: 'image/png',
          deleted: false,
        }),
      ]);
      expect(results.slice(0, workers).map((v) => `${v.version}:${v.uploadId}`)).toEqual(
        Array.from({ length: workers }, () => `1:${upload.uploadId}`),
      );
      expect((await ledger.listVersions('dup.png', { limit: 10 })).map((v) => v.version)).toEqual([1]);
      const feed = await ledger.readFeed(0, 0, 10);
      expect(feed.map((c) => c.seq)).toEqual([1, 2]);
      expect(feed.filter((c) => c.path === 'dup.png')).toHaveLength(1);
      expect(await ledger.getUpload(upload.uploadId)).toMatchObject({ status: 'committed', version: 1 });
      expect(await ledger.listPendingUploads(sha(99))).toEqual([]);
      expect(shardOf('dup.png', 1)).toBe(0);
    });
  });

  describe(`${name}: targets, watermarks and agents`, () => {
    const state = (
      appliedVersion: number,
      status: TargetState['status'],
      extra: Partial<TargetState> = {},
    ) => ({
      targetId: 'alpha',
      path: 't.png',
      appliedVersion,
      status,
      appliedAt: at(appliedVersion),
      ...extra,
    });

    it('a target state only moves forward; at the same version only until verified', async () => {
      const { ledger } = await makeLedger();
      expect(await ledger.getTargetState('t.png', 'alpha')).toBeUndefined();
      expect(await ledger.recordTargetState(state(2, 'copied', { etag: '"x"' }))).toBe(true);
      expect(await ledger.recordTargetState(state(1, 'verified'))).toBe(false);
      expect(await ledger.getTargetState('t.png', 'alpha')).toEqual(state(2, 'copied', { etag: '"x"' }));
      expect(await ledger.recordTargetState(state(2, 'verified', { etag: '"x"' }))).toBe(true);
      expect(await ledger.recordTargetState(state(2, 'copied'))).toBe(false);
      expect(await ledger.recordTargetState(state(2, 'verified'))).toBe(false);
      expect(await ledger.recordTargetState(state(3, 'failed', { reason: 'gone' }))).toBe(true);
      expect(await ledger.getTargetState('t.png', 'alpha')).toEqual(state(3, 'failed', { reason: 'gone' }));
    });

    it('a failure is recorded beside the applied version, which it leaves; the next state clears it', async () => {
      const { ledger } = await makeLedger();
      await ledger.recordTargetState(state(1, 'verified', { etag: '"e"' }));
      await ledger.recordTargetFailure({
        targetId: 'alpha',
        path: 't.png',
        version: 2,
        reason: 'x'.repeat(1200),
        at: at(50),
      });
      expect(await ledger.getTargetState('t.png', 'alpha')).toEqual({
        ...state(1, 'verified', { etag: '"e"' }),
        failure: { version: 2, reason: 'x'.repeat(1000), at: at(50) },
      });
      expect(await ledger.recordTargetState(state(2, 'verified'))).toBe(true);
      expect(await ledger.getTargetState('t.png', 'alpha')).toEqual(state(2, 'verified'));
      // A failure before anything was applied: version 0, failed.
      await ledger.recordTargetFailure({
        targetId: 'beta',
        path: 't.png',
        version: 1,
        reason: 'denied',
        at: at(60),
      });
      expect(await ledger.getTargetState('t.png', 'beta')).toMatchObject({
        targetId: 'beta',
        appliedVersion: 0,
        status: 'failed',
        failure: { version: 1, reason: 'denied', at: at(60) },
      });
    });

    it("readForReplication reads the path's head, the target's row and the named blob, each as stored", async () => {
      const { ledger } = await makeLedger();
      expect(await ledger.readForReplication('t.png', 'alpha', sha(7))).toEqual({
        head: undefined,
        state: undefined,
        blob: undefined,
      });
      const first = await commitNext(ledger, 't.png', { sha256: sha(7) });
      const second = await commitNext(ledger, 't.png', { sha256: sha(8) });
      await ledger.recordTargetState(state(1, 'verified', { etag: '"e"' }));
      await ledger.recordTargetState({ ...state(2, 'copied'), targetId: 'beta' });
      const blob = { sha256: sha(7), size: 10, verifiedAt: T0, etag: '"e"', versionId: 'v1' };
      await ledger.putBlob(blob);
      expect(first.version.version).toBe(1);
      expect(await ledger.readForReplication('t.png', 'alpha', sha(7))).toEqual({
        head: second.version,
        state: state(1, 'verified', { etag: '"e"' }),
        blob,
      });
      // No blob named: none read; another target's row, another path's nothing.
      expect(await ledger.readForReplication('t.png', 'beta', undefined)).toEqual({
        head: second.version,
        state: { ...state(2, 'copied'), targetId: 'beta' },
        blob: undefined,
      });
      expect(await ledger.readForReplication('other.png', 'alpha', sha(8))).toEqual({
        head: undefined,
        state: undefined,
        blob: undefined,
      });
    });

    it('listTargetStates gives the known states in the order asked; forgetTargetState forgets one', async () => {
      const { ledger } = await makeLedger();
      await ledger.recordTargetState(state(1, 'copied'));
      await ledger.recordTargetState({ ...state(1, 'verified'), targetId: 'gamma' });
      await ledger.recordTargetState({ ...state(1, 'verified'), targetId: 'alpha', path: 'other.png' });
      expect(
        (await ledger.listTargetStates('t.png', ['gamma', 'beta', 'alpha'])).map((s) => s.targetId),
      ).toEqual(['gamma', 'alpha']);
      await ledger.forgetTargetState('t.png', 'alpha');
      expect(await ledger.getTargetState('t.png', 'alpha')).toBeUndefined();
      expect(await ledger.getTargetState('other.png', 'alpha')).toMatchObject({ appliedVersion: 1 });
      // Forgotten, any version may be recorded again.
      expect(await ledger.recordTargetState(state(1, 'copied'))).toBe(true);
    });

    it('watermarks are kept per target; an agent heartbeat is read from its row', async () => {
      const fixture = await makeLedger();
      const { ledger } = fixture;
      expect(await ledger.getWatermark('alpha')).toBeUndefined();
      await ledger.setWatermark('alpha', [3, 0, 7]);
      await ledger.setWatermark('alpha', [4, 1, 7]);
      expect(await ledger.getWatermark('alpha')).toEqual([4, 1, 7]);
      expect(await ledger.getWatermark('beta')).toBeUndefined();
      expect(await ledger.getAgentReport('gamma')).toBeUndefined();
      await fixture.recordAgentHeartbeat('gamma', at(30));
      expect(await ledger.getAgentReport('gamma')).toEqual({ heartbeatAt: at(30), conditions: [] });
      await fixture.recordAgentHeartbeat('gamma', at(40), ['disk-full']);
      expect(await ledger.getAgentReport('gamma')).toEqual({
        heartbeatAt: at(40),
        conditions: ['disk-full'],
      });
      // An agent rebuilding its folder from the feed, first before it knows how far behind it is.
      await fixture.recordAgentHeartbeat('gamma', at(50), [], {});
      expect(await ledger.getAgentReport('gamma')).toEqual({
        heartbeatAt: at(50),
        conditions: [],
        rebuilding: {},
      });
      await fixture.recordAgentHeartbeat('gamma', at(60), [], { since: at(5) });
      expect(await ledger.getAgentReport('gamma')).toEqual({
        heartbeatAt: at(60),
        conditions: [],
        rebuilding: { since: at(5) },
      });
    });

    it("the lag monitor's record keeps watermark and figures; setWatermark moves the watermark alone", async () => {
      const { ledger } = await makeLedger();
      expect(await ledger.getLagRecord('alpha')).toBeUndefined();
      const figures = {
        lagSeconds: 12.5,
        pending: 3,
        pendingCapped: false,
        caughtUp: true,
        measuredAt: at(40),
        oldestPending: { path: 'a.png', version: 2, committedAt: at(2) },
      };
      expect(await ledger.putLagRecord('alpha', { cursor: [2, 0], figures })).toBe(true);
      await ledger.setWatermark('alpha', [3, 1]);
      expect(await ledger.getLagRecord('alpha')).toEqual({ cursor: [3, 1], figures, rewinds: 0 });
      expect(await ledger.getWatermark('alpha')).toEqual([3, 1]);
      const { oldestPending: _, ...without } = figures;
      await ledger.putLagRecord('alpha', { cursor: [4, 1], figures: without });
      expect(await ledger.getLagRecord('alpha')).toEqual({ cursor: [4, 1], figures: without, rewinds: 0 });
      expect(await ledger.getLagRecord('beta')).toBeUndefined();
    });

    it("the lag monitor's record keeps the selection it was measured for; a rewind keeps it too", async () => {
      const { ledger } = await makeLedger();
      await commitNext(ledger, 's/a.png', { shard: 0 });
      expect(await ledger.putLagRecord('alpha', { cursor: [1, 0], selection: 'public/' })).toBe(true);
      expect(await ledger.getLagRecord('alpha')).toMatchObject({ cursor: [1, 0], selection: 'public/' });
      await ledger.rewindWatermark('alpha', 's/a.png', 1);
      expect(await ledger.getLagRecord('alpha')).toMatchObject({ cursor: [0, 0], selection: 'public/' });
      expect(await ledger.putLagRecord('alpha', { cursor: [1, 0], rewinds: 1, selection: '' })).toBe(true);
      expect(await ledger.getLagRecord('alpha')).toMatchObject({ selection: '' });
      // A record saved without one (before it was kept) has none.
      await ledger.putLagRecord('beta', { cursor: [0, 0] });
      expect((await ledger.getLagRecord('beta'))?.selection).toBeUndefined();
    });

    it('rewindWatermark moves a target’s watermark back below a change, never forward; a save that did not see it is refused', async () => {
      const { ledger } = await makeLedger();
      await commitNext(ledger, 'r/a.png', { shard: 1 });
      const second = await commitNext(ledger, 'r/b.png', { shard: 1 });
      await commitNext(ledger, 'r/c.png', { shard: 1 });
      // No record yet: nothing to move (the monitor's first run reads the feed from its start).
      await ledger.rewindWatermark('alpha', 'r/b.png', 1);
      expect(await ledger.getLagRecord('alpha')).toBeUndefined();
      expect(await ledger.putLagRecord('alpha', { cursor: [0, 3], rewinds: 0 })).toBe(true);
      await ledger.rewindWatermark('alpha', 'r/b.png', 1);
      expect(await ledger.getLagRecord('alpha')).toMatchObject({
        cursor: [0, second.change.seq - 1],
        rewinds: 1,
      });
      // Never forward, and another target's watermark is not touched.
      await ledger.rewindWatermark('alpha', 'r/c.png', 1);
      expect(await ledger.getLagRecord('alpha')).toMatchObject({ cursor: [0, 1], rewinds: 1 });
      // A run that read the record before the rewind saves nothing over it...
      expect(await ledger.putLagRecord('alpha', { cursor: [0, 3], rewinds: 0 })).toBe(false);
      expect(await ledger.getLagRecord('alpha')).toMatchObject({ cursor: [0, 1], rewinds: 1 });
      // ...a run that read it after does.
      expect(await ledger.putLagRecord('alpha', { cursor: [0, 3], rewinds: 1 })).toBe(true);
      expect(await ledger.getLagRecord('alpha')).toMatchObject({ cursor: [0, 3], rewinds: 1 });
      expect(await ledger.getLagRecord('beta')).toBeUndefined();
    });

    it("a target's kept multipart copy of a path: replaced by the next, forgotten only by its own upload id", async () => {
      const { ledger } = await makeLedger();
      expect(await ledger.getCopyUpload('alpha', 'big/a.mov')).toBeUndefined();
      const first = {
        uploadId: 'mp-1',
        version: 2,
        sha256: 'ab'.repeat(32),
        sourceVersionId: 'v-1',
        partBytes: 512 * 1024 * 1024,
        startedAt: at(1),
        expiresAt: at(2),
      };
      await ledger.putCopyUpload('alpha', 'big/a.mov', first);
      expect(await ledger.getCopyUpload('alpha', 'big/a.mov')).toEqual(first);
      expect(await ledger.getCopyUpload('beta', 'big/a.mov')).toBeUndefined();
      expect(await ledger.getCopyUpload('alpha', 'big/b.mov')).toBeUndefined();
      // The target's state row of the path is a different item: neither touches the other.
      expect(await ledger.getTargetState('big/a.mov', 'alpha')).toBeUndefined();
      const { sourceVersionId: _, ...second } = { ...first, uploadId: 'mp-2', version: 3 };
      await ledger.putCopyUpload('alpha', 'big/a.mov', second);
      await ledger.deleteCopyUpload('alpha', 'big/a.mov', 'mp-1');
      expect(await ledger.getCopyUpload('alpha', 'big/a.mov')).toEqual(second);
      await ledger.deleteCopyUpload('alpha', 'big/a.mov', 'mp-2');
      expect(await ledger.getCopyUpload('alpha', 'big/a.mov')).toBeUndefined();
      await ledger.deleteCopyUpload('alpha', 'big/a.mov', 'mp-2');
    });

    it('appliedVersions reads many paths of one target at once (more than one batch)', async () => {
      const { ledger } = await makeLedger();
      const paths = Array.from({ length: 130 }, (_, i) => `many/${i}.png`);
      for (const [i, path] of paths.entries()) {
        if (i % 3 !== 0) await ledger.recordTargetState({ ...state(1 + (i % 5), 'copied'), path });
      }
      await ledger.recordTargetState({ ...state(9, 'copied'), targetId: 'beta', path: 'many/0.png' });
      const applied = await ledger.appliedVersions('alpha', [...paths, 'many/1.png']);
      expect(applied).toEqual(
        new Map(paths.flatMap((p, i) => (i % 3 !== 0 ? [[p, 1 + (i % 5)] as const] : []))),
      );
      expect(await ledger.appliedVersions('alpha', [])).toEqual(new Map());
    });

    it("reconcile's checkpoint: stored, replaced, its position cleared at a cycle's end", async () => {
      const { ledger } = await makeLedger();
      expect(await ledger.getReconcileCheckpoint()).toBeUndefined();
      await ledger.putReconcileCheckpoint({ after: 'somewhere', cycleStartedAt: at(1), heads: 200 });
      expect(await ledger.getReconcileCheckpoint()).toEqual({
        after: 'somewhere',
        cycleStartedAt: at(1),
        heads: 200,
      });
      await ledger.putReconcileCheckpoint({ cycleStartedAt: at(1), heads: 250, lastCycleEndedAt: at(2) });
      expect(await ledger.getReconcileCheckpoint()).toEqual({
        cycleStartedAt: at(1),
        heads: 250,
        lastCycleEndedAt: at(2),
      });
    });

    it("reconcile's checkpoint carries an unfinished listing's position (a map) and drops it when it is absent", async () => {
      const { ledger } = await makeLedger();
      const walk = { after: 'somewhere', cycleStartedAt: at(1), heads: 200 };
      await ledger.putReconcileCheckpoint({
        ...walk,
        listing: { targetId: 'beta', after: 'mirror/a b+c.jpg' },
      });
      expect(await ledger.getReconcileCheckpoint()).toEqual({
        ...walk,
        listing: { targetId: 'beta', after: 'mirror/a b+c.jpg' },
      });
      // A target not begun yet: no key to list after.
      await ledger.putReconcileCheckpoint({ ...walk, listing: { targetId: 'gamma' } });
      expect(await ledger.getReconcileCheckpoint()).toEqual({ ...walk, listing: { targetId: 'gamma' } });
      // The listing done: the position goes, the walk's fields stay.
      await ledger.putReconcileCheckpoint({ ...walk, heads: 250 });
      expect(await ledger.getReconcileCheckpoint()).toEqual({ ...walk, heads: 250 });
    });

    it('pageHeads pages through every head once, a bounded page at a time', async () => {
      const { ledger } = await makeLedger();
      const paths = ['p/a.png', 'p/b.png', 'q/c.png', 'r/d.png', 's/e.png'];
      for (const [i, path] of paths.entries()) {
        expect(await ledger.commit(commitWrite(path, 1, i + 1))).toEqual({ committed: true });
      }
      const seen: string[] = [];
      let after: string | undefined;
      for (let pages = 1; ; pages++) {
        const page = await ledger.pageHeads({ after, limit: 2 });
        expect(page.heads.length).toBeLessThanOrEqual(2);
        seen.push(...page.heads.map((h) => h.path));
        if (page.next === undefined) break;
        after = page.next;
        expect(pages).toBeLessThan(50);
      }
      expect(seen.sort()).toEqual(paths);
    });
  });

  describe(`${name}: copies`, () => {
    it('what goes in and what comes out is a copy: changing it changes nothing stored', async () => {
      const { ledger } = await makeLedger();
      const upload = pendingUpload({
        challenge: { nonce: 'n', ranges: [{ offset: 0, length: 1 }], expiresAt: T0 },
      });
      await ledger.putUpload(upload);
      (upload as { path: string }).path = 'changed-after-put';
      const read = (await ledger.getUpload(upload.uploadId)) as Upload;
      (read as { status: string }).status = 'committed';
      (read.challenge?.ranges as { offset: number }[])[0] = { offset: 99 };
      expect(await ledger.getUpload(upload.uploadId)).toMatchObject({
        path: 'media/a.png',
        status: 'pending',
        challenge: { ranges: [{ offset: 0, length: 1 }] },
      });

      const write = await commitNext(ledger, 'c.png');
      (write.version as { size: number }).size = 12345;
      const head = (await ledger.getHead('c.png')) as FileVersion;
      (head as { version: number }).version = 9;
      const [entry] = await ledger.readFeed(0, 0, 1);
      (entry as { seq: number }).seq = 9;
      expect(await ledger.readCommitState('c.png', 0)).toMatchObject({ version: 1, feedSeq: 1 });
      expect(await ledger.getHead('c.png')).toMatchObject({ version: 1, size: 10 });
      expect((await ledger.readFeed(0, 0, 1))[0]).toMatchObject({ seq: 1, size: 10 });

      const cursor = [1, 2];
      await ledger.setWatermark('alpha', cursor);
      cursor[0] = 5;
      const mark = (await ledger.getWatermark('alpha')) as number[];
      mark[1] = 5;
      expect(await ledger.getWatermark('alpha')).toEqual([1, 2]);
    });
  });
}
