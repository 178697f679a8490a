/**
 * The ledger in memory: the same contract as DynamoLedger (test/support/ledger-contract.ts runs
 * one suite against both), in plain Maps. For the core's unit tests and for anything that wants a
 * ledger without a DynamoDB. Each method's effect happens at once, when it is called (before its
 * first await), so every method is atomic as DynamoDB's conditional writes and transactions are;
 * what goes in and what comes out is copied, so no caller ever holds the ledger's own records.
 */

import { folderPartition, verificationItemKey } from '../../contracts/ledger-keys.js';
import type { Blob, Challenge, Change, FileVersion, TargetState, Upload } from '../../contracts/model.js';
import { ClaimTakenError } from '../core/errors.js';
import type {
  AgentReport,
  BlobRecord,
  CommitResult,
  CommitState,
  CommitWrite,
  CopyUpload,
  FolderRuleWrite,
  IdempotencyClaim,
  IdempotencyRecord,
  LagFigures,
  LagRecord,
  Ledger,
  PendingClaim,
  PendingPointer,
  ReconcileCheckpoint,
  ReplicationRead,
  StoredPart,
} from '../core/ports.js';
import { pendingClaimOf } from '../core/ports.js';
import type { VerificationProgress } from '../core/verification.js';

const copy = <T>(value: T): T => structuredClone(value);

/** A copy without the properties whose value is undefined: DynamoLedger stores none of them. */
function stored<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(structuredClone(value)).filter(([, v]) => v !== undefined)) as T;
}

/** A version item: its feed seq is recorded beside it, as DynamoLedger's version item holds it. */
type VersionItem = FileVersion & { readonly feedSeq: number };

interface IdempotencyItem {
  readonly key: string;
  readonly requestHash: string;
  readonly status: IdempotencyRecord['status'];
  readonly claimToken?: string | undefined;
  readonly lockedUntil?: string | undefined;
  readonly expiresAt: string;
  readonly response?: string | undefined;
}

/** A target's row as DynamoLedger writes it: a state, maybe with the last failure beside it. */
interface TargetItem {
  targetId: string;
  path: string;
  appliedVersion: number;
  status: TargetState['status'];
  appliedAt: string | undefined;
  reason: string | undefined;
  etag: string | undefined;
  failure: TargetState['failure'];
}

type UploadOutcome =
  | { status: 'committed'; version: number; deduplicated?: true | undefined }
  | { status: 'rejected' | 'expired'; reason: string };

const targetKey = (targetId: string, path: string) => JSON.stringify([targetId, path]);

function toTargetState(item: TargetItem): TargetState {
  return copy({
    ...(item.etag === undefined ? {} : { etag: item.etag }),
    ...(item.failure ? { failure: item.failure } : {}),
    targetId: item.targetId,
    path: item.path,
    appliedVersion: item.appliedVersion,
    status: item.status,
    appliedAt: item.appliedAt as string,
    ...(item.reason === undefined ? {} : { reason: item.reason }),
  });
}

/** What DynamoLedger's `targetIsBehind` condition admits. */
const targetIsBehind = (held: TargetItem | undefined, state: TargetState) =>
  held === undefined ||
  held.appliedVersion < state.appliedVersion ||
  (held.appliedVersion === state.appliedVersion && held.status !== 'verified');

/** What DynamoLedger's `idempotencyKeyIsFree` condition admits (ISO-8601 strings compare as times). */
const idempotencyKeyIsFree = (held: IdempotencyItem | undefined, now: string) =>
  held === undefined ||
  held.expiresAt < now ||
  (held.status === 'in_progress' && (held.lockedUntil ?? '') < now);

