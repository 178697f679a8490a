/**
 * Verified bytes are pinned by object version: other bytes written at blobs/<sha256> after
 * verification never replace them. The ingest runs against an in-memory versioned origin
 * (test/support/versioned-blobs.ts) and InMemoryLedger, which keeps DynamoLedger's contract
 * (test/support/ledger-contract.ts runs the same suite on both): no emulator, no network port.
 */
import { randomUUID } from 'node:crypto';
import { beforeEach, describe, expect, it } from 'vitest';
import type { InMemoryLedger } from '../../../functions/adapters/in-memory-ledger.js';
import { commitVersion } from '../../../functions/core/commit.js';
import { ingestBlob } from '../../../functions/core/ingest.js';
import { contentUrl, type UploadDeps } from '../../../functions/core/uploads.js';
import { randomBytes, sha256Hex } from '../../support/domain.js';
import { type InMemoryCore, inMemoryCore } from '../../support/in-memory-core.js';
import { VersionedBlobs } from '../../support/versioned-blobs.js';

type Setup = InMemoryCore<InMemoryLedger, VersionedBlobs>;

async function setup(versioned = true): Promise<Setup> {
  return inMemoryCore({ blobs: new VersionedBlobs({ versioned }) });
}

const keyOf = (sha256: string) => `blobs/${sha256}`;
/** The S3 event of one object version at blobs/<sha256>. */
const eventOf = (sha256: string, size: number, versionId: string | undefined) => ({
  key: keyOf(sha256),
  size,
  etag: undefined,
  versionId,
});

/** Stores good bytes and runs the ingest on their event: the blob is verified and pinned. */
async function verified(s: Setup, bytes = randomBytes(2048)) {
  const sha256 = sha256Hex(bytes);
  const versionId = s.blobs.put(sha256, bytes);
  const outcome = await ingestBlob(s.deps, eventOf(sha256, bytes.length, versionId));
  expect(outcome.kind).toBe('committed');
  return { sha256, bytes, versionId };
}

/** Other bytes of the same length: a one-bit change. */
const tampered = (bytes: Buffer) => {
  const out = Buffer.from(bytes);
  out[out.length - 1] = (out[out.length - 1] as number) ^ 1;
  return out;
};

/** A pending image/png upload of `bytes`-sized content at `path`, with its pointer: returns its id. */
async function waiting(ledger: Setup['ledger'], path: string, sha256: string, size: number): Promise<string> {
  const uploadId = randomUUID();
  const now = new Date().toISOString();
  await ledger.putUpload({
    uploadId,
    path,
    sha256,
    size,
    contentType: 'image/png',
    status: 'pending',
    createdAt: now,
    updatedAt: now,
  });
  await ledger.addPendingUpload(sha256, uploadId);
  return uploadId;
}

