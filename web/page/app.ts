/**
 * The upload page the local stack serves at `/`: pick or drop files, watch them hash,
 * upload (or deduplicate), verify, then reach every target; and the recent files.
 *
 * The token comes from (first found): `#token=` (or `?token=`) in the address (then kept
 * in sessionStorage for reloads and removed from the address), sessionStorage,
 * `<meta name="mirror-token">`, or `config.json` next to the page (`{"token", "api"}`,
 * asked only when none of the others has one; the local stack writes no token there, since
 * any process on the machine can read it over loopback: `npm start` prints the page's
 * address with `#token=`, which no request carries). The API is `?api=` when its origin is
 * an allowed one, else `<meta name="mirror-api">`, else config.json's `api` (when it was
 * read), else the page's own origin. Allowed: the page's own origin and config.json's
 * `origins` (the local stack writes the API front's own origins there: the addresses that
 * are this API, not the origins allowed to call it). Anyone can send a link with `?api=`:
 * the page never sends the token to an address that list does not name.
 */
import type { ChangesPage, FileStatus, Limits, TargetList } from '../../contracts/api.ts';
import {
  checkApiName,
  checkNewPathName,
  folderPrefix,
  normalizePath,
  replaceHiddenCharacters,
} from '../../contracts/path-rules.ts';
import { MirrorApi } from '../client/api.ts';
import { ApiError } from '../client/errors.ts';
import { formatBytes, type UploadProgress } from '../client/plan.ts';
import { DEFAULT_RETRY_WINDOW_MS } from '../client/retry.ts';
import { sameBytes } from '../client/same-bytes.ts';
import { DEFAULT_STALL_MS } from '../client/upload/storage.ts';
import { type UploadResult, uploadFile } from '../client/upload-file.ts';
import { FOLLOW_MS, TargetWatch } from './target-watch.ts';

const FILE_CONCURRENCY = 2;
const RECENT_COUNT = 15;
const TOKEN_KEY = 'media-mirror.token';

type Target = TargetList['targets'][number];
type TargetState = FileStatus['targets'][number];
type Change = ChangesPage['changes'][number];

const $ = <T extends HTMLElement>(selector: string): T => {
  const el = document.querySelector<T>(selector);
  if (!el) throw new Error(`the page has no ${selector}`);
  return el;
};

const el = <K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<Record<string, string>> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] => {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined) continue;
    if (name === 'class') node.className = value;
    else if (name === 'text') node.textContent = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
};

// ---- configuration ----

const config = { api: window.location.origin };

function metaContent(name: string): string | undefined {
  return document.querySelector<HTMLMetaElement>(`meta[name="${name}"]`)?.content || undefined;
}

/** The origin of an http(s) address, or undefined. */
function originOf(address: string): string | undefined {
  try {
    const parsed = new URL(address);
    return parsed.protocol === 'http:' || parsed.protocol === 'https:' ? parsed.origin : undefined;
  } catch {
    return undefined;
  }
}

interface ServedConfig {
  readonly api?: unknown;
  readonly token?: unknown;
  readonly origins?: unknown;
}