export class InMemoryLedger implements Ledger {
  private readonly uploads = new Map<string, Upload>();
  private readonly parts = new Map<string, Map<number, StoredPart>>();
  /** sha256 -> the uploads waiting for it. */
  /** Pending pointers by content: upload id → the claim the pointer carries. */
  private readonly pending = new Map<string, Map<string, PendingClaim | undefined>>();
  private readonly idempotency = new Map<string, IdempotencyItem>();
  private readonly blobs = new Map<string, Blob>();
  private readonly verifications = new Map<string, VerificationProgress>();
  private readonly versions = new Map<string, Map<number, VersionItem>>();
  private readonly heads = new Map<string, FileVersion>();
  /** The folder/file rule's rows (P#<path> FOLDER in DynamoLedger). */
  private readonly folderRows = new Map<string, { liveFiles: number; countedIn?: readonly string[] }>();
  /** shard -> its entries, entry seq n at index n - 1 (so the shard's counter is the length). */
  private readonly feeds = new Map<number, Change[]>();
  private readonly targets = new Map<string, TargetItem>();
  private readonly watermarks = new Map<string, number[]>();
  private readonly lagFigures = new Map<string, LagFigures>();
  private readonly lagSelections = new Map<string, string>();
  private readonly rewinds = new Map<string, number>();
  private readonly copyUploads = new Map<string, CopyUpload>();
  private reconcileCheckpoint: ReconcileCheckpoint | undefined;
  private sweepCheckpoint: string | undefined;
  private readonly heartbeats = new Map<string, AgentReport>();

  /** What an agent's own row would say: the on-prem agent writes it, not the ledger port. */
  recordAgentHeartbeat(
    targetId: string,
    heartbeatAt: string,
    conditions: readonly string[] = [],
    rebuilding?: AgentReport['rebuilding'],
  ): void {
    this.heartbeats.set(targetId, { heartbeatAt, conditions, ...(rebuilding ? { rebuilding } : {}) });
  }

  // Uploads

  async putUpload(upload: Upload): Promise<void> {
    if (this.uploads.has(upload.uploadId)) throw new ClaimTakenError(`upload ${upload.uploadId}`);
    this.uploads.set(upload.uploadId, stored(upload));
  }

  async openUpload(upload: Upload): Promise<void> {
    // Both or neither: no await between the check and the two writes.
    if (this.uploads.has(upload.uploadId)) throw new ClaimTakenError(`upload ${upload.uploadId}`);
    this.uploads.set(upload.uploadId, stored(upload));
    const waiting = this.pending.get(upload.sha256) ?? new Map<string, PendingClaim | undefined>();
    waiting.set(upload.uploadId, pendingClaimOf(upload));
    this.pending.set(upload.sha256, waiting);
  }

  async getUpload(uploadId: string): Promise<Upload | undefined> {
    return copy(this.uploads.get(uploadId));
  }

  async finishUpload(uploadId: string, outcome: UploadOutcome, at: string): Promise<void> {
    const upload = this.uploads.get(uploadId);
    // Already ended (a retry, or a race with another event): its first outcome stands.
    if (upload?.status !== 'pending') return;
    const detail =
      outcome.status === 'committed'
        ? { version: outcome.version, ...(outcome.deduplicated ? { deduplicated: true } : {}) }
        : { reason: outcome.reason };
    this.uploads.set(uploadId, stored({ ...upload, status: outcome.status, ...detail, updatedAt: at }));
  }

  async addPendingUpload(sha256: string, uploadId: string, upload?: Upload): Promise<void> {
    const waiting = this.pending.get(sha256) ?? new Map<string, PendingClaim | undefined>();
    waiting.set(uploadId, upload === undefined ? undefined : pendingClaimOf(upload));
    this.pending.set(sha256, waiting);
  }

  async listPendingUploads(sha256: string): Promise<string[]> {
    // In sort key order, as DynamoDB's query returns them.
    return [...(this.pending.get(sha256)?.keys() ?? [])].sort();
  }