describe('ingest with a versioned origin', () => {
  let s: Setup;
  beforeEach(async () => {
    s = await setup();
  });

  it('records the verified object version in the ledger', async () => {
    const { sha256, versionId } = await verified(s);
    expect(versionId).toBeDefined();
    expect((await s.ledger.getBlob(sha256))?.versionId).toBe(versionId);
  });

  it('other bytes written over a verified blob: only their version is deleted, the pin and the verified bytes stay', async () => {
    const { sha256, bytes, versionId } = await verified(s);
    const bad = tampered(bytes);
    const badVersion = s.blobs.put(sha256, bad);
    expect(s.blobs.current(sha256)).toEqual(bad);

    const outcome = await ingestBlob(s.deps, eventOf(sha256, bad.length, badVersion));

    expect(outcome).toMatchObject({
      kind: 'rejected',
      uploads: [],
      discarded: { versionId: badVersion, reason: expect.stringMatching(/sha256 mismatch/) },
    });
    expect(s.blobs.versionsOf(sha256).map((v) => v.versionId)).toEqual([versionId]);
    expect(s.blobs.current(sha256)).toEqual(bytes);
    expect(await s.ledger.getBlob(sha256)).toMatchObject({ versionId, size: bytes.length });
    // The only delete named the rejected version; nothing was deleted by key alone.
    expect(s.blobs.calls.filter((c) => c.op === 'delete')).toEqual([
      { op: 'delete', sha256, versionId: badVersion },
    ]);
    expect(s.deps.metrics.total('IngestRejected')).toBe(1);
    expect(s.deps.metrics.total('BlobVersionsDiscarded')).toBe(1);
    expect(s.deps.metrics.total('BlobsVerified')).toBe(1);
  });

  it('an overwrite of another size is rejected without reading its bytes', async () => {
    const { sha256, bytes, versionId } = await verified(s);
    const badVersion = s.blobs.put(sha256, Buffer.concat([bytes, Buffer.from('x')]));
    const before = s.blobs.calls.length;
    const outcome = await ingestBlob(s.deps, {
      key: keyOf(sha256),
      size: bytes.length + 1,
      etag: undefined,
      versionId: badVersion,
    });
    expect(outcome).toMatchObject({
      discarded: { versionId: badVersion, reason: expect.stringMatching(/size mismatch/) },
    });
    expect(s.blobs.calls.slice(before).map((c) => c.op)).not.toContain('hash');
    expect(s.blobs.versionsOf(sha256).map((v) => v.versionId)).toEqual([versionId]);
    expect(s.deps.metrics.total('IngestRejected')).toBe(1);
  });

  it('an event without a versionId ("cannot tell which"): the current version is checked, and deleted by its id if not the pinned one', async () => {
    const { sha256, bytes, versionId } = await verified(s);
    const badVersion = s.blobs.put(sha256, tampered(bytes));
    const outcome = await ingestBlob(s.deps, eventOf(sha256, bytes.length, undefined));
    expect(outcome).toMatchObject({ kind: 'rejected', discarded: { versionId: badVersion } });
    expect(s.blobs.calls.filter((c) => c.op === 'delete')).toEqual([
      { op: 'delete', sha256, versionId: badVersion },
    ]);
    expect(s.blobs.versionsOf(sha256).map((v) => v.versionId)).toEqual([versionId]);
    expect((await s.ledger.getBlob(sha256))?.versionId).toBe(versionId);
  });

  it('an event for the verified version itself is a duplicate: nothing hashed, deleted or re-verified', async () => {
    const { sha256, bytes, versionId } = await verified(s);
    const before = s.blobs.calls.length;
    const verifiedAt = (await s.ledger.getBlob(sha256))?.verifiedAt;
    for (let i = 0; i < 3; i++) {
      const outcome = await ingestBlob(s.deps, eventOf(sha256, bytes.length, versionId));
      expect(outcome).toEqual({ kind: 'committed', sha256, committed: [], rejected: [] });
    }
    // One HEAD of the event's version each (which upload sent it: the ledger read before the proof
    // takes that upload's pointer alone), and nothing else of storage.
    expect(s.blobs.calls.slice(before)).toEqual(
      Array.from({ length: 3 }, () => ({ op: 'stat', sha256, versionId })),
    );
    expect((await s.ledger.getBlob(sha256))?.verifiedAt).toBe(verifiedAt);
    expect(s.deps.metrics.total('BlobsVerified')).toBe(1);
  });

  it('an event without a versionId while the pinned version is current: a duplicate, nothing deleted', async () => {
    const { sha256, bytes, versionId } = await verified(s);
    const outcome = await ingestBlob(s.deps, eventOf(sha256, bytes.length, undefined));
    expect(outcome).toEqual({ kind: 'committed', sha256, committed: [], rejected: [] });
    expect(s.blobs.calls.filter((c) => c.op === 'delete')).toEqual([]);
    expect(s.blobs.versionsOf(sha256).map((v) => v.versionId)).toEqual([versionId]);
  });

  it('a duplicate event for the verified version commits no claim made after those bytes were stored', async () => {
    const { sha256, bytes, versionId } = await verified(s);
    // A claim of content already verified: it must prove possession or send the bytes itself.
    const uploadId = randomUUID();
    const claimedAt = new Date(Date.now() + 10 * 60 * 1000);
    await s.ledger.putUpload({
      uploadId,
      path: 'late/claim.png',
      sha256,
      size: bytes.length,
      contentType: 'image/png',
      status: 'pending',
      expiresAt: new Date(claimedAt.getTime() + 15 * 60 * 1000).toISOString(),
      createdAt: claimedAt.toISOString(),
      updatedAt: claimedAt.toISOString(),
    });
    await s.ledger.addPendingUpload(sha256, uploadId);
    for (const event of [versionId, undefined]) {
      const outcome = await ingestBlob(s.deps, eventOf(sha256, bytes.length, event));
      expect(outcome).toMatchObject({ kind: 'committed', committed: [] });
    }
    expect(await s.ledger.getUpload(uploadId)).toMatchObject({ status: 'pending' });
    expect(s.sent).toEqual([]);
  });

  it('a redelivered event for a version already discarded is ignored and deletes nothing more', async () => {
    const { sha256, bytes, versionId } = await verified(s);
    const badVersion = s.blobs.put(sha256, tampered(bytes));
    const event = { key: keyOf(sha256), size: bytes.length, etag: undefined, versionId: badVersion };
    await ingestBlob(s.deps, event);
    const deletes = s.blobs.calls.filter((c) => c.op === 'delete').length;
    expect((await ingestBlob(s.deps, event)).kind).toBe('ignored');
    expect(s.blobs.calls.filter((c) => c.op === 'delete').length).toBe(deletes);
    expect(s.blobs.versionsOf(sha256).map((v) => v.versionId)).toEqual([versionId]);
    expect(s.deps.metrics.total('IngestRejected')).toBe(1);
  });

  it('the same bytes written again: the new version goes too (nobody reads it), and it is no rejection', async () => {
    const { sha256, bytes, versionId } = await verified(s);
    const again = s.blobs.put(sha256, bytes);
    const outcome = await ingestBlob(s.deps, eventOf(sha256, bytes.length, again));
    expect(outcome).toMatchObject({
      discarded: { versionId: again, reason: 'duplicate of the pinned version' },
    });
    expect(s.blobs.versionsOf(sha256).map((v) => v.versionId)).toEqual([versionId]);
    expect(s.deps.metrics.total('IngestRejected')).toBe(0);
  });

  it('bad bytes over a pinned blob commit nothing: a claim waiting for that content stays pending', async () => {
    const { sha256, bytes, versionId } = await verified(s);
    const uploadId = await waiting(s.ledger, 'late/waiting.png', sha256, bytes.length);
    const badVersion = s.blobs.put(sha256, tampered(bytes));
    const outcome = await ingestBlob(s.deps, eventOf(sha256, bytes.length, badVersion));
    // Whoever wrote those bytes proved nothing: the claim is left to its proof or its own good bytes.
    expect(outcome).toMatchObject({ kind: 'rejected', uploads: [], discarded: { versionId: badVersion } });
    expect(await s.ledger.getUpload(uploadId)).toMatchObject({ status: 'pending' });
    expect(await s.ledger.listPendingUploads(sha256)).toEqual([uploadId]);
    expect(s.sent).toEqual([]);
    expect((await s.ledger.getBlob(sha256))?.versionId).toBe(versionId);
    // Good bytes of its own then commit it against the pinned version.
    const own = s.blobs.put(sha256, bytes);
    const after = await ingestBlob(s.deps, eventOf(sha256, bytes.length, own));
    expect(after).toMatchObject({
      kind: 'committed',
      committed: [{ uploadId, path: 'late/waiting.png', version: 1 }],
    });
    expect(s.sent.map((m) => `${m.path}@${m.version}:${m.sha256}`)).toEqual([`late/waiting.png@1:${sha256}`]);
    expect(s.blobs.versionsOf(sha256).map((v) => v.versionId)).toEqual([versionId]);
  });

  it('bad bytes over a pinned blob that name their upload end that upload at once, with the mismatch (not later as "expired"); another claim stays pending', async () => {
    const { sha256, bytes, versionId } = await verified(s);
    const sender = await waiting(s.ledger, 'bad/sender.png', sha256, bytes.length);
    const other = await waiting(s.ledger, 'late/other.png', sha256, bytes.length);
    const badVersion = s.blobs.put(sha256, tampered(bytes), sender);
    const outcome = await ingestBlob(s.deps, eventOf(sha256, bytes.length, badVersion));
    expect(outcome).toMatchObject({
      kind: 'rejected',
      uploads: [sender],
      discarded: { versionId: badVersion },
    });
    expect(await s.ledger.getUpload(sender)).toMatchObject({
      status: 'rejected',
      reason: expect.stringMatching(/^sha256 mismatch: the stored bytes hash to [0-9a-f]{64}$/),
    });
    expect(await s.ledger.getUpload(other)).toMatchObject({ status: 'pending' });
    expect(await s.ledger.listPendingUploads(sha256)).toEqual([other]);
    expect(s.sent).toEqual([]);
    expect((await s.ledger.getBlob(sha256))?.versionId).toBe(versionId);
    // A duplicate delivery of that event finds its upload ended: nothing more happens.
    const again = await ingestBlob(s.deps, eventOf(sha256, bytes.length, badVersion));
    expect(again.kind).not.toBe('committed');
    expect(await s.ledger.getUpload(sender)).toMatchObject({ status: 'rejected' });
  });

  it('bad bytes sent through one upload reject that upload only: another waiting for the same content stays pending, then commits on its own bytes', async () => {
    // Anyone who knows a file's hash and size can claim it elsewhere and send junk: the victim's
    // upload (say, its parts still on their way) must not end with the attacker's.
    const bytes = randomBytes(4096);
    const sha256 = sha256Hex(bytes);
    const claim = (path: string) => waiting(s.ledger, path, sha256, bytes.length);
    const victim = await claim('cms/victim.png');
    const attacker = await claim('junk/attacker.png');
    const junk = s.blobs.put(sha256, tampered(bytes), attacker);
    const outcome = await ingestBlob(s.deps, eventOf(sha256, bytes.length, junk));
    expect(outcome).toMatchObject({ kind: 'rejected', uploads: [attacker] });
    expect(await s.ledger.getUpload(attacker)).toMatchObject({ status: 'rejected' });
    expect(await s.ledger.getUpload(victim)).toMatchObject({ status: 'pending' });
    expect(await s.ledger.listPendingUploads(sha256)).toEqual([victim]);
    const own = s.blobs.put(sha256, bytes, victim);
    const after = await ingestBlob(s.deps, eventOf(sha256, bytes.length, own));
    expect(after).toMatchObject({
      kind: 'committed',
      committed: [{ uploadId: victim, path: 'cms/victim.png' }],
    });
  });

  it('bad bytes that name no upload (written around the API) still reject every upload waiting for them', async () => {
    const bytes = randomBytes(1024);
    const sha256 = sha256Hex(bytes);
    const uploadId = await waiting(s.ledger, 'cms/any.png', sha256, bytes.length);
    const junk = s.blobs.put(sha256, tampered(bytes));
    const outcome = await ingestBlob(s.deps, eventOf(sha256, bytes.length, junk));
    expect(outcome).toMatchObject({ kind: 'rejected', uploads: [uploadId] });
  });

  it('the pinned version lost behind our back: good new bytes are verified and pinned in its place', async () => {
    const { sha256, bytes, versionId } = await verified(s);
    s.blobs.lose(sha256, versionId as string);
    const again = s.blobs.put(sha256, bytes);
    const outcome = await ingestBlob(s.deps, eventOf(sha256, bytes.length, again));
    expect(outcome.kind).toBe('committed');
    expect((await s.ledger.getBlob(sha256))?.versionId).toBe(again);
    expect(s.blobs.versionsOf(sha256).map((v) => v.versionId)).toEqual([again]);
  });

  it('the pinned version lost and bad bytes arrive: they are deleted and the record of the lost bytes goes', async () => {
    const { sha256, bytes, versionId } = await verified(s);
    s.blobs.lose(sha256, versionId as string);
    const badVersion = s.blobs.put(sha256, tampered(bytes));
    const outcome = await ingestBlob(s.deps, eventOf(sha256, bytes.length, badVersion));
    expect(outcome.kind).toBe('rejected');
    expect(s.blobs.versionsOf(sha256)).toEqual([]);
    expect(await s.ledger.getBlob(sha256)).toBeUndefined();
  });

  it('two versions of good bytes verified at once: one is pinned, the other deleted, the pin exists', async () => {
    const bytes = randomBytes(4096);
    const sha256 = sha256Hex(bytes);
    const first = s.blobs.put(sha256, bytes);
    const second = s.blobs.put(sha256, bytes);
    await Promise.all(
      [first, second].map((versionId) =>
        ingestBlob(s.deps, { key: keyOf(sha256), size: bytes.length, etag: undefined, versionId }),
      ),
    );
    const pinned = (await s.ledger.getBlob(sha256))?.versionId;
    expect([first, second]).toContain(pinned);
    expect(s.blobs.versionsOf(sha256).map((v) => v.versionId)).toEqual([pinned]);
  });

  it('bad and good bytes both stored before any verification: the waiting upload commits, whichever event comes first', async () => {
    for (const badFirst of [true, false]) {
      const t = await setup();
      const good = randomBytes(3000);
      const sha256 = sha256Hex(good);
      const uploadId = await waiting(t.ledger, `race/${badFirst}.png`, sha256, good.length);
      const badVersion = t.blobs.put(sha256, tampered(good));
      const goodVersion = t.blobs.put(sha256, good);
      const events = [badVersion, goodVersion].map((versionId) => eventOf(sha256, good.length, versionId));
      for (const event of badFirst ? events : [...events].reverse()) await ingestBlob(t.deps, event);
      expect(await t.ledger.getUpload(uploadId), `bad first: ${badFirst}`).toMatchObject({
        status: 'committed',
        version: 1,
      });
      expect((await t.ledger.getBlob(sha256))?.versionId).toBe(goodVersion);
      expect(t.blobs.versionsOf(sha256).map((v) => v.versionId)).toEqual([goodVersion]);
      expect(t.deps.metrics.total('IngestRejected')).toBe(1);
    }
  });

  it('bad bytes before any verification: only their version is deleted, and nothing is pinned', async () => {
    const bytes = randomBytes(1024);
    const sha256 = sha256Hex(bytes);
    const badVersion = s.blobs.put(sha256, tampered(bytes));
    const outcome = await ingestBlob(s.deps, eventOf(sha256, bytes.length, badVersion));
    expect(outcome.kind).toBe('rejected');
    expect(s.blobs.calls.filter((c) => c.op === 'delete')).toEqual([
      { op: 'delete', sha256, versionId: badVersion },
    ]);
    expect(await s.ledger.getBlob(sha256)).toBeUndefined();
  });

  it('the content URL names the verified version, and serves the verified bytes after an overwrite', async () => {
    const { sha256, bytes, versionId } = await verified(s);
    await commitVersion(s.deps, {
      uploadId: randomUUID(),
      path: 'pinned/photo.png',
      sha256,
      size: bytes.length,
      contentType: 'image/png',
      deleted: false,
      ifVersion: undefined,
    });
    s.blobs.put(sha256, tampered(bytes));
    const deps = {
      ...s.deps,
      replicas: () => undefined,
      limits: { presignTtlSeconds: 300 },
    } as unknown as UploadDeps;
    const url = await contentUrl(deps, 'pinned/photo.png', undefined);
    expect(new URL(url).searchParams.get('versionId')).toBe(versionId);
    expect(s.blobs.fetch(url)).toEqual(bytes);
  });
});

