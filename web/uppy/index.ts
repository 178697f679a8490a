/**
 * Media Mirror as an Uppy uploader (Uppy 5 and 6): `uppy.use(MediaMirror, { api, token })`.
 *
 * Each file goes through the web client's `uploadFile` (docs/browser.md): hashed in a Web
 * Worker, claimed at the API, sent in one presigned PUT or in parts with per-part SHA-256
 * checksums, and reported done only once the version is committed. Why not `@uppy/aws-s3`:
 * version 6 speaks S3's own multipart protocol and cannot use the API's claim, proof and
 * commit steps; and a deduplicated claim (known content, nothing to send) has no equivalent
 * there, so the file would show as failed although it was committed.
 *
 * - Known content is committed without sending bytes and shows as complete.
 * - Retry (Uppy's own button) continues the same upload: the plugin keeps one
 *   Idempotency-Key per Uppy file, so a retried claim gets the same upload back, a multipart
 *   upload sends only the parts storage lacks, and nothing is committed twice. If that upload
 *   has ended meanwhile, Retry shows its commit, or (rejected, expired) claims the file anew
 *   under a new key; after a rejected verdict the key is dropped, so Retry starts afresh.
 * - Removing a file or "cancel all" aborts its upload at the API, unless the upload was another
 *   client's that this one joined (resumed): that one is left to them.
 * - A name with `%`, `?` or `#`, which the API refuses, fails before it is hashed, with the rule;
 *   so does a file larger than the API takes, or of a type it refuses (its `GET /v1/limits`), and
 *   one whose path the claim would refuse for a rule only the API knows (an S3 target's key
 *   prefix, a pull target's names, a file where a folder is): `uploadFile` asks `GET /v1/paths`.
 * - Two files of one batch that go to one path (`photo.jpg` from two folders): the first added is
 *   uploaded, a later one with other content fails, naming the path and that file, and sends
 *   nothing (else it would silently become the path's next version, and which one ended as the
 *   head would depend on which committed last). Its Retry fails again while that file is still
 *   in Uppy under that path; renamed, it goes under its new name. The same bytes twice are fine.
 * - The answer (`file.response.body`) is the client's `UploadResult`: version, SHA-256,
 *   whether it was deduplicated or resumed.
 */
import { BasePlugin, type Body, type Meta, type PluginOpts, type Uppy, type UppyFile } from '@uppy/core';
import type { Limits } from '../../contracts/api.ts';
import { checkApiName, checkNewPathName, folderPrefix, normalizePath } from '../../contracts/path-rules.ts';
import {
  MirrorApi,
  newIdempotencyKey,
  type RequestSigner,
  type UploadProgress,
  type UploadResult,
  uploadFile,
} from '../client/index.ts';
import { sameBytes } from '../client/same-bytes.ts';
import { DEFAULT_STALL_MS } from '../client/upload/storage.ts';

export interface MediaMirrorOptions extends PluginOpts {
  /** The API's base URL, e.g. `https://media.example.com`. */
  readonly api: string;
  /** Bearer token for the API (the local stack, a JWT authorizer). Not with `sign`. */
  readonly token?: string;
  /**
   * Signs each API request instead of a token: an API behind IAM, with credentials the page holds
   * (docs/browser.md, "Tokens"). Not with `token`.
   */
  readonly sign?: RequestSigner;
  /**
   * The mirror path of a file. @default `prefix` + the file's relative path (folder drops) or
   * its name. A name with `%`, `?` or `#` is refused (the API's rule, docs/api.md); a `pathOf`
   * that replaces them lets such files through under another name (docs/browser.md).
   */
  readonly pathOf?: (file: UppyFile<Meta, Body>) => string;
  /**
   * Write a file only if its path's latest version is still this one (0: only if the path is
   * new), e.g. the version a CMS showed the editor who replaced the file. Another writer's
   * commit in between fails the file with 409 `version_conflict` (field `ifVersion`), sending
   * no version. `undefined` for a file: no condition. @default no condition for any file
   */
  readonly ifVersionOf?: (file: UppyFile<Meta, Body>) => number | undefined;
  /** The folder of the default path, e.g. `uploads/2026/` (`uploads/2026` is the same folder). @default '' */
  readonly prefix?: string;
  /** Files uploaded at once. @default 3 */
  readonly limit?: number;
  /** Where the client's `hash-worker.js` is served (`null`: hash on the page's thread). @default next to the client */
  readonly workerUrl?: string | URL | null;
  /** Retries of each request after a network error, 408, 429 or 5xx. @default the client's (4) */
  readonly retries?: number;
  /** Parts of one file sent at once. @default the client's (4) */
  readonly partConcurrency?: number;
}