  async listPendingClaims(sha256: string): Promise<PendingPointer[]> {
    return [...(this.pending.get(sha256) ?? [])]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([uploadId, claim]) => (claim === undefined ? { uploadId } : { uploadId, claim: copy(claim) }));
  }

  async removePendingUpload(sha256: string, uploadId: string): Promise<void> {
    this.pending.get(sha256)?.delete(uploadId);
  }

  async *scanPendingUploads(): AsyncIterable<{ sha256: string; uploadId: string }> {
    const all = [...this.pending].flatMap(([sha256, ids]) =>
      [...ids.keys()].map((uploadId) => ({ sha256, uploadId })),
    );
    yield* all;
  }

  /** Pointers in (sha256, uploadId) order; the position is the last one returned. */
  async pagePendingUploads(options: { after?: string | undefined; limit: number }): Promise<{
    pointers: { sha256: string; uploadId: string }[];
    next?: string | undefined;
  }> {
    const keyOf = (p: { sha256: string; uploadId: string }) => `${p.sha256}/${p.uploadId}`;
    const all = [...this.pending]
      .flatMap(([sha256, ids]) => [...ids.keys()].map((uploadId) => ({ sha256, uploadId })))
      .filter((p) => options.after === undefined || keyOf(p) > options.after)
      .sort((a, b) => (keyOf(a) < keyOf(b) ? -1 : 1));
    const pointers = all.slice(0, options.limit);
    const last = pointers.at(-1);
    return all.length > options.limit && last ? { pointers, next: keyOf(last) } : { pointers };
  }

  async getSweepCheckpoint(): Promise<string | undefined> {
    return this.sweepCheckpoint;
  }

  async putSweepCheckpoint(after: string | undefined): Promise<void> {
    this.sweepCheckpoint = after;
  }

  async setChallenge(uploadId: string, challenge: Challenge): Promise<void> {
    const upload = this.uploads.get(uploadId);
    // Ended meanwhile: the claim's answer still carries the challenge, and any proof of it is refused.
    if (upload?.status !== 'pending') return;
    this.uploads.set(uploadId, stored({ ...upload, challenge }));
  }

  async spendChallenge(uploadId: string, nonce: string): Promise<boolean> {
    const upload = this.uploads.get(uploadId);
    if (upload?.challenge?.nonce !== nonce || upload.challengeSpent === nonce) return false;
    this.uploads.set(uploadId, { ...upload, challengeSpent: nonce });
    return true;
  }

  async markCompletionRequested(uploadId: string, at: string): Promise<boolean> {
    const upload = this.uploads.get(uploadId);
    if (upload?.status !== 'pending') return false;
    this.uploads.set(uploadId, { ...upload, completionRequestedAt: at });
    return true;
  }

  async recordPart(uploadId: string, part: StoredPart): Promise<void> {
    const parts = this.parts.get(uploadId) ?? new Map<number, StoredPart>();
    parts.set(part.partNumber, stored(part));
    this.parts.set(uploadId, parts);
  }

  async listParts(uploadId: string): Promise<StoredPart[]> {
    const parts = [...(this.parts.get(uploadId)?.values() ?? [])];
    return copy(parts.sort((a, b) => a.partNumber - b.partNumber));
  }

  // Idempotency keys

  async claimIdempotencyKey(claim: IdempotencyClaim): Promise<IdempotencyRecord | undefined> {
    const held = this.idempotency.get(claim.key);
    if (idempotencyKeyIsFree(held, claim.now)) {
      this.idempotency.set(claim.key, {
        key: claim.key,
        requestHash: claim.requestHash,
        status: 'in_progress',
        claimToken: claim.claimToken,
        lockedUntil: claim.lockedUntil,
        expiresAt: claim.expiresAt,
      });
      return undefined;
    }
    const holder = held as IdempotencyItem;
    return copy({
      key: holder.key,
      requestHash: holder.requestHash,
      status: holder.status,
      expiresAt: holder.expiresAt,
      lockedUntil: holder.lockedUntil,
      ...(holder.response === undefined ? {} : { response: holder.response }),
    });
  }

  async completeIdempotencyKey(key: string, claimToken: string, response: string): Promise<boolean> {
    const held = this.idempotency.get(key);
    if (held?.status !== 'in_progress' || held.claimToken !== claimToken) return false;
    const { claimToken: _token, lockedUntil: _locked, ...rest } = held;
    this.idempotency.set(key, { ...rest, status: 'completed', response });
    return true;
  }

  async releaseIdempotencyKey(key: string, claimToken: string): Promise<boolean> {
    const held = this.idempotency.get(key);
    if (held?.status !== 'in_progress' || held.claimToken !== claimToken) return false;
    this.idempotency.delete(key);
    return true;
  }

  // Blobs

  async getBlob(sha256: string): Promise<Blob | undefined> {
    return copy(this.blobs.get(sha256));
  }

  async getBlobAndPending(sha256: string): Promise<{ blob: Blob | undefined; pending: PendingPointer[] }> {
    return { blob: copy(this.blobs.get(sha256)), pending: await this.listPendingClaims(sha256) };
  }

  async getBlobAndPendingOf(
    sha256: string,
    uploadId: string,
  ): Promise<{ blob: Blob | undefined; pending: PendingPointer[] }> {
    const pending = (await this.listPendingClaims(sha256)).filter((p) => p.uploadId === uploadId);
    return { blob: copy(this.blobs.get(sha256)), pending };
  }

  async putBlob(blob: Blob, options: { replaces?: string | undefined } = {}): Promise<Blob> {
    const holding = this.pinHolding({ record: blob, replaces: options.replaces });
    if (holding) return copy(holding);
    this.blobs.set(blob.sha256, stored(blob));
    return copy(blob);
  }

  private recordBlob(blob: BlobRecord | undefined): void {
    if (blob !== undefined) this.blobs.set(blob.record.sha256, stored(blob.record));
  }

  /** The record whose pin refuses this one, as DynamoLedger's condition does; undefined if admitted. */
  private pinHolding({ record, replaces }: BlobRecord): Blob | undefined {
    const held = this.blobs.get(record.sha256);
    const pin = held?.versionId;
    // Unversioned storage has nothing to pin: the record follows the latest verification.
    const admitted =
      record.versionId === undefined ||
      pin === undefined ||
      pin === record.versionId ||
      (replaces !== undefined && pin === replaces);
    return admitted ? undefined : held;
  }

  async deleteBlob(sha256: string): Promise<void> {
    this.blobs.delete(sha256);
  }

  async putVerificationProgress(progress: VerificationProgress): Promise<void> {
    const { pk, sk } = verificationItemKey(progress);
    this.verifications.set(`${pk} ${sk}`, stored(progress));
  }

  async getVerificationProgress(object: {
    sha256: string;
    versionId?: string | undefined;
    etag?: string | undefined;
  }): Promise<VerificationProgress | undefined> {
    const { pk, sk } = verificationItemKey(object);
    return copy(this.verifications.get(`${pk} ${sk}`));
  }

  // Versions

  async readCommitState(path: string, shard: number): Promise<CommitState> {
    const head = this.heads.get(path);
    return {
      version: head?.version ?? 0,
      ...(head ? { uploadId: head.uploadId, content: contentOf(head) } : {}),
      feedSeq: this.feedOf(shard).length,
      counted: [...(this.folderRows.get(path)?.countedIn ?? [])],
    };
  }

  async commit(write: CommitWrite): Promise<CommitResult> {
    const { version, change, upload } = copy(write);
    // The pending upload is ended only for content (a tombstone ends no upload), as DynamoLedger does.
    const endsUpload = upload !== undefined && version.sha256 !== null;
    const failed = this.failedConditions(write, endsUpload);
    if (failed === undefined) {
      this.apply(version, change, endsUpload ? upload : undefined);
      this.recordBlob(write.blob);
      this.keepFolderRule(write);
      return { committed: true };
    }
    const head = this.heads.get(version.path);
    const held = upload === undefined ? undefined : this.uploads.get(version.uploadId);
    const state: CommitState = {
      version: head?.version ?? 0,
      // DynamoDB returns the head's old item (and so its upload) only when the head's own condition failed.
      ...(failed.head && head ? { uploadId: head.uploadId, content: contentOf(head) } : {}),
      feedSeq: this.feedOf(change.shard).length,
    };
    const ended = upload !== undefined && (failed.upload || !endsUpload) && held?.status !== 'pending';
    return {
      committed: false,
      state,
      ...(ended && held ? { upload: copy(held) } : {}),
      ...(failed.occupied === undefined ? {} : { occupied: failed.occupied }),
      ...(failed.holdsFiles ? { holdsFiles: true } : {}),
      ...(failed.pinned === undefined ? {} : { pinned: copy(failed.pinned) }),
    };
  }

  /** The commit's conditions that fail, as DynamoDB's cancellation reasons name them; undefined if none. */
  private failedConditions(
    { version, change, folderRule, blob }: CommitWrite,
    endsUpload: boolean,
  ):
    | {
        head: boolean;
        upload: boolean;
        occupied: string | undefined;
        holdsFiles: boolean;
        pinned: Blob | undefined;
      }
    | undefined {
    const head = (this.heads.get(version.path)?.version ?? 0) !== version.version - 1;
    const upload = endsUpload && this.uploads.get(version.uploadId)?.status !== 'pending';
    const { occupied, holdsFiles } = this.folderRuleRefusal(version.path, folderRule);
    const counter = this.feedOf(change.shard).length !== change.seq - 1;
    const versionTaken = this.versions.get(version.path)?.has(version.version) === true;
    const pinned = blob === undefined ? undefined : this.pinHolding(blob);
    const any =
      head ||
      upload ||
      counter ||
      versionTaken ||
      occupied !== undefined ||
      holdsFiles ||
      pinned !== undefined;
    return any ? { head, upload, occupied, holdsFiles, pinned } : undefined;
  }

  /**
   * As DynamoLedger's folder rule items: each folder's head absent or a tombstone, and, for a file
   * that appears, no live file counted under the path.
   */
  private folderRuleRefusal(
    path: string,
    rule: FolderRuleWrite | undefined,
  ): { occupied: string | undefined; holdsFiles: boolean } {
    if (rule === undefined || rule.change === 'goes') return { occupied: undefined, holdsFiles: false };
    const occupied = rule.folders.find((f) => this.heads.get(f)?.deleted === false);
    const holdsFiles = rule.change === 'appears' && (this.folderRows.get(path)?.liveFiles ?? 0) > 0;
    return { occupied, holdsFiles };
  }

  /** The folder rule's rows after a commit, as DynamoLedger's updates leave them. */
  private keepFolderRule({ version, folderRule }: CommitWrite): void {
    if (folderRule === undefined || folderRule.change === 'stays') return;
    const appears = folderRule.change === 'appears';
    const row = (p: string) => this.folderRows.get(p) ?? { liveFiles: 0 };
    for (const f of folderRule.folders)
      this.folderRows.set(f, { ...row(f), liveFiles: row(f).liveFiles + (appears ? 1 : -1) });
    const { countedIn: _forgotten, ...own } = row(version.path);
    this.folderRows.set(version.path, appears ? { ...own, countedIn: [...folderRule.folders] } : own);
  }

  private apply(version: FileVersion, change: Change, upload: CommitWrite['upload']): void {
    const versions = this.versions.get(version.path) ?? new Map<number, VersionItem>();
    versions.set(version.version, { ...version, feedSeq: change.seq });
    this.versions.set(version.path, versions);
    this.heads.set(version.path, version);
    this.feedOf(change.shard).push(change);
    const held = this.uploads.get(version.uploadId);
    if (upload === undefined || held === undefined || version.sha256 === null) return;
    this.uploads.set(version.uploadId, {
      ...held,
      status: 'committed',
      version: version.version,
      updatedAt: version.committedAt,
      ...(upload.deduplicated ? { deduplicated: true } : {}),
    });
    this.pending.get(version.sha256)?.delete(version.uploadId);
  }

  private feedOf(shard: number): Change[] {
    let feed = this.feeds.get(shard);
    if (feed === undefined) {
      feed = [];
      this.feeds.set(shard, feed);
    }
    return feed;
  }

  async getVersion(path: string, version: number): Promise<FileVersion | undefined> {
    return copy(this.versions.get(path)?.get(version));
  }

  async listVersions(path: string, options: { limit: number; before?: number }): Promise<FileVersion[]> {
    const before = options.before ?? Number.POSITIVE_INFINITY;
    const newestFirst = [...(this.versions.get(path)?.values() ?? [])]
      .filter((v) => v.version < before)
      .sort((a, b) => b.version - a.version);
    return copy(newestFirst.slice(0, options.limit));
  }

  async getHead(path: string): Promise<FileVersion | undefined> {
    return copy(this.heads.get(path));
  }

  async liveFilesAmong(paths: readonly string[]): Promise<string[]> {
    return paths.filter((p) => {
      const head = this.heads.get(p);
      return head !== undefined && !head.deleted;
    });
  }

  async hasLiveFileUnder(folder: string): Promise<boolean> {
    // As the live-files index answers it: heads in the folder's top-level partition, under `folder/`.
    const partition = folderPartition(folder);
    return [...this.heads.values()].some(
      (h) => !h.deleted && folderPartition(h.path) === partition && h.path.startsWith(`${folder}/`),
    );
  }

  async listLiveFiles(options: { prefix: string; after?: string | undefined; limit: number }): Promise<{
    files: FileVersion[];
    next?: string | undefined;
  }> {
    // In UTF-8 byte order, as DynamoDB sorts the index's string keys.
    const byBytes = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));
    const after = options.after;
    const paths = [...this.heads.values()]
      .filter((h) => !h.deleted && h.path.startsWith(options.prefix))
      .map((h) => h.path)
      .sort(byBytes)
      .filter((p) => after === undefined || byBytes(p, after) > 0);
    const page = paths.slice(0, options.limit);
    const files = copy(page.map((p) => this.heads.get(p) as FileVersion));
    return paths.length > page.length ? { files, next: page.at(-1) } : { files };
  }

  async *scanHeads(): AsyncIterable<FileVersion> {
    const heads = copy([...this.heads.values()]);
    yield* heads;
  }

  async pageHeads(options: { after?: string | undefined; limit: number }): Promise<{
    heads: FileVersion[];
    next?: string | undefined;
  }> {
    // Paths in order, the position the last path returned: a head added meanwhile is met if it sorts later.
    const paths = [...this.heads.keys()]
      .sort()
      .filter((p) => options.after === undefined || p > options.after);
    const page = paths.slice(0, options.limit);
    const heads = copy(page.map((p) => this.heads.get(p) as FileVersion));
    return paths.length > page.length ? { heads, next: page.at(-1) } : { heads };
  }

  // Change feed

  async latestFeedSeq(shard: number): Promise<number> {
    return this.feedOf(shard).length;
  }

  async markFannedOut(shard: number, seq: number): Promise<void> {
    const feed = this.feedOf(shard);
    const entry = feed[seq - 1];
    if (entry === undefined) throw new Error(`feed entry ${shard}/${seq} does not exist`);
    feed[seq - 1] = { ...entry, fannedOut: true };
  }

  async readFeed(shard: number, afterSeq: number, limit: number): Promise<Change[]> {
    return copy(this.feedOf(shard).slice(Math.max(0, afterSeq), Math.max(0, afterSeq) + limit));
  }

  // Targets

  async readForReplication(
    path: string,
    targetId: string,
    sha256: string | undefined,
  ): Promise<ReplicationRead> {
    const [head, state, blob] = await Promise.all([
      this.getHead(path),
      this.getTargetState(path, targetId),
      sha256 === undefined ? undefined : this.getBlob(sha256),
    ]);
    return { head, state, blob };
  }

  async getTargetState(path: string, targetId: string): Promise<TargetState | undefined> {
    const item = this.targets.get(targetKey(targetId, path));
    return item ? toTargetState(item) : undefined;
  }

  async listTargetStates(path: string, targetIds: readonly string[]): Promise<TargetState[]> {
    return targetIds.flatMap((id) => {
      const item = this.targets.get(targetKey(id, path));
      return item ? [toTargetState(item)] : [];
    });
  }

  async recordTargetState(state: TargetState): Promise<boolean> {
    const key = targetKey(state.targetId, state.path);
    if (!targetIsBehind(this.targets.get(key), state)) return false;
    // A new state clears the last failure, as DynamoLedger's update removes it.
    this.targets.set(key, {
      targetId: state.targetId,
      path: state.path,
      appliedVersion: state.appliedVersion,
      status: state.status,
      appliedAt: state.appliedAt,
      reason: state.reason,
      etag: state.etag,
      failure: undefined,
    });
    return true;
  }

  async recordTargetFailure(failure: {
    targetId: string;
    path: string;
    version: number;
    reason: string;
    at: string;
  }): Promise<void> {
    const key = targetKey(failure.targetId, failure.path);
    const held = this.targets.get(key);
    this.targets.set(key, {
      targetId: failure.targetId,
      path: failure.path,
      appliedVersion: held?.appliedVersion ?? 0,
      status: held?.status ?? 'failed',
      appliedAt: held?.appliedAt,
      reason: held?.reason,
      etag: held?.etag,
      failure: { version: failure.version, reason: failure.reason.slice(0, 1000), at: failure.at },
    });
  }

  async forgetTargetState(path: string, targetId: string): Promise<void> {
    this.targets.delete(targetKey(targetId, path));
  }

  async getCopyUpload(targetId: string, path: string): Promise<CopyUpload | undefined> {
    return copy(this.copyUploads.get(targetKey(targetId, path)));
  }

  async putCopyUpload(targetId: string, path: string, upload: CopyUpload): Promise<void> {
    this.copyUploads.set(targetKey(targetId, path), stored(upload));
  }

  async deleteCopyUpload(targetId: string, path: string, uploadId: string): Promise<void> {
    const key = targetKey(targetId, path);
    if (this.copyUploads.get(key)?.uploadId === uploadId) this.copyUploads.delete(key);
  }

  async getWatermark(targetId: string): Promise<readonly number[] | undefined> {
    return copy(this.watermarks.get(targetId));
  }

  async setWatermark(targetId: string, cursor: readonly number[]): Promise<void> {
    this.watermarks.set(targetId, [...cursor]);
  }

  async appliedVersions(targetId: string, paths: readonly string[]): Promise<Map<string, number>> {
    return new Map(
      paths.flatMap((p) => {
        const item = this.targets.get(targetKey(targetId, p));
        return item ? [[p, item.appliedVersion] as const] : [];
      }),
    );
  }

  async getLagRecord(targetId: string): Promise<LagRecord | undefined> {
    const cursor = this.watermarks.get(targetId);
    if (!cursor) return undefined;
    const selection = this.lagSelections.get(targetId);
    return copy({
      cursor,
      figures: this.lagFigures.get(targetId),
      rewinds: this.rewinds.get(targetId) ?? 0,
      ...(selection === undefined ? {} : { selection }),
    });
  }

  async putLagRecord(targetId: string, record: LagRecord): Promise<boolean> {
    if ((this.rewinds.get(targetId) ?? 0) !== (record.rewinds ?? 0)) return false;
    this.watermarks.set(targetId, [...record.cursor]);
    if (record.figures) this.lagFigures.set(targetId, copy(record.figures));
    if (record.selection !== undefined) this.lagSelections.set(targetId, record.selection);
    return true;
  }

  async rewindWatermark(targetId: string, path: string, version: number): Promise<void> {
    const entry = [...this.feeds.values()].flat().find((c) => c.path === path && c.version === version);
    const cursor = this.watermarks.get(targetId);
    const at = entry === undefined ? undefined : cursor?.[entry.shard];
    if (entry === undefined || cursor === undefined || at === undefined || at <= entry.seq - 1) return;
    cursor[entry.shard] = entry.seq - 1;
    this.rewinds.set(targetId, (this.rewinds.get(targetId) ?? 0) + 1);
  }

  async getReconcileCheckpoint(): Promise<ReconcileCheckpoint | undefined> {
    return copy(this.reconcileCheckpoint);
  }

  async putReconcileCheckpoint(checkpoint: ReconcileCheckpoint): Promise<void> {
    const { listing, ...walk } = checkpoint;
    this.reconcileCheckpoint = stored({ ...walk, ...(listing ? { listing: stored(listing) } : {}) });
  }

  // Agents

  async getAgentReport(targetId: string): Promise<AgentReport | undefined> {
    return this.heartbeats.get(targetId);
  }
}

/** What a head holds, as CommitState carries it. */
function contentOf(head: FileVersion): NonNullable<CommitState['content']> {
  const { sha256, size, contentType, deleted } = head;
  return { sha256, size, contentType, deleted };
}