/** config.json next to the page; undefined when there is none. */
async function fetchServedConfig(): Promise<ServedConfig | undefined> {
  try {
    const response = await fetch('config.json', { cache: 'no-store', credentials: 'same-origin' });
    return response.ok ? ((await response.json()) as ServedConfig) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * `#token=` (or `?token=`) in the address: kept for reloads, but out of the address bar and
 * screenshots. The fragment never travels in a request or a Referer; the browser's history
 * still records the address as it was opened.
 */
function takeTokenFromAddress(url: URL): string | undefined {
  const fragment = new URLSearchParams(url.hash.replace(/^#/, ''));
  const token = fragment.get('token') ?? url.searchParams.get('token') ?? undefined;
  if (token === undefined) return undefined;
  sessionStorage.setItem(TOKEN_KEY, token);
  url.searchParams.delete('token');
  fragment.delete('token');
  url.hash = fragment.toString();
  window.history.replaceState(null, '', url);
  return token;
}

/** `?api=` when its origin is the page's own or one config.json allows; else undefined (and said so). */
function allowedApi(requestedApi: string, served: ServedConfig | undefined): string | undefined {
  const allowed = new Set([window.location.origin]);
  if (Array.isArray(served?.origins)) {
    for (const o of served.origins) if (typeof o === 'string') allowed.add(o);
  }
  const origin = originOf(requestedApi);
  if (origin !== undefined && allowed.has(origin)) return requestedApi;
  document.body.dataset.apiIgnored = requestedApi;
  console.warn(`Media Mirror: ignoring ?api=${requestedApi}: not one of the allowed origins`);
  return undefined;
}

const servedString = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);

async function loadConfig(tokenInput: HTMLInputElement): Promise<void> {
  const url = new URL(window.location.href);
  const requestedApi = url.searchParams.get('api') ?? undefined;
  let token =
    takeTokenFromAddress(url) ??
    sessionStorage.getItem(TOKEN_KEY) ??
    metaContent('mirror-token') ??
    undefined;
  const foreign = requestedApi !== undefined && originOf(requestedApi) !== window.location.origin;
  // Only asked when needed: a missing config.json is normal when the token is given otherwise.
  const served = token === undefined || foreign ? await fetchServedConfig() : undefined;
  token ??= servedString(served?.token);
  let api = metaContent('mirror-api') ?? servedString(served?.api);
  if (requestedApi !== undefined) api = allowedApi(requestedApi, served) ?? api;
  if (api) config.api = api.replace(/\/+$/, '');
  document.body.dataset.api = config.api;
  if (token) tokenInput.value = token;
}

// ---- the API client (the token is the field's current value) ----

function client(): MirrorApi {
  const token = $<HTMLInputElement>('#token').value.trim();
  // A call on a dead connection would otherwise hang an upload (or the recent files) for good,
  // and a short drop would fail it after a few seconds of retries.
  return new MirrorApi({
    baseUrl: config.api,
    token,
    timeoutMs: DEFAULT_STALL_MS,
    retryWindowMs: DEFAULT_RETRY_WINDOW_MS,
  });
}

/**
 * A local file name as people see it: a bidirectional or invisible character (the path rules
 * refuse them) would make `inv\u202Egnp.exe` read as `invexe.png`; each is shown as its code.
 */
function shownName(text: string): string {
  return replaceHiddenCharacters(text, (char) => {
    const code = (char.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0');
    return `<U+${code}>`;
  });
}

/** The deployment's limits (`GET /v1/limits`), read once; undefined when unreadable (read again next time). */
let limitsRead: Promise<Limits | undefined> | undefined;

function deploymentLimits(): Promise<Limits | undefined> {
  limitsRead ??= client()
    .limits()
    .catch(() => {
      limitsRead = undefined;
      return undefined;
    });
  return limitsRead;
}

/** The content types the deployment accepts; undefined when unreadable. */
const contentTypesAccepted = async (): Promise<readonly string[] | undefined> =>
  (await deploymentLimits())?.contentTypes;

/** A refused content type in words: the file's own type, then what the mirror takes. */
async function describeTypeRefusal(file: File, error: ApiError): Promise<string> {
  const type = file.type || 'application/octet-stream';
  const accepted = await contentTypesAccepted();
  const name = shownName(file.name);
  if (accepted === undefined) return `${name} is ${type}: ${error.message}`;
  return `${name} is ${type}; the mirror accepts ${accepted.join(', ')}.`;
}

/**
 * A failure the network (or a busy server) caused: the file itself is fine, and dropping it again
 * continues the upload (a multipart upload sends only the parts storage does not hold yet).
 */
const CONTINUE_HINT =
  'To continue, drop or pick the same file again (same folder): the parts already stored are not sent again.';

const worthAnotherTry = (error: unknown): boolean => error instanceof ApiError && error.transient;

function describeError(error: unknown): string {
  if (error instanceof DOMException && error.name === 'AbortError') return 'Cancelled.';
  if (error instanceof ApiError) {
    if (error.status === 401) return 'The API refused the token: check the API token field.';
    if (error.code === 'version_conflict') return `Someone changed this file meanwhile: ${error.message}`;
    return error.field ? `${error.message} (field: ${error.field})` : error.message;
  }
  if (error instanceof Error) return error.message;
  return String(error);
}

// ---- targets ----

let targets: Target[] | undefined;

async function loadTargets(): Promise<Target[]> {
  if (targets) return targets;
  const answer = await client().listTargets();
  targets = answer.targets;
  return targets;
}

// ---- one upload ----

type State = 'queued' | UploadProgress['phase'] | 'error' | 'cancelled';

const PHASE_TEXT: Record<UploadProgress['phase'], string> = {
  hashing: 'Hashing',
  uploading: 'Uploading',
  verifying: 'Verifying',
  committed: 'Committed',
  deduplicated: 'Deduplicated',
  rejected: 'Rejected',
};

let uploadCounter = 0;

class UploadItem {
  readonly li: HTMLLIElement;
  private readonly progress: HTMLProgressElement;
  private readonly phase: HTMLParagraphElement;
  private readonly error: HTMLParagraphElement;
  private readonly cancel: HTMLButtonElement;
  private readonly targetsBody: HTMLTableSectionElement;
  private readonly targetsTable: HTMLTableElement;
  private readonly controller = new AbortController();
  private readonly times: Partial<Record<'hashing' | 'uploading' | 'verifying', number>> = {};
  private lastPhase: UploadProgress['phase'] | undefined;

  constructor(
    readonly file: File,
    readonly path: string,
    /** An upload to the same path, not ended when this one was added. */
    private readonly earlier?: UploadItem,
  ) {
    const n = ++uploadCounter;
    const titleId = `upload-${n}-title`;
    this.progress = el('progress', { max: '1', value: '0', 'aria-labelledby': titleId });
    this.phase = el('p', { class: 'phase', 'aria-live': 'polite', text: 'Waiting…' });
    this.error = el('p', { class: 'error', role: 'alert' });
    this.error.hidden = true;
    this.cancel = el('button', { type: 'button', class: 'button secondary', text: 'Cancel' });
    this.cancel.setAttribute('aria-label', `Cancel the upload of ${shownName(file.name)}`);
    this.cancel.addEventListener('click', () => this.controller.abort());
    this.targetsBody = el('tbody');
    this.targetsTable = el(
      'table',
      { class: 'targets' },
      el('caption', { class: 'visually-hidden', text: `Targets of ${shownName(path)}` }),
      el(
        'thead',
        {},
        el(
          'tr',
          {},
          el('th', { scope: 'col', text: 'Target' }),
          el('th', { scope: 'col', text: 'Kind' }),
          el('th', { scope: 'col', text: 'State' }),
          el('th', { scope: 'col', class: 'num', text: 'Applied version' }),
        ),
      ),
      this.targetsBody,
    );
    this.targetsTable.hidden = true;
    this.li = el(
      'li',
      { class: 'upload', 'data-path': path, 'data-state': 'queued' },
      el(
        'div',
        { class: 'upload-head' },
        el(
          'h4',
          { id: titleId },
          `${shownName(file.name)} `,
          el('span', { class: 'muted', text: `→ ${shownName(path)}` }),
        ),
        el('span', { class: 'muted', text: formatBytes(file.size) }),
        this.cancel,
      ),
      this.progress,
      this.phase,
      this.error,
      this.targetsTable,
    );
  }

  private setState(state: State): void {
    this.li.dataset.state = state;
  }

  private onProgress(p: UploadProgress): void {
    this.recordTimes(p, performance.now());
    this.setState(p.phase);
    this.progress.value = p.bytesTotal === 0 ? 1 : p.bytesDone / p.bytesTotal;
    this.phase.textContent = this.phaseText(p);
  }

  /** When each phase started and how long hashing and uploading took, for the rates shown at the end. */
  private recordTimes(p: UploadProgress, now: number): void {
    if (p.phase !== this.lastPhase) {
      if (p.phase === 'hashing' || p.phase === 'uploading' || p.phase === 'verifying')
        this.times[p.phase] = now;
      if (this.lastPhase === 'uploading' && this.times.uploading !== undefined) {
        this.li.dataset.uploadMs = String(Math.round(now - this.times.uploading));
      }
      if (p.phase === 'uploading' && p.bytesDone > 0) this.li.dataset.resumedBytes = String(p.bytesDone);
      this.lastPhase = p.phase;
    }
    if (p.phase === 'hashing' && p.bytesDone === p.bytesTotal && this.times.hashing !== undefined) {
      this.li.dataset.hashMs ??= String(Math.round(now - this.times.hashing));
    }
  }

  private phaseText(p: UploadProgress): string {
    const pct = p.bytesTotal === 0 ? 100 : Math.floor((p.bytesDone / p.bytesTotal) * 100);
    const rate = p.bytesPerSecond > 0 ? ` · ${formatBytes(p.bytesPerSecond)}/s` : '';
    if (p.phase === 'hashing') return `Hashing… ${pct}%${rate}`;
    if (p.phase === 'verifying') return 'Verifying the stored bytes…';
    if (p.phase !== 'uploading') return PHASE_TEXT[p.phase];
    const resumed = this.li.dataset.resumedBytes
      ? ` (resumed: ${formatBytes(Number(this.li.dataset.resumedBytes))} already stored)`
      : '';
    return `Uploading… ${formatBytes(p.bytesDone)} of ${formatBytes(p.bytesTotal)}${rate}${resumed}`;
  }

  private rates(): string {
    const parts: string[] = [];
    const hashMs = Number(this.li.dataset.hashMs);
    const uploadMs = Number(this.li.dataset.uploadMs);
    if (hashMs > 0) parts.push(`hashed at ${formatBytes((this.file.size * 1000) / hashMs)}/s`);
    const sent = Number(this.li.dataset.bytesSent);
    if (uploadMs > 0 && sent > 0) parts.push(`uploaded at ${formatBytes((sent * 1000) / uploadMs)}/s`);
    return parts.length > 0 ? ` (${parts.join(', ')})` : '';
  }

  async run(api: MirrorApi): Promise<void> {
    if (this.controller.signal.aborted) {
      await this.fail(new DOMException('Cancelled', 'AbortError'));
      return;
    }
    let result: UploadResult;
    try {
      // The API refuses a name with "%", "?" or "#" only at the claim, after the whole file is
      // hashed: checked here, it fails at once, with the rule in words; so does a name the path
      // rules refuse (a bidirectional control, a zero-width space), as the CLI checks it.
      checkNewPathName(this.path);
      checkApiName(normalizePath(this.path));
      await this.refuseIfReplacing();
      // A file too large or of a type the mirror refuses fails before its hashing (minutes for a
      // multi-GiB file), with the claim's refusal; unreadable limits leave it to the claim.
      const limits = await deploymentLimits();
      result = await uploadFile(this.file, {
        client: api,
        path: this.path,
        ...(limits === undefined ? {} : { limits }),
        signal: this.controller.signal,
        onProgress: (p) => this.onProgress(p),
      });
    } catch (error) {
      await this.fail(error);
      return;
    }
    this.cancel.hidden = true;
    const d = this.li.dataset;
    d.uploadId = result.uploadId;
    d.partsSent = String(result.partsSent);
    d.partsSkipped = String(result.partsSkipped);
    d.bytesSent = String(result.bytesSent);
    if (result.version !== undefined) d.version = String(result.version);
    if (result.status === 'rejected') {
      this.setState('rejected');
      this.phase.textContent = 'Rejected: nothing was committed.';
      this.showError(`The stored bytes failed verification: ${result.reason ?? 'no reason given'}`);
      return;
    }
    if (result.deduplicated) {
      this.setState('deduplicated');
      this.phase.textContent = `Deduplicated: the content was already stored, nothing was uploaded. Committed as version ${result.version}.`;
    } else {
      this.setState('committed');
      const resumed =
        result.partsSkipped > 0
          ? ` Resumed: ${result.partsSkipped} part(s) were already stored, ${result.partsSent} sent.`
          : '';
      this.phase.textContent = `Committed as version ${result.version}.${resumed}${this.rates()}`;
    }
    // Its slot goes to the next file now: replication is followed apart (targetWatch).
    if (result.version !== undefined) {
      this.targetsTable.hidden = false;
      targetWatch.add(this, result.version);
    }
  }

  /**
   * Two files picked or dropped together can go to one path (`photo.jpg` from two folders: the
   * picker gives no folder). Both sent, the later would silently become the next version and the
   * head whichever committed last: so the later, with other content, fails before it is hashed,
   * as the Uppy plugin has it (docs/browser.md, "Two files that go to one path").
   */
  private async refuseIfReplacing(): Promise<void> {
    const earlier = this.earlier;
    if (earlier === undefined) return;
    // The other one failed or was cancelled: this one replaces nothing.
    const state = earlier.li.dataset.state;
    if (state === 'error' || state === 'cancelled' || state === 'rejected') return;
    if (earlier.file.type === this.file.type && (await sameBytes(earlier.file, this.file))) return;
    throw new Error(
      `another file, "${earlier.file.name}" (${earlier.file.size.toLocaleString('en-US')} bytes), ` +
        `also goes to "${this.path}", with other content: this one would replace it. Rename this ` +
        'file, or drop it again once the other is committed to make it the next version',
    );
  }

  private async fail(error: unknown): Promise<void> {
    const cancelled = error instanceof DOMException && error.name === 'AbortError';
    this.cancel.hidden = true;
    if (cancelled) {
      this.setState('cancelled');
      this.phase.textContent = 'Cancelled: the upload was abandoned.';
      return;
    }
    // The words first, then the state: whoever waits for the state reads the whole message.
    this.showError(await this.describeFailure(error));
    this.phase.textContent = worthAnotherTry(error) ? `Failed. ${CONTINUE_HINT}` : 'Failed.';
    this.setState('error');
  }

  private describeFailure(error: unknown): Promise<string> | string {
    if (error instanceof ApiError && error.code === 'unsupported_content_type') {
      return describeTypeRefusal(this.file, error);
    }
    return describeError(error);
  }

  private showError(message: string): void {
    // A message may quote the refused name (or a server's text): shown as the name is.
    this.error.textContent = shownName(message);
    this.error.hidden = false;
  }

  /** Reads the file's targets once and shows them; true once every target holds `version` (or a newer one). */
  async checkTargets(version: number): Promise<boolean> {
    try {
      const file = await client().getFile(this.path);
      if (!this.renderTargets(file.targets, version)) return false;
      this.li.dataset.allHold = 'true';
      this.phase.textContent = `${this.phase.textContent ?? ''} Every target holds it.`;
      return true;
    } catch (error) {
      this.showError(`Cannot read the targets' state: ${describeError(error)}`);
      return false;
    }
  }

  /** The page no longer reads this file's targets (web/page/target-watch.ts, FOLLOW_MS). */
  stopFollowing(): void {
    this.phase.textContent = `${this.phase.textContent ?? ''} Not every target held it after ${FOLLOW_MS / 60_000} minutes: no longer followed here (\`media-mirror status <path>\` shows where it stands).`;
  }

  private renderTargets(states: readonly TargetState[], version: number): boolean {
    const holding = states.map((t) => holds(t, version));
    const rows = states.map((t, i) =>
      el(
        'tr',
        { 'data-target': t.id, 'data-status': t.status, 'data-holds': String(holding[i]) },
        el('th', { scope: 'row', text: t.id }),
        el('td', { text: t.kind }),
        el('td', {}, badge(t, holding[i] === true)),
        el('td', { class: 'num', text: t.appliedVersion > 0 ? String(t.appliedVersion) : '–' }),
      ),
    );
    this.targetsBody.replaceChildren(...rows);
    return states.length > 0 && holding.every(Boolean);
  }
}

/** The target holds `version` (or a newer one), copied or verified. */
const holds = (t: TargetState, version: number) =>
  t.appliedVersion >= version && (t.status === 'copied' || t.status === 'verified');

function badge(t: TargetState, held: boolean): HTMLSpanElement {
  if (t.status === 'failed') return el('span', { class: 'badge bad', text: 'failed' });
  if (held) return el('span', { class: 'badge ok', text: `holds it (${t.status})` });
  return el('span', {
    class: 'badge warn',
    text: t.status === 'pending' ? 'pending' : `${t.status} (older)`,
  });
}

// ---- following committed files until every target holds them ----

const targetWatch = new TargetWatch<UploadItem>();

// ---- the queue of files ----

const queue: UploadItem[] = [];
let running = 0;

function pump(): void {
  while (running < FILE_CONCURRENCY && queue.length > 0) {
    const item = queue.shift();
    if (!item) break;
    running++;
    item
      .run(client())
      .catch(() => undefined)
      .finally(() => {
        running--;
        if (unended.get(storedPath(item.path)) === item) unended.delete(storedPath(item.path));
        recent.refresh();
        pump();
      });
  }
}

/**
 * The first upload to each path that has not ended yet: what a later file to that path would
 * replace. Keyed as the API stores a path, in NFC: `café.jpg` from a Mac's folder (NFD) and from a
 * download (NFC) are one path.
 */
const unended = new Map<string, UploadItem>();
const storedPath = (path: string): string => path.normalize('NFC');

/** A file to upload and where it sits under the prefix: its name, or its folder path in a folder drop. */
interface Picked {
  readonly file: File;
  readonly relativePath: string;
}

const asPicked = (file: File): Picked => ({ file, relativePath: file.name });

/**
 * The files of a drop, each folder walked with the paths under it (`album/sub/b.jpg`), as `sync
 * ./album media` stores them. `dataTransfer.files` lists a dropped folder as one unreadable file:
 * its files were never sent, and the folder failed with "cannot read the file". Entries must be
 * taken while the drop event runs: the browser empties the DataTransfer after it.
 */
async function droppedFiles(transfer: DataTransfer): Promise<{ picked: Picked[]; unreadable: string[] }> {
  const entries = [...transfer.items]
    .map((item) => (item.kind === 'file' ? item.webkitGetAsEntry() : null))
    .filter((entry): entry is FileSystemEntry => entry !== null);
  if (entries.length === 0) return { picked: [...transfer.files].map(asPicked), unreadable: [] };
  const found = { picked: [] as Picked[], unreadable: [] as string[] };
  for (const entry of entries) await collectEntry(entry, found);
  return found;
}

async function collectEntry(
  entry: FileSystemEntry,
  found: { picked: Picked[]; unreadable: string[] },
): Promise<void> {
  const relativePath = entry.fullPath.replace(/^\/+/, '');
  try {
    if (entry.isFile) {
      const file = await new Promise<File>((resolve, reject) =>
        (entry as FileSystemFileEntry).file(resolve, reject),
      );
      found.picked.push({ file, relativePath });
      return;
    }
    const reader = (entry as FileSystemDirectoryEntry).createReader();
    // Each read gives the next entries (at most 100 in Chromium), none once all are read.
    for (;;) {
      const batch = await new Promise<FileSystemEntry[]>((resolve, reject) =>
        reader.readEntries(resolve, reject),
      );
      if (batch.length === 0) return;
      for (const child of batch) await collectEntry(child, found);
    }
  } catch {
    found.unreadable.push(relativePath);
  }
}

function addFiles(files: Iterable<Picked>): void {
  const formError = $<HTMLParagraphElement>('#form-error');
  const token = $<HTMLInputElement>('#token').value.trim();
  if (token === '') {
    formError.textContent = 'Enter the API token first (npm start prints it).';
    formError.hidden = false;
    $<HTMLInputElement>('#token').focus();
    return;
  }
  formError.hidden = true;
  // A folder, as the CLI takes it (`sync ./uploads media` stores media/...): `media` + `a.txt` is media/a.txt.
  const prefix = folderPrefix($<HTMLInputElement>('#prefix').value);
  // Opt-in: the API refuses names with these three characters (docs/browser.md).
  const rename = $<HTMLInputElement>('#rename-reserved').checked;
  const list = $<HTMLOListElement>('#uploads');
  for (const { file, relativePath } of files) {
    const name = rename ? relativePath.replace(/[%?#]/g, '_') : relativePath;
    const path = `${prefix}${name}`;
    const earlier = unended.get(storedPath(path));
    const item = new UploadItem(file, path, earlier);
    if (earlier === undefined) unended.set(storedPath(path), item);
    list.prepend(item.li);
    queue.push(item);
  }
  $<HTMLParagraphElement>('#uploads-empty').hidden = list.children.length > 0;
  pump();
}

async function addDropped(transfer: DataTransfer): Promise<void> {
  const { picked, unreadable } = await droppedFiles(transfer);
  if (picked.length > 0) addFiles(picked);
  if (unreadable.length === 0) return;
  const formError = $<HTMLParagraphElement>('#form-error');
  formError.textContent = `Could not read ${unreadable.length} dropped item(s), not uploaded: ${unreadable.map(shownName).join(', ')}`;
  formError.hidden = false;
}

// ---- recent files (the change feed, followed with a cursor) ----

class Recent {
  private cursor: string | undefined;
  private readonly latest = new Map<string, Change>();
  private busy: Promise<void> | undefined;
  private again = false;

  /** Reads the feed to its end from the cursor (the first time: from the start). */
  refresh(): Promise<void> {
    if (this.busy) {
      this.again = true;
      return this.busy;
    }
    this.busy = this.read().finally(() => {
      this.busy = undefined;
      if (this.again) {
        this.again = false;
        void this.refresh();
      }
    });
    return this.busy;
  }

  private async read(): Promise<void> {
    const status = $<HTMLParagraphElement>('#recent-status');
    try {
      for (let pages = 0; pages < 1000; pages++) {
        const page = await client().listChanges({
          limit: 500,
          ...(this.cursor === undefined ? {} : { cursor: this.cursor }),
        });
        this.keep(page.changes);
        this.cursor = page.cursor;
        if (page.changes.length < 500) break;
      }
      status.textContent = this.latest.size === 0 ? 'No files yet.' : '';
      this.render();
    } catch (error) {
      // A cursor the feed no longer takes (the ledger restored from a backup): start over next time.
      if (error instanceof ApiError && error.code === 'invalid_cursor') {
        this.cursor = undefined;
        this.latest.clear();
      }
      status.textContent = `Cannot read the recent files: ${describeError(error)}`;
    }
  }

  /** Folds a page of changes in, keeping only what can be shown, so a long feed costs no memory. */
  private keep(changes: ChangesPage['changes']): void {
    for (const change of changes) {
      this.latest.delete(change.path);
      this.latest.set(change.path, change);
    }
    while (this.latest.size > RECENT_COUNT) {
      const oldest = this.latest.keys().next().value;
      if (oldest === undefined) break;
      this.latest.delete(oldest);
    }
  }

  private render(): void {
    const rows = [...this.latest.values()]
      .reverse()
      .map((c) =>
        el(
          'tr',
          { 'data-path': c.path, 'data-version': String(c.version) },
          el('td', {}, el('code', { text: c.path })),
          el('td', { class: 'num', text: String(c.version) }),
          el('td', { class: 'num', text: c.deleted ? 'deleted' : formatBytes(c.size) }),
          el(
            'td',
            {},
            el('time', { datetime: c.committedAt, text: new Date(c.committedAt).toLocaleString() }),
          ),
        ),
      );
    $<HTMLTableSectionElement>('#recent tbody').replaceChildren(...rows);
  }
}

const recent = new Recent();

// ---- wiring ----

async function main(): Promise<void> {
  const tokenInput = $<HTMLInputElement>('#token');
  await loadConfig(tokenInput);
  tokenInput.addEventListener('change', () => {
    sessionStorage.setItem(TOKEN_KEY, tokenInput.value.trim());
    targets = undefined;
    delete document.body.dataset.ready;
    void start();
  });

  const input = $<HTMLInputElement>('#files');
  input.addEventListener('change', () => {
    if (input.files && input.files.length > 0) addFiles([...input.files].map(asPicked));
    input.value = '';
  });

  const drop = $<HTMLDivElement>('#drop');
  // Files dropped anywhere else must not make the browser navigate away from the page.
  for (const type of ['dragover', 'drop'] as const) window.addEventListener(type, (e) => e.preventDefault());
  drop.addEventListener('dragenter', () => drop.classList.add('over'));
  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy';
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    if (e.dataTransfer) void addDropped(e.dataTransfer);
  });

  $<HTMLButtonElement>('#recent-refresh').addEventListener('click', () => void recent.refresh());
  await start();
  // Only with a token the API took: a refused one would fail every 5 s.
  setInterval(() => {
    if (document.body.dataset.ready === 'true') void recent.refresh();
  }, 5000);
}

async function start(): Promise<void> {
  const formError = $<HTMLParagraphElement>('#form-error');
  if ($<HTMLInputElement>('#token').value.trim() === '') {
    formError.textContent = 'Enter the API token (npm start prints it) to upload and see recent files.';
    formError.hidden = false;
    return;
  }
  try {
    await loadTargets();
    formError.hidden = true;
  } catch (error) {
    formError.textContent = describeError(error);
    formError.hidden = false;
    return;
  }
  document.body.dataset.ready = 'true';
  await recent.refresh();
}

main().catch((error: unknown) => {
  const formError = document.querySelector<HTMLParagraphElement>('#form-error');
  if (formError) {
    formError.textContent = `The page failed to start: ${describeError(error)}`;
    formError.hidden = false;
  }
});
