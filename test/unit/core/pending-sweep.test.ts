/**
 * The lost-notification sweep (functions/core/pending-sweep.ts) against InMemoryLedger and an
 * in-memory versioned origin: an upload whose bytes are stored but whose S3 event never came is
 * found, its event goes to the ingest, and the ingest (the same domain function the queue feeds)
 * commits it. No emulator, no network port.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Upload } from '../../../contracts/model.ts';
import { InMemoryLedger } from '../../../functions/adapters/in-memory-ledger.js';
import { type CompletionDeps, completeRecordedUpload } from '../../../functions/core/completion.js';
import { ingestBlob } from '../../../functions/core/ingest.js';
import {
  completionLostAfterMs,
  lostAfterMs,
  NOTIFICATION_GRACE_MS,
  type StoredBlobVersion,
  type SweptEvent,
  sweepLostNotifications,
} from '../../../functions/core/pending-sweep.js';
import { RecordingMetrics, randomBytes, sha256Hex } from '../../support/domain.js';
import { VersionedBlobs } from '../../support/versioned-blobs.js';

const MINUTE = 60_000;

/** A versioned origin whose object versions name the upload that sent them (S3's metadata). */
class Origin extends VersionedBlobs {
  readonly senders = new Map<string, string>();
  store(sha256: string, bytes: Buffer, uploadId?: string): string {
    const versionId = this.put(sha256, bytes) as string;
    if (uploadId) this.senders.set(versionId, uploadId);
    return versionId;
  }
  override async stat(sha256: string, versionId?: string) {
    const found = await super.stat(sha256, versionId);
    return found && { ...found, uploadId: this.senders.get(found.versionId ?? '') };
  }
  async storedVersions(sha256: string): Promise<StoredBlobVersion[]> {
    const out: StoredBlobVersion[] = [];
    for (const { versionId } of super.versionsOf(sha256)) {
      const s = await this.stat(sha256, versionId);
      if (s) out.push({ ...s, versionId: s.versionId });
    }
    return out;
  }
}

function setup() {
  const ledger = new InMemoryLedger();
  const origin = new Origin();
  const metrics = new RecordingMetrics();
  // The functions' clock runs ahead of storage's: objects look as old as a test needs.
  let offsetMs = 0;
  const clock = { now: () => new Date(Date.now() + offsetMs) };
  const sent: SweptEvent[] = [];
  const ingestDeps = {
    ledger,
    blobs: origin,
    metrics,
    clock,
    feedShards: 2,
    targets: [{ id: 'alpha', kind: 's3' as const }],
    fanout: { send: async () => undefined },
  };
  const sweepDeps = {
    ledger,
    origin: { versionsOf: (sha256: string) => origin.storedVersions(sha256) },
    clock,
    metrics,
    ingest: { sendObjectCreated: async (e: SweptEvent) => void sent.push(e) },
  };
  return {
    ledger,
    origin,
    metrics,
    sent,
    sweepDeps,
    ingestDeps,
    advance: (ms: number) => {
      offsetMs += ms;
    },
    /** What the ingest queue does with a sent event. */
    deliver: (e: SweptEvent) => ingestBlob(ingestDeps, e),
  };
}

type World = ReturnType<typeof setup>;

/** A pending upload (as the API's claim records it) whose bytes were PUT through its URL; its event is lost. */
async function uploadWithLostEvent(w: World, bytes = randomBytes(1500), path = `f/${randomUUID()}`) {
  const sha256 = sha256Hex(bytes);
  const now = w.sweepDeps.clock.now();
  const upload: Upload = {
    uploadId: randomUUID(),
    path,
    sha256,
    size: bytes.length,
    contentType: 'application/octet-stream',
    status: 'pending',
    expiresAt: new Date(now.getTime() + 20 * MINUTE).toISOString(),
    createdAt: new Date(now.getTime() - 1000).toISOString(),
    updatedAt: now.toISOString(),
  };
  await w.ledger.putUpload(upload);
  await w.ledger.addPendingUpload(sha256, upload.uploadId);
  const versionId = w.origin.store(sha256, bytes, upload.uploadId);
  return { upload, versionId, bytes };
}