describe('ingest with an unversioned origin (storage reports no versionId): as before', () => {
  it('records no version, and bad bytes over a verified blob delete the blob and its record', async () => {
    const s = await setup(false);
    const { sha256, bytes, versionId } = await verified(s);
    expect(versionId).toBeUndefined();
    expect((await s.ledger.getBlob(sha256))?.versionId).toBeUndefined();
    s.blobs.put(sha256, tampered(bytes));
    const outcome = await ingestBlob(s.deps, eventOf(sha256, bytes.length, undefined));
    expect(outcome.kind).toBe('rejected');
    expect(s.blobs.calls.filter((c) => c.op === 'delete')).toEqual([
      { op: 'delete', sha256, versionId: undefined },
    ]);
    expect(s.blobs.current(sha256)).toBeUndefined();
    expect(await s.ledger.getBlob(sha256)).toBeUndefined();
    expect(s.deps.metrics.total('IngestRejected')).toBe(1);
  });

  it('a duplicate event with the verified ETag is not verified again; the content URL is unpinned', async () => {
    const s = await setup(false);
    const bytes = randomBytes(512);
    const sha256 = sha256Hex(bytes);
    s.blobs.put(sha256, bytes);
    const etag = (await s.blobs.stat(sha256))?.etag;
    const event = { key: keyOf(sha256), size: bytes.length, etag, versionId: undefined };
    await ingestBlob(s.deps, event);
    const before = s.blobs.calls.length;
    await ingestBlob(s.deps, event);
    // One HEAD (which upload sent the bytes), no hash.
    expect(s.blobs.calls.slice(before)).toEqual([{ op: 'stat', sha256, versionId: undefined }]);
    await commitVersion(s.deps, {
      uploadId: randomUUID(),
      path: 'plain.png',
      sha256,
      size: bytes.length,
      contentType: 'image/png',
      deleted: false,
      ifVersion: undefined,
    });
    const deps = {
      ...s.deps,
      replicas: () => undefined,
      limits: { presignTtlSeconds: 300 },
    } as unknown as UploadDeps;
    const url = await contentUrl(deps, 'plain.png', undefined);
    expect(new URL(url).searchParams.has('versionId')).toBe(false);
  });
});
