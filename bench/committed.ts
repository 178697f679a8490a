/**
 * Waiting until uploads are committed, for every bench and chaos waiter. The local stack's /metrics
 * counter (mirror_versions_committed_total) is cheap to poll, but a commit whose count never reaches
 * it (an ingest invocation killed before it published: docs/deploy.md, Metrics) would stall a waiter
 * on it for good. So when the counter stops moving short of its target, the uploads are asked of the
 * API (`GET /v1/uploads/{id}`, docs/api.md), and what the API says committed counts.
 */
import { sleep } from '../common/retry.ts';

/** What the local stack's /metrics says the ingest has committed. */
export async function committedTotal(stack: {
  readonly endpoints: { readonly metrics: string };
}): Promise<number> {
  const text = await (await fetch(stack.endpoints.metrics)).text();
  return Number(/^mirror_versions_committed_total (\d+)/m.exec(text)?.[1] ?? 0);
}

/** An upload as `GET /v1/uploads/{id}` shows it; `unknown` when the API did not answer. */
export interface UploadState {
  readonly status: 'pending' | 'committed' | 'rejected' | 'expired' | 'unknown';
  readonly reason?: string | undefined;
}

/** The two public interfaces a waiter reads: the counter, and the API's upload status. */
export interface CommitSources {
  counter(): Promise<number>;
  upload(uploadId: string): Promise<UploadState>;
}

/** A local stack's /metrics and API (its token), as CommitSources. */
export function stackSources(stack: {
  readonly endpoints: { readonly metrics: string; readonly api: string; readonly token: string };
}): CommitSources {
  return {
    counter: () => committedTotal(stack),
    async upload(uploadId) {
      try {
        const response = await fetch(`${stack.endpoints.api}/v1/uploads/${encodeURIComponent(uploadId)}`, {
          headers: { authorization: `Bearer ${stack.endpoints.token}` },
        });
        if (!response.ok) {
          await response.arrayBuffer();
          return { status: 'unknown', reason: `HTTP ${response.status}` };
        }
        const body = (await response.json()) as { status?: unknown; reason?: unknown };
        const status = String(body.status);
        const known = ['pending', 'committed', 'rejected', 'expired'].includes(status);
        return {
          status: known ? (status as UploadState['status']) : 'unknown',
          reason: typeof body.reason === 'string' ? body.reason : known ? undefined : `status ${status}`,
        };
      } catch (error) {
        // A stack under faults (the chaos run) may drop the call: asked again at the next check.
        return { status: 'unknown', reason: (error as Error).message };
      }
    },
  };
}

export interface CommitWaitOptions {
  /** The uploads waited for. */
  readonly uploadIds: readonly string[];
  /** The counter before their bytes were sent. */
  readonly counterBefore: number;
  /** How far the counter must move. @default uploadIds.length */
  readonly target?: number;
  readonly timeoutMs: number;
  /** How long the counter may stand still short of its target before the API is asked. @default 5,000 */
  readonly stallMs?: number;
  /** @default 50 */
  readonly pollMs?: number;
  /** Uploads asked of the API at once. @default 8 */
  readonly concurrency?: number;
}

export interface CommitWait {
  /** Every upload is committed (by the counter, or by the API). */
  readonly done: boolean;
  /** Uploads known committed: the counter's rise, or the API's count when it says more. */
  readonly committed: number;
  /** How far the counter rose: below `committed` by the commits whose count never reached it. */
  readonly counted: number;
  readonly target: number;
  /** Whether the API's statuses were needed to reach the target (the counter fell short). */
  readonly confirmedByApi: boolean;
  /** GET /v1/uploads/{id} calls made (each costs the API's own ledger reads). */
  readonly apiCalls: number;
  /** At the last check: uploads still pending (or whose status the API did not give). */
  readonly pending: readonly string[];
  /** At the last check: uploads that ended otherwise (rejected, expired): they will never commit. */
  readonly ended: readonly { readonly uploadId: string; readonly status: string; readonly reason?: string }[];
  readonly seconds: number;
}

/** What the API said of the uploads at the last check; committed stays committed, and is not asked again. */
class UploadStatuses {
  readonly committed = new Set<string>();
  pending: string[] = [];
  ended: { uploadId: string; status: string; reason?: string }[] = [];
  calls = 0;