describe('sweepLostNotifications', () => {
  it('sends the S3 event of a pending upload whose bytes are stored, and the ingest commits it', async () => {
    const w = setup();
    const { upload, versionId, bytes } = await uploadWithLostEvent(w);
    w.advance(lostAfterMs(bytes.length) + 1000);

    const report = await sweepLostNotifications(w.sweepDeps);

    expect(report).toMatchObject({ pointers: 1, sent: 1, uploads: 1, cycleComplete: true });
    expect(w.sent).toEqual([
      expect.objectContaining({ key: `blobs/${upload.sha256}`, size: bytes.length, versionId }),
    ]);
    expect(w.metrics.total('LostNotificationsResent')).toBe(1);
    for (const e of w.sent) await w.deliver(e);
    expect(await w.ledger.getUpload(upload.uploadId)).toMatchObject({ status: 'committed', version: 1 });
    expect(await w.ledger.listPendingUploads(upload.sha256)).toEqual([]);
    // Nothing left to sweep.
    expect((await sweepLostNotifications(w.sweepDeps)).sent).toBe(0);
  });

  it('leaves bytes stored within the grace alone: their event is most likely on its way', async () => {
    const w = setup();
    await uploadWithLostEvent(w);
    w.advance(NOTIFICATION_GRACE_MS - MINUTE);
    expect((await sweepLostNotifications(w.sweepDeps)).sent).toBe(0);
    expect(w.metrics.total('LostNotificationsResent')).toBe(0);
  });

  it('gives a large object the time its verification takes before its event counts as lost', async () => {
    expect(lostAfterMs(0)).toBe(NOTIFICATION_GRACE_MS);
    expect(lostAfterMs(5 * 1024 ** 4)).toBeGreaterThan(20 * 60 * MINUTE);
  });

  it('sends nothing for bytes of another size, sent by another upload, or stored before the claim', async () => {
    const w = setup();
    const { upload } = await uploadWithLostEvent(w);
    // Another version of the same key: other bytes through another upload's URL.
    const other = await uploadWithLostEvent(w, randomBytes(1500));
    w.origin.store(upload.sha256, randomBytes(99), undefined);
    w.origin.store(upload.sha256, Buffer.alloc(upload.size), other.upload.uploadId);
    w.advance(lostAfterMs(upload.size) + 1000);
    await sweepLostNotifications(w.sweepDeps);
    // The upload's own version and the other upload's own one; the wrong size and the wrong sender are left out.
    const forFirst = w.sent.filter((e) => e.key === `blobs/${upload.sha256}`);
    expect(forFirst).toHaveLength(1);

    const early = setup();
    const bytes = randomBytes(700);
    const sha256 = sha256Hex(bytes);
    early.origin.store(sha256, bytes); // stored long before anyone claimed it
    early.advance(60 * MINUTE);
    const claim = await uploadWithLostEvent(early, bytes);
    early.origin.lose(sha256, claim.versionId); // this claim never PUT: only the old copy is there
    early.advance(lostAfterMs(bytes.length) + 1000);
    expect((await sweepLostNotifications(early.sweepDeps)).sent).toBe(0);
  });

  it('sends one event per stored version: two uploads of the same bytes both commit', async () => {
    const w = setup();
    const bytes = randomBytes(4096);
    const first = await uploadWithLostEvent(w, bytes, 'same/a');
    const second = await uploadWithLostEvent(w, bytes, 'same/b');
    w.advance(lostAfterMs(bytes.length) + 1000);
    const report = await sweepLostNotifications(w.sweepDeps);
    expect(report).toMatchObject({ sent: 2, uploads: 2 });
    for (const e of w.sent) await w.deliver(e);
    expect(await w.ledger.getUpload(first.upload.uploadId)).toMatchObject({ status: 'committed' });
    expect(await w.ledger.getUpload(second.upload.uploadId)).toMatchObject({ status: 'committed' });
  });

  it('is bounded per run and goes on from its checkpoint: a cycle covers every pending upload once', async () => {
    const w = setup();
    const uploads = [];
    for (let i = 0; i < 7; i++) uploads.push(await uploadWithLostEvent(w));
    w.advance(lostAfterMs(1500) + 1000);
    const runs = [];
    for (let i = 0; i < 2; i++)
      runs.push(await sweepLostNotifications(w.sweepDeps, { maxSends: 3, pageSize: 2 }));
    // A page is always finished: the first run stops after the page that took it past 3 sends.
    expect(runs.map((r) => r.sent)).toEqual([4, 3]);
    expect(runs.map((r) => r.cycleComplete)).toEqual([false, true]);
    expect(new Set(w.sent.map((e) => e.versionId)).size).toBe(7);
    expect(w.sent).toHaveLength(7);
    // The next run starts a new cycle at the first pointer.
    expect((await sweepLostNotifications(w.sweepDeps, { maxSends: 3, pageSize: 2 })).sent).toBe(4);
  });

  it('stops starting pages at its deadline (one page is always read)', async () => {
    const w = setup();
    for (let i = 0; i < 5; i++) await uploadWithLostEvent(w);
    w.advance(lostAfterMs(1500) + 1000);
    const report = await sweepLostNotifications(w.sweepDeps, { pageSize: 2, deadline: Date.now() - 1 });
    expect(report).toMatchObject({ pages: 1, pointers: 2, sent: 2, cycleComplete: false });
  });
});