/** What Uppy stores as `file.response.body` for a committed file. */
export type MediaMirrorBody = UploadResult & Body;

const IDEMPOTENCY_META = 'mediaMirrorIdempotencyKey';
/** The id of the file a file was refused for (same path, other content): its Retry is refused too. */
const SAME_PATH_META = 'mediaMirrorSamePathAs';

function defaultPath(file: UppyFile<Meta, Body>, prefix: string): string {
  const { relativePath: relative, name: named } = file.meta as { relativePath?: unknown; name?: unknown };
  // meta.name: the name the user sees and may edit (the Dashboard's file card); Uppy's own
  // uploaders send it too. file.name stays what the file was called when it was added.
  const renamed = typeof named === 'string' && named !== '' && named !== file.name ? named : undefined;
  const name =
    typeof relative === 'string' && relative !== ''
      ? renamed === undefined
        ? relative
        : relative.replace(/[^/]*$/, renamed)
      : (renamed ?? file.name ?? file.id);
  return `${prefix}${name.replace(/^\/+/, '')}`;
}

function samePathError(other: UppyFile<Meta, Body>, path: string): Error {
  const size = other.data instanceof Blob ? other.data.size : (other.size ?? 0);
  return new Error(
    `another file, "${defaultPath(other, '')}" (${size.toLocaleString('en-US')} bytes), also goes to "${path}", ` +
      'with other content: this one would replace it. Rename this file (or remove the other) and retry',
  );
}

export default class MediaMirror<M extends Meta, B extends Body> extends BasePlugin<
  MediaMirrorOptions,
  M,
  B
