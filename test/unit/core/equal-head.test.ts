/**
 * An upload whose content equals the head another upload committed after its claim ends committed
 * at that head (functions/core/commit.ts `equalHead`): through the ingest and through a proof of
 * possession alike; one that already ended otherwise keeps that ending, and is not counted.
 */
import { describe, expect, it } from 'vitest';
import type { Upload } from '../../../contracts/model.js';
import { ingestBlob } from '../../../functions/core/ingest.js';
import { proofDigest, proveUpload } from '../../../functions/core/possession.js';
import { randomBytes, sha256Hex } from '../../support/domain.js';
import { claimPendingUpload, inMemoryCore } from '../../support/in-memory-core.js';

const answer = (upload: Upload, bytes: Buffer) =>
  proofDigest(
    upload.challenge?.nonce as string,
    (upload.challenge?.ranges ?? []).map((r) => bytes.subarray(r.offset, r.offset + r.length)),
  );

function setup() {
  return inMemoryCore({ targets: [{ id: 'alpha', kind: 's3' as const }] });
}

/** Bytes PUT through `upload`'s own URL, and their storage event. */
function sendThrough(s: ReturnType<typeof setup>, upload: Upload, bytes: Buffer) {
  const sha256 = sha256Hex(bytes);
  const versionId = s.blobs.put(sha256, bytes, upload.uploadId);
  return { key: `blobs/${sha256}`, size: bytes.length, etag: undefined, versionId };
}

describe('an upload ending committed at an equal head', () => {
  it('an upload that already ended (expired) while its pointer was still listed is not reported committed nor counted unchanged', async () => {
    const s = setup();
    const bytes = randomBytes(1000);
    const a = await claimPendingUpload(s.ledger, 'media/x.png', bytes, {}, { pointerCarriesClaim: true });
    const b = await claimPendingUpload(s.ledger, 'media/x.png', bytes, {}, { pointerCarriesClaim: true });
    await ingestBlob(s.deps, sendThrough(s, a, bytes));
    expect(await s.ledger.getUpload(a.uploadId)).toMatchObject({ status: 'committed', version: 1 });
    // expiry.ts expireUpload: finishUpload(expired) first, removePendingUpload after; the ingest
    // (which read the pointer list) runs in between. Any other ending the pointer outlives does too.
    await s.ledger.finishUpload(
      b.uploadId,
      { status: 'expired', reason: 'expired' },
      new Date().toISOString(),
    );
    const before = s.deps.metrics.total('UploadsUnchanged');
    const outcome = await ingestBlob(s.deps, sendThrough(s, b, bytes));
    expect(await s.ledger.getUpload(b.uploadId)).toMatchObject({ status: 'expired' });
    expect(outcome).toMatchObject({ kind: 'committed' });
    if (outcome.kind !== 'committed') return;
    expect(outcome.committed.map((c) => c.uploadId)).not.toContain(b.uploadId);
    expect(s.deps.metrics.total('UploadsUnchanged') - before).toBe(0);
  });

  it('two claims of the same bytes made before either committed: the one that proves possession ends at the head too (one version)', async () => {
    const s = setup();
    const bytes = randomBytes(1000);
    const a = await claimPendingUpload(s.ledger, 'media/y.png', bytes, {}, { pointerCarriesClaim: true });
    const b = await claimPendingUpload(s.ledger, 'media/y.png', bytes, {}, { pointerCarriesClaim: true });
    // a's bytes arrive and commit v1; b (claimed before) then answers its challenge, as the web
    // client and the CLI always try first.
    await ingestBlob(s.deps, sendThrough(s, a, bytes));
    const result = await proveUpload(s.deps, b, answer(b, bytes));
    const versions = await s.ledger.listVersions('media/y.png', { limit: 10 });
    expect(versions.map((v) => v.version)).toEqual([1]);
    expect(result.version).toBe(1);
  });
});