/**
 * A multipart upload whose parts are all recorded and whose client asked to complete it; the
 * completion message was lost, so storage holds nothing for it.
 */
async function multipartWithLostCompletion(w: World, options: { requested?: boolean } = {}) {
  const bytes = randomBytes(3000);
  const sha256 = sha256Hex(bytes);
  const now = w.sweepDeps.clock.now();
  const upload: Upload = {
    uploadId: randomUUID(),
    path: `mp/${randomUUID()}`,
    sha256,
    size: bytes.length,
    contentType: 'application/octet-stream',
    status: 'pending',
    multipart: { multipartId: `mp-${randomUUID()}`, partSize: 2000, partCount: 2 },
    expiresAt: new Date(now.getTime() + 24 * 60 * MINUTE).toISOString(),
    createdAt: new Date(now.getTime() - 1000).toISOString(),
    updatedAt: now.toISOString(),
  };
  await w.ledger.putUpload(upload);
  await w.ledger.addPendingUpload(sha256, upload.uploadId);
  for (const [i, size] of [2000, 1000].entries()) {
    await w.ledger.recordPart(upload.uploadId, { partNumber: i + 1, size, sha256, etag: `"e${i}"` });
  }
  if (options.requested !== false) {
    expect(await w.ledger.markCompletionRequested(upload.uploadId, now.toISOString())).toBe(true);
  }
  return { upload, bytes };
}

/** The sweep with a completion queue, and the complete-multipart function that queue feeds. */
function withCompletions(w: World) {
  const requested: string[] = [];
  const assembled = new Map<string, Buffer>();
  // S3's side of CompleteMultipartUpload: the object appears, naming the upload that sent it.
  const blobs = {
    completeMultipart: async (sha256: string) => {
      const found = [...assembled.entries()].find(([id]) => id.startsWith(sha256));
      if (!found) throw Object.assign(new Error('gone'), { name: 'NoSuchUpload' });
      assembled.delete(found[0]);
      w.origin.store(sha256, found[1], found[0].slice(sha256.length + 1));
    },
    abortMultipart: async () => undefined,
    stat: (sha256: string) => w.origin.stat(sha256),
  };
  const completionDeps: CompletionDeps = { ledger: w.ledger, blobs, clock: w.sweepDeps.clock };
  return {
    requested,
    sweepDeps: {
      ...w.sweepDeps,
      completions: { requestCompletion: async (id: string) => void requested.push(id) },
    },
    /** Parts S3 holds for an upload until it completes them. */
    holdParts: (upload: Upload, bytes: Buffer) => assembled.set(`${upload.sha256}/${upload.uploadId}`, bytes),
    /** What the complete-multipart function does with a message. */
    complete: (uploadId: string) => completeRecordedUpload(completionDeps, uploadId),
  };
}