> {
  static readonly VERSION = '0.1.0';
  readonly #controllers = new Map<string, AbortController>();
  /** The deployment's limits (`GET /v1/limits`), read once; undefined when unreadable (read again next time). */
  #limits: Promise<Limits | undefined> | undefined;

  constructor(uppy: Uppy<M, B>, opts: MediaMirrorOptions) {
    super(uppy, opts);
    this.id = opts.id ?? 'MediaMirror';
    this.type = 'uploader';
    if (!opts.api || !opts.token === !opts.sign) {
      throw new TypeError('MediaMirror needs `api` (the API URL) and one of `token` or `sign`');
    }
  }

  override install(): void {
    this.uppy.addUploader(this.#upload);
    this.uppy.on('file-removed', this.#onFileRemoved);
    this.uppy.on('cancel-all', this.#onCancelAll);
  }

  override uninstall(): void {
    this.uppy.removeUploader(this.#upload);
    this.uppy.off('file-removed', this.#onFileRemoved);
    this.uppy.off('cancel-all', this.#onCancelAll);
    this.#onCancelAll();
  }

  readonly #onFileRemoved = (file: UppyFile<M, B>): void => {
    this.#controllers.get(file.id)?.abort(new Error('the file was removed'));
  };

  readonly #onCancelAll = (): void => {
    for (const controller of this.#controllers.values())
      controller.abort(new Error('the upload was cancelled'));
  };

  readonly #upload = async (fileIDs: string[]): Promise<void> => {
    const earlier = this.#samePathEarlier(fileIDs);
    const queue = [...fileIDs];
    const worker = async () => {
      for (let id = queue.shift(); id !== undefined; id = queue.shift())
        await this.#uploadOne(id, earlier.get(id));
    };
    const lanes = Math.max(1, Math.min(this.opts.limit ?? 3, queue.length));
    await Promise.all(Array.from({ length: lanes }, worker));
  };

  /**
   * For each file of the batch that goes to a path another file takes, that file: the one added
   * before it in the batch (Uppy's order, so the same one every time, whichever would finish
   * first), or the one its last attempt was refused for, if that is still in Uppy under that path.
   */
  #samePathEarlier(fileIDs: readonly string[]): Map<string, UppyFile<M, B>> {
    const first = new Map<string, UppyFile<M, B>>();
    const earlier = new Map<string, UppyFile<M, B>>();
    for (const id of fileIDs) {
      const file = this.uppy.getFile(id);
      const path = file === undefined ? undefined : this.#uploadablePath(file);
      if (file === undefined || path === undefined) continue;
      const other = this.#refusedFor(file, path) ?? first.get(path);
      if (other === undefined) first.set(path, file);
      else earlier.set(id, other);
    }
    return earlier;
  }

  /** The file this one was last refused for, if it still goes to the same path. */
  #refusedFor(file: UppyFile<M, B>, path: string): UppyFile<M, B> | undefined {
    const otherID = (file.meta as Record<string, unknown>)[SAME_PATH_META];
    const other = typeof otherID === 'string' ? this.uppy.getFile(otherID) : undefined;
    return other !== undefined && this.#uploadablePath(other) === path ? other : undefined;
  }

  /**
   * The path a local file would be stored at; undefined: it fails anyway (remote, refused name).
   * In NFC, as the API stores it: `café.jpg` from a Mac's folder (NFD) and from a download (NFC)
   * are one path.
   */
  #uploadablePath(file: UppyFile<M, B>): string | undefined {
    if (!(file.data instanceof Blob)) return undefined;
    const path = this.#pathOrRefusal(file);
    return path instanceof Error ? undefined : path.normalize('NFC');
  }

  async #uploadOne(fileID: string, earlier: UppyFile<M, B> | undefined): Promise<void> {
    const file = this.uppy.getFile(fileID);
    if (file === undefined) return;
    // Registered before the comparison with another file of its path (reading both, seconds for
    // large ones): removed or cancelled meanwhile, the file must not go on once it is compared.
    const controller = new AbortController();
    this.#controllers.set(fileID, controller);
    try {
      const ready = await this.#readyToSend(file, earlier);
      if (controller.signal.aborted) return;
      if (ready instanceof Error) {
        this.#fail(fileID, ready);
        return;
      }
      await this.#send(fileID, file, ready, controller);
    } finally {
      // A file removed and added again has the same id: its new attempt may have registered since.
      if (this.#controllers.get(fileID) === controller) this.#controllers.delete(fileID);
    }
  }

  async #send(
    fileID: string,
    file: UppyFile<M, B>,
    { data, path }: { data: Blob; path: string },
    controller: AbortController,
  ): Promise<void> {
    this.uppy.emit('upload-start', [file]);
    try {
      // A file too large or of a type the mirror refuses fails before its hashing (minutes for a
      // multi-GiB file), with the claim's refusal; unreadable limits leave it to the claim.
      const limits = await this.#deploymentLimits();
      if (controller.signal.aborted) return;
      const result = await uploadFile(data, {
        ...(limits === undefined ? {} : { limits }),
        api: this.opts.api,
        ...this.#credentials(),
        path,
        ...(file.type ? { contentType: file.type } : {}),
        ...this.#ifVersion(file),
        idempotencyKey: this.#idempotencyKey(file),
        onIdempotencyKey: (key) => this.#keepIdempotencyKey(fileID, key),
        signal: controller.signal,
        onProgress: (progress) => this.#progress(fileID, progress),
        ...(this.opts.workerUrl === undefined ? {} : { workerUrl: this.opts.workerUrl }),
        ...(this.opts.retries === undefined ? {} : { retries: this.opts.retries }),
        ...(this.opts.partConcurrency === undefined ? {} : { partConcurrency: this.opts.partConcurrency }),
      });
      if (controller.signal.aborted) return;
      if (result.status !== 'committed') {
        // That upload is over: Retry must claim the file anew, not replay this claim.
        this.#keepIdempotencyKey(fileID, undefined);
        this.#fail(fileID, new Error(`not committed: ${result.reason ?? 'rejected by the ingest'}`));
        return;
      }
      this.uppy.emit('upload-success', this.uppy.getFile(fileID), {
        status: 200,
        body: result as unknown as B,
        bytesUploaded: result.bytesSent,
      });
    } catch (err) {
      // A removed file or "cancel all" is not a failure to report.
      if (!controller.signal.aborted) this.#fail(fileID, err as Error);
    }
  }

  /** The file's bytes and path; or why it fails before anything is hashed or claimed. */
  async #readyToSend(
    file: UppyFile<M, B>,
    earlier: UppyFile<M, B> | undefined,
  ): Promise<{ data: Blob; path: string } | Error> {
    if (!(file.data instanceof Blob)) {
      return new Error('only local files can be uploaded (remote providers are not supported)');
    }
    const path = this.#pathOrRefusal(file);
    if (path instanceof Error) return path;
    const ready = { data: file.data, path };
    if (earlier === undefined) return ready;
    // The same bytes and type are one version at the API (it keeps an equal head): nothing is replaced.
    if (
      file.type === earlier.type &&
      earlier.data instanceof Blob &&
      (await sameBytes(file.data, earlier.data))
    ) {
      return ready;
    }
    this.#keepMeta(file.id, SAME_PATH_META, earlier.id);
    return samePathError(earlier as UppyFile<Meta, Body>, path);
  }

  /** The file's mirror path, or the API's refusal of it (a name with `%`, `?` or `#`). */
  #pathOrRefusal(file: UppyFile<M, B>): string | Error {
    const path =
      this.opts.pathOf?.(file as UppyFile<Meta, Body>) ??
      defaultPath(file as UppyFile<Meta, Body>, folderPrefix(this.opts.prefix ?? ''));
    try {
      // The API refuses such a name only at the claim, after the whole file is hashed: refused
      // here, the file fails at once, with the rule in words. The path rules too (a bidirectional
      // control, a zero-width space or a "..": the CLI checks them before hashing as well).
      checkNewPathName(path);
      checkApiName(normalizePath(path));
      return path;
    } catch (err) {
      return err as Error;
    }
  }

  #deploymentLimits(): Promise<Limits | undefined> {
    if (this.#limits !== undefined) return this.#limits;
    // Unanswered, it would hold up every file: after the stall window the claim decides instead.
    const api = new MirrorApi({
      baseUrl: this.opts.api,
      ...this.#credentials(),
      timeoutMs: DEFAULT_STALL_MS,
    });
    this.#limits = api.limits().catch(() => {
      this.#limits = undefined;
      return undefined;
    });
    return this.#limits;
  }

  #ifVersion(file: UppyFile<M, B>): { ifVersion?: number } {
    const ifVersion = this.opts.ifVersionOf?.(file as UppyFile<Meta, Body>);
    return ifVersion === undefined ? {} : { ifVersion };
  }

  /** How the API is authorized: the signer, else the token (the constructor saw exactly one). */
  #credentials(): { sign: RequestSigner } | { token: string } {
    return this.opts.sign ? { sign: this.opts.sign } : { token: this.opts.token ?? '' };
  }

  /** One key per Uppy file, kept in its meta: Uppy's Retry then continues the same upload. */
  #idempotencyKey(file: UppyFile<M, B>): string {
    const existing = (file.meta as Record<string, unknown>)[IDEMPOTENCY_META];
    if (typeof existing === 'string') return existing;
    // Not crypto.randomUUID: browsers define it only in secure contexts, and a CMS may be on plain HTTP.
    const key = newIdempotencyKey();
    this.#keepIdempotencyKey(file.id, key);
    return key;
  }

  /** The key the file's next attempt claims under; undefined: a new one. */
  #keepIdempotencyKey(fileID: string, key: string | undefined): void {
    this.#keepMeta(fileID, IDEMPOTENCY_META, key);
  }

  #keepMeta(fileID: string, name: string, value: string | undefined): void {
    if (this.uppy.getFile(fileID) === undefined) return;
    this.uppy.setFileMeta(fileID, { [name]: value } as unknown as M);
  }

  #progress(fileID: string, progress: UploadProgress): void {
    const file = this.uppy.getFile(fileID);
    if (file === undefined) return;
    if (progress.phase === 'hashing') {
      const value = progress.bytesTotal === 0 ? 1 : progress.bytesDone / progress.bytesTotal;
      this.uppy.emit('preprocess-progress', file, { mode: 'determinate', message: 'Hashing', value });
      return;
    }
    // Hashing is over whatever comes next, bytes to send or none (content the mirror holds): left
    // open, the Dashboard would show the file processing for good.
    if (file.progress.preprocess !== undefined) this.uppy.emit('preprocess-complete', file);
    if (progress.phase !== 'uploading') return;
    this.uppy.emit('upload-progress', this.uppy.getFile(fileID), {
      uploadStarted: file.progress.uploadStarted ?? Date.now(),
      bytesUploaded: progress.bytesDone,
      bytesTotal: progress.bytesTotal,
    });
  }

  #fail(fileID: string, error: Error): void {
    // Removed meanwhile (the comparison of two files is awaited): nothing left to show it on.
    const file = this.uppy.getFile(fileID);
    if (file === undefined) return;
    // Failed before any phase after its hashing (a claim the API refused): its "Hashing" step is
    // over too, or Uppy goes on counting the failed file as processing.
    if (file.progress.preprocess !== undefined) this.uppy.emit('preprocess-complete', file);
    this.uppy.emit('upload-error', this.uppy.getFile(fileID), {
      name: error.name,
      message: error.message,
    });
  }
}