  constructor(
    private readonly sources: CommitSources,
    private readonly uploadIds: readonly string[],
    private readonly concurrency: number,
  ) {}

  get allCommitted(): boolean {
    return this.committed.size >= this.uploadIds.length;
  }

  async check(): Promise<void> {
    const open = this.uploadIds.filter((id) => !this.committed.has(id));
    const states = await mapLimited(open, this.concurrency, async (id) => {
      this.calls++;
      return [id, await this.sources.upload(id)] as const;
    });
    this.pending = [];
    this.ended = [];
    for (const [id, state] of states) {
      if (state.status === 'committed') this.committed.add(id);
      else if (state.status === 'pending' || state.status === 'unknown') this.pending.push(id);
      else
        this.ended.push({
          uploadId: id,
          status: state.status,
          ...(state.reason ? { reason: state.reason } : {}),
        });
    }
  }
}

/**
 * Polls the counter until it has risen by `target`; when it stands still short of it for `stallMs`,
 * asks the API about every upload not yet known committed, and is done once the API says all are.
 * Returns at the deadline (after a last check) or when no upload is left pending, done or not.
 */
export async function watchCommits(sources: CommitSources, options: CommitWaitOptions): Promise<CommitWait> {
  const { target, stallMs, pollMs, concurrency } = withDefaults(options);
  const started = Date.now();
  const deadline = started + options.timeoutMs;
  const api = new UploadStatuses(sources, options.uploadIds, concurrency);
  let counted = 0;
  let moved = started;
  const result = (done: boolean): CommitWait => ({
    done,
    committed: Math.max(counted, api.committed.size),
    counted,
    target,
    confirmedByApi: api.calls > 0,
    apiCalls: api.calls,
    pending: api.pending,
    ended: api.ended,
    seconds: (Date.now() - started) / 1000,
  });

  for (;;) {
    const now = (await sources.counter()) - options.counterBefore;
    if (now !== counted) moved = Date.now();
    counted = now;
    if (counted >= target) return result(true);
    const late = Date.now() > deadline;
    if (late || Date.now() - moved >= stallMs) {
      await api.check();
      if (api.allCommitted || late || api.pending.length === 0) return result(api.allCommitted);
      // The next check only after another quiet spell: the API's reads are not free.
      moved = Date.now();
    }
    await sleep(pollMs);
  }
}

function withDefaults(options: CommitWaitOptions) {
  return {
    target: options.target ?? options.uploadIds.length,
    stallMs: options.stallMs ?? 5_000,
    pollMs: options.pollMs ?? 50,
    concurrency: options.concurrency ?? 8,
  };
}

/** Waits as watchCommits does; throws when the uploads are not all committed, naming those that are not. */
export async function waitCommitted(sources: CommitSources, options: CommitWaitOptions): Promise<CommitWait> {
  const wait = await watchCommits(sources, options);
  if (!wait.done) throw new Error(describeShortfall(wait));
  return wait;
}

/** "182 of 200 committed after 300 s: 15 still pending (…), 3 rejected (…)", with a few ids. */
export function describeShortfall(wait: CommitWait): string {
  const few = (ids: readonly string[]) => `${ids.slice(0, 5).join(', ')}${ids.length > 5 ? ', …' : ''}`;
  const parts = [
    `${wait.pending.length} still pending${wait.pending.length ? ` (${few(wait.pending)})` : ''}`,
  ];
  for (const status of [...new Set(wait.ended.map((e) => e.status))]) {
    const these = wait.ended.filter((e) => e.status === status);
    const first = these[0]?.reason === undefined ? '' : `; first: ${these[0].reason}`;
    parts.push(`${these.length} ${status} (${few(these.map((e) => e.uploadId))}${first})`);
  }
  return (
    `only ${wait.committed} of ${wait.target} committed after ${wait.seconds.toFixed(0)} s ` +
    `(the counter and the API agree): ${parts.join(', ')}`
  );
}

async function mapLimited<T, R>(items: readonly T[], n: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i] as T);
      }
    }),
  );
  return out;
}