describe('sweepLostNotifications: lost multipart completions', () => {
  it('sends the completion of an upload asked to complete past the grace again; it completes and then commits', async () => {
    const w = setup();
    const c = withCompletions(w);
    const { upload, bytes } = await multipartWithLostCompletion(w);
    c.holdParts(upload, bytes);
    w.advance(completionLostAfterMs(2) + 1000);

    const report = await sweepLostNotifications(c.sweepDeps);

    expect(report).toMatchObject({ pointers: 1, sent: 0, completionsResent: 1 });
    expect(c.requested).toEqual([upload.uploadId]);
    expect(w.metrics.total('LostCompletionsResent')).toBe(1);
    // The complete-multipart function takes the message: S3 assembles the object.
    expect(await c.complete(upload.uploadId)).toEqual({ kind: 'completed' });
    // Its S3 event is lost too: the next sweep finds the object and sends its event, not another completion.
    w.advance(lostAfterMs(bytes.length) + 1000);
    const next = await sweepLostNotifications(c.sweepDeps);
    expect(next).toMatchObject({ sent: 1, completionsResent: 0 });
    expect(c.requested).toHaveLength(1);
    for (const e of w.sent) await w.deliver(e);
    expect(await w.ledger.getUpload(upload.uploadId)).toMatchObject({ status: 'committed', version: 1 });
    expect(await sweepLostNotifications(c.sweepDeps)).toMatchObject({ pointers: 0, completionsResent: 0 });
  });

  it('a resent completion that finds the upload completed already converges', async () => {
    const w = setup();
    const c = withCompletions(w);
    const { upload, bytes } = await multipartWithLostCompletion(w);
    c.holdParts(upload, bytes);
    w.advance(completionLostAfterMs(2) + 1000);
    await sweepLostNotifications(c.sweepDeps);
    await sweepLostNotifications(c.sweepDeps);
    // The first message was slow, not lost: two messages, one completion, both answered.
    expect(c.requested).toEqual([upload.uploadId, upload.uploadId]);
    expect(await c.complete(upload.uploadId)).toEqual({ kind: 'completed' });
    expect(await c.complete(upload.uploadId)).toEqual({ kind: 'already', status: 'stored' });
    expect(w.origin.versionsOf(upload.sha256)).toHaveLength(1);
  });

  it('leaves alone an upload whose completion was never asked for, or was asked within the grace', async () => {
    const w = setup();
    const c = withCompletions(w);
    await multipartWithLostCompletion(w, { requested: false });
    await multipartWithLostCompletion(w);
    w.advance(completionLostAfterMs(2) - MINUTE);
    const within = await sweepLostNotifications(c.sweepDeps);
    expect(within).toMatchObject({ pointers: 2, completionsResent: 0 });
    w.advance(2 * MINUTE);
    // Past the grace, only the one whose client asked to complete it.
    expect(await sweepLostNotifications(c.sweepDeps)).toMatchObject({ completionsResent: 1 });
    expect(c.requested).toHaveLength(1);
    // A retried complete moves the mark: its grace starts again.
    const [id] = c.requested as [string];
    await w.ledger.markCompletionRequested(id, w.sweepDeps.clock.now().toISOString());
    expect(await sweepLostNotifications(c.sweepDeps)).toMatchObject({ completionsResent: 0 });
    expect(w.metrics.total('LostCompletionsResent')).toBe(1);
  });

  it('sends no completion for an upload past its expiry: bytes assembled now could not commit it', async () => {
    const w = setup();
    const c = withCompletions(w);
    await multipartWithLostCompletion(w);
    w.advance(24 * 60 * MINUTE + MINUTE);
    expect(await sweepLostNotifications(c.sweepDeps)).toMatchObject({ pointers: 1, completionsResent: 0 });
  });

  it('gives an upload of many parts the time S3 takes to assemble them', () => {
    expect(completionLostAfterMs(0)).toBe(NOTIFICATION_GRACE_MS);
    expect(completionLostAfterMs(10_000)).toBeGreaterThan(NOTIFICATION_GRACE_MS + 10 * MINUTE);
  });

  it('looks for no lost completions without a completion queue', async () => {
    const w = setup();
    await multipartWithLostCompletion(w);
    w.advance(completionLostAfterMs(2) + 1000);
    expect(await sweepLostNotifications(w.sweepDeps)).toMatchObject({ pointers: 1, completionsResent: 0 });
  });
});
