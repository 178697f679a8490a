/**
 * A claim (createUpload) cut off after any of its ledger writes, as a killed process leaves it
 * (probe crashy: `kill -9` of the local stack mid-claim left uploads pending for good, with no
 * pointer for a sweep or the expiry to find them). Whatever write the crash follows, an upload the
 * ledger holds as pending is one its content's pointer names.
 */
import { describe, expect, it } from 'vitest';
import type { Upload } from '../../../contracts/model.js';
import { InMemoryLedger } from '../../../functions/adapters/in-memory-ledger.js';
import { createUpload, type UploadDeps } from '../../../functions/core/uploads.js';
import { sha256Hex } from '../../support/domain.js';
import { VersionedBlobs } from '../../support/versioned-blobs.js';

class Crash extends Error {}

const READS = /^(get|list|scan|read|query|find)/;

/** The ledger, dying before its `crashAt`-th write; the uploads it was asked to record. */
function crashingLedger(inner: InMemoryLedger, crashAt: number) {
  let writes = 0;
  const recorded: Upload[] = [];
  const ledger = new Proxy(inner, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver);
      if (typeof value !== 'function' || typeof name !== 'string' || READS.test(name)) return value;
      return (...args: unknown[]) => {
        if (name === 'putUpload' || name === 'openUpload') recorded.push(args[0] as Upload);
        writes++;
        if (writes === crashAt) throw new Crash(`crashed at write ${crashAt} (${name})`);
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { ledger, recorded, writes: () => writes };
}

function deps(ledger: InMemoryLedger): UploadDeps {
  const blobs = new VersionedBlobs({ versioned: true });
  return {
    ledger,
    blobs: Object.assign(blobs, {
      presignPut: async () => ({ url: 'https://s3.test/blobs/x', headers: { 'content-type': 'image/png' } }),
      createMultipart: async () => 'multipart-1',
    }) as unknown as UploadDeps['blobs'],
    replicas: () => undefined,
    fanout: { send: async () => undefined },
    clock: { now: () => new Date() },
    feedShards: 2,
    targets: [{ id: 'alpha', kind: 's3' }],
    limits: {
      maxUploadBytes: 1024 ** 4,
      multipartThresholdBytes: 16 * 1024 ** 2,
      contentTypes: ['image/*'],
      presignTtlSeconds: 900,
    },
  } as UploadDeps;
}

async function expectEveryPendingPointedAt(ledger: InMemoryLedger, uploads: Upload[], when: string) {
  for (const upload of uploads) {
    const held = await ledger.getUpload(upload.uploadId);
    if (held?.status !== 'pending') continue;
    expect(await ledger.listPendingUploads(upload.sha256), when).toContain(upload.uploadId);
  }
}

describe('a claim cut off after any ledger write', () => {
  for (const [kind, size] of [
    ['one PUT', 1_000],
    ['multipart', 40 * 1024 ** 2],
  ] as const) {
    it(`${kind}: no upload is left pending without its pointer`, async () => {
      for (let crashAt = 1; ; crashAt++) {
        const inner = new InMemoryLedger();
        const { ledger, recorded, writes } = crashingLedger(inner, crashAt);
        const request = {
          path: 'a/photo.png',
          size,
          sha256: sha256Hex(`bytes ${crashAt}`),
          contentType: 'image/png',
        };
        const crashed = await createUpload(deps(ledger), request).then(
          () => false,
          (error: unknown) => {
            if (!(error instanceof Crash)) throw error;
            return true;
          },
        );
        await expectEveryPendingPointedAt(inner, recorded, `crash at write ${crashAt}`);
        if (!crashed) {
          expect(writes()).toBeGreaterThan(0);
          break;
        }
      }
    });
  }
});
