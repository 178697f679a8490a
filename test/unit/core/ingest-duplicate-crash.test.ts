/**
 * Found by `npm run chaos`: an upload whose bytes are a duplicate version over a pinned blob stayed
 * pending forever when its ingest died after discarding that version and before committing the
 * upload (a crash in another record of the batch, a timeout): the redelivered event found its
 * version gone and was ignored. The version an upload's commit rests on must outlive the commit.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Upload } from '../../../contracts/model.ts';
import { InMemoryLedger } from '../../../functions/adapters/in-memory-ledger.js';
import { ingestBlob } from '../../../functions/core/ingest.js';
import { randomBytes, sha256Hex } from '../../support/domain.js';
import { inMemoryCore } from '../../support/in-memory-core.js';
import { VersionedBlobs } from '../../support/versioned-blobs.js';

/** A versioned origin whose object versions name the upload that sent them (S3's metadata). */
class Origin extends VersionedBlobs {
  readonly senders = new Map<string, string>();
  store(sha256: string, bytes: Buffer, uploadId: string): string {
    const versionId = this.put(sha256, bytes) as string;
    this.senders.set(versionId, uploadId);
    return versionId;
  }
  override async stat(sha256: string, versionId?: string) {
    const found = await super.stat(sha256, versionId);
    return found && { ...found, uploadId: this.senders.get(found.versionId ?? '') };
  }
}

/** The ingest's process dies at the next commit (as a crash anywhere in its batch would end it). */
class DyingLedger extends InMemoryLedger {
  dieAtCommit = false;
  override async commit(...args: Parameters<InMemoryLedger['commit']>) {
    if (this.dieAtCommit) {
      this.dieAtCommit = false;
      throw new Error('the execution environment died');
    }
    return super.commit(...args);
  }
}

function pending(sha256: string, size: number, path: string): Upload {
  const now = new Date();
  return {
    uploadId: randomUUID(),
    path,
    sha256,
    size,
    contentType: 'application/octet-stream',
    status: 'pending',
    expiresAt: new Date(now.getTime() + 20 * 60_000).toISOString(),
    createdAt: new Date(now.getTime() - 1000).toISOString(),
    updatedAt: now.toISOString(),
  };
}

describe('ingest of a duplicate version, interrupted', () => {
  it('an upload whose bytes are a duplicate version still commits when its ingest dies before the commit', async () => {
    const ledger = new DyingLedger();
    const blobs = new Origin();
    const { deps } = inMemoryCore({ ledger, blobs, fanout: { send: async () => undefined } });
    const bytes = randomBytes(3000);
    const sha256 = sha256Hex(bytes);
    const first = pending(sha256, bytes.length, 'dup/first.bin');
    await ledger.putUpload(first);
    await ledger.addPendingUpload(sha256, first.uploadId);
    const v1 = blobs.store(sha256, bytes, first.uploadId);
    const event = (versionId: string) => ({
      key: `blobs/${sha256}`,
      size: bytes.length,
      etag: undefined,
      versionId,
    });
    expect(await ingestBlob(deps, event(v1))).toMatchObject({ kind: 'committed' });

    // A second upload of the same bytes (its proof came too early): it PUTs them, a second version.
    const second = pending(sha256, bytes.length, 'dup/second.bin');
    await ledger.putUpload(second);
    await ledger.addPendingUpload(sha256, second.uploadId);
    const v2 = blobs.store(sha256, bytes, second.uploadId);
    ledger.dieAtCommit = true;
    await expect(ingestBlob(deps, event(v2))).rejects.toThrow('died');

    // SQS delivers the event again after the visibility timeout.
    await ingestBlob(deps, event(v2));
    expect(await ledger.getUpload(second.uploadId)).toMatchObject({ status: 'committed', version: 1 });
    // Once committed, the duplicate version goes: reads are pinned to the first.
    expect(blobs.versionsOf(sha256).map((v) => v.versionId)).toEqual([v1]);
  });
});
