/**
 * Coalesces single-message SQS calls made close together into SQS's batch calls
 * (`SendMessageBatch`, `DeleteMessageBatch`): each caller still gets a promise of its own, which
 * settles by ITS entry's outcome. An entry SQS lists under `Failed` rejects its caller with a
 * `SqsBatchEntryError` carrying SQS's code; a request that fails whole rejects every caller in it.
 *
 * Per queue, one request is in flight at a time. The first call on an idle queue is sent on the
 * next turn of the event loop (so calls made in the same turn share it); calls made while a
 * request is in flight wait for it and go together in the next one, at most 10 entries and
 * 256 KiB per request, in the order they were made. An idle stack pays no added latency, a busy
 * one sends fewer, fuller requests: a Nagle-like group commit. One request at a time per queue
 * also keeps the order of a FIFO message group: a later message of a group is never sent before
 * an earlier one's request has been answered, and inside one request SQS enqueues a group's
 * entries in their order.
 *
 * Written here rather than taken from a library: `dataloader` batches a tick's calls with a
 * count limit, but has no byte limit, sends a tick's chunks side by side (a message group could
 * overtake itself across chunks) and caches by key; `sqs-producer` batches one caller's array,
 * not many callers' single messages. Both would also be one more dependency in every bundle.
 */

/** SQS's limits for one batch request. */
export const SQS_BATCH_MAX_ENTRIES = 10;
export const SQS_BATCH_MAX_BYTES = 256 * 1024;

/** What SQS answers a batch request with (`SendMessageBatchResult`, `DeleteMessageBatchResult`). */
export interface SqsBatchResult {
  readonly Successful?: readonly { readonly Id?: string | undefined }[] | undefined;
  readonly Failed?:
    | readonly {
        readonly Id?: string | undefined;
        readonly Code?: string | undefined;
        readonly Message?: string | undefined;
        readonly SenderFault?: boolean | undefined;
      }[]
    | undefined;
}

/** One entry of a batch SQS refused (a `BatchResultErrorEntry`). */
export class SqsBatchEntryError extends Error {
  override readonly name = 'SqsBatchEntryError';
  /** As the SDK marks its own errors: the caller's fault, or SQS's (worth retrying). */
  readonly $fault: 'client' | 'server';
  constructor(
    /** SQS's error code for the entry, e.g. `InvalidParameterValue`, `ReceiptHandleIsInvalid`. */
    readonly code: string,
    message: string,
    readonly senderFault: boolean,
  ) {
    super(`${code}: ${message}`);
    this.$fault = senderFault ? 'client' : 'server';
  }
}

interface Waiting<E> {
  readonly entry: E;
  readonly bytes: number;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

interface QueueState<E> {
  readonly waiting: Waiting<E>[];
  inFlight: boolean;
  scheduled: boolean;
}

export interface SqsBatcherOptions<E> {
  /** The bytes an entry counts against the request's 256 KiB (a send: its body and attributes). */
  readonly bytesOf?: (entry: E) => number;
}

export class SqsBatcher<E extends object> {
  private readonly queues = new Map<string, QueueState<E>>();

  constructor(
    /** Sends one batch request: `entries` carry ids unique within it. */
    private readonly request: (queueUrl: string, entries: (E & { Id: string })[]) => Promise<SqsBatchResult>,
    private readonly options: SqsBatcherOptions<E> = {},
  ) {}

  /** Resolves once SQS accepted this entry; rejects by its own outcome or its request's. */
  add(queueUrl: string, entry: E): Promise<void> {
    const bytes = this.options.bytesOf?.(entry) ?? 0;
    return new Promise<void>((resolve, reject) => {
      let state = this.queues.get(queueUrl);
      if (!state) {
        state = { waiting: [], inFlight: false, scheduled: false };
        this.queues.set(queueUrl, state);
      }
      state.waiting.push({ entry, bytes, resolve, reject });
      if (state.inFlight || state.scheduled) return;
      state.scheduled = true;
      const scheduled = state;
      setImmediate(() => {
        scheduled.scheduled = false;
        this.pump(queueUrl, scheduled);
      });
    });
  }

  private pump(queueUrl: string, state: QueueState<E>): void {
    if (state.inFlight) return;
    const chunk = takeChunk(state.waiting);
    if (chunk.length === 0) {
      this.queues.delete(queueUrl);
      return;
    }
    state.inFlight = true;
    void this.dispatch(queueUrl, chunk).finally(() => {
      state.inFlight = false;
      this.pump(queueUrl, state);
    });
  }

  private async dispatch(queueUrl: string, chunk: Waiting<E>[]): Promise<void> {
    let result: SqsBatchResult;
    try {
      result = await this.request(
        queueUrl,
        chunk.map((w, i) => ({ ...w.entry, Id: String(i) })),
      );
    } catch (error) {
      for (const w of chunk) w.reject(error);
      return;
    }
    const failed = new Map((result.Failed ?? []).map((f) => [f.Id, f]));
    const succeeded = new Set((result.Successful ?? []).map((s) => s.Id));
    chunk.forEach((w, i) => {
      const id = String(i);
      const failure = failed.get(id);
      if (failure)
        w.reject(
          new SqsBatchEntryError(
            failure.Code ?? 'Unknown',
            failure.Message ?? 'the entry failed',
            failure.SenderFault ?? false,
          ),
        );
      else if (succeeded.has(id)) w.resolve();
      // Neither listed: SQS said nothing of it, so it cannot be counted as sent.
      else w.reject(new SqsBatchEntryError('MissingFromResult', `entry ${id} is in neither list`, false));
    });
  }
}

/** The first entries waiting, in order, that fit one request: at most 10 and 256 KiB (at least one). */
function takeChunk<E>(waiting: Waiting<E>[]): Waiting<E>[] {
  let count = 0;
  let bytes = 0;
  while (count < waiting.length && count < SQS_BATCH_MAX_ENTRIES) {
    const next = waiting[count] as Waiting<E>;
    if (count > 0 && bytes + next.bytes > SQS_BATCH_MAX_BYTES) break;
    bytes += next.bytes;
    count++;
  }
  return waiting.splice(0, count);
}
