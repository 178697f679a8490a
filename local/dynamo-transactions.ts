/**
 * DynamoDB transactions for the local stack. dynalite has no `TransactWriteItems` or
 * `TransactGetItems`; the gate in front of it (local/gate.ts) answers them here, with
 * DynamoDB's semantics as documented in docs/local-gates.md:
 *
 * - all or nothing: every condition is checked first against the items as they are, and
 *   nothing is written unless all hold; a write that fails while applying rolls the
 *   already applied ones back to their old images;
 * - serializable with every other request: a transaction holds the lock exclusively, every
 *   other request through the gate holds it shared, so no request sees half a transaction
 *   and no write slips between a transaction's checks and its writes;
 * - a refused transaction is a `TransactionCanceledException` whose `CancellationReasons`
 *   has one entry per action (`None`, `ConditionalCheckFailed` with the old item when
 *   `ReturnValuesOnConditionCheckFailure` is `ALL_OLD`, `ValidationError`);
 * - `ClientRequestToken` makes a transaction idempotent for ten minutes: the same token
 *   with the same request answers as the first time without writing again; the same token
 *   with another request is an `IdempotentParameterMismatchException`.
 *
 * Conditions are evaluated by dynalite's own expression code (its request validations
 * parse the expression, `checkConditional` evaluates it), so a condition means here what it
 * means in a single `PutItem`. Writes are applied through dynalite one by one while the lock
 * is held; a crash of the whole process between two of them is not covered (the local
 * stack's data folder is then as a crashed DynamoDB table never is).
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

interface DynaliteValidation {
  readonly types: Record<string, unknown>;
  readonly custom?: (data: Record<string, unknown>, store?: unknown) => string | undefined;
}
interface DynaliteValidations {
  checkTypes(data: unknown, types: Record<string, unknown>): Record<string, unknown>;
  checkValidations(
    data: Record<string, unknown>,
    types: Record<string, unknown>,
    custom: DynaliteValidation['custom'],
    store?: unknown,
  ): void;
}
interface DynaliteDb {
  checkConditional(data: Record<string, unknown>, existing: unknown): DynaliteError | null | undefined;
  itemSize(item: Record<string, unknown>): number;
  toRangeStr(value: unknown): string;
}
interface DynaliteError extends Error {
  statusCode?: number;
  body?: { __type?: string; message?: string; Message?: string };
}

const validations = require('dynalite/validations') as DynaliteValidations;
const dynaliteDb = require('dynalite/db') as DynaliteDb;
const ACTION_VALIDATIONS = {
  Put: require('dynalite/validations/putItem') as DynaliteValidation,
  Update: require('dynalite/validations/updateItem') as DynaliteValidation,
  Delete: require('dynalite/validations/deleteItem') as DynaliteValidation,
  // A condition check is validated as a delete of its key: the same members, nothing written.
  ConditionCheck: require('dynalite/validations/deleteItem') as DynaliteValidation,
} as const;

/**
 * dynalite 4.0.0's PutItem, UpdateItem and DeleteItem drop ReturnValuesOnConditionCheckFailure
 * unread, where DynamoDB checks it against its enum like every other member. Added to their
 * validations (the objects dynalite reads on each request), a bad value is the ValidationException
 * DynamoDB answers, in its words: "1 validation error detected: Value 'X' at
 * 'returnValuesOnConditionCheckFailure' failed to satisfy constraint: Member must satisfy enum
 * value set: [ALL_OLD, NONE]". Call it in the thread that loads dynalite, before it serves.
 */
export function validateReturnValuesOnConditionCheckFailure(): void {
  for (const { types } of [ACTION_VALIDATIONS.Put, ACTION_VALIDATIONS.Update, ACTION_VALIDATIONS.Delete]) {
    types.ReturnValuesOnConditionCheckFailure ??= { type: 'String', enum: ['ALL_OLD', 'NONE'] };
  }
}

/** What dynalite's validations read of its store: the item size limit (DynamoDB's 400 KB, dynalite's default). */
const VALIDATION_STORE = { options: { maxItemSize: 400 * 1024 } };

/** DynamoDB's limits on one transaction. */
export const MAX_TRANSACTION_ITEMS = 100;
export const MAX_TRANSACTION_BYTES = 4 * 1024 * 1024;
export const IDEMPOTENCY_WINDOW_MS = 10 * 60 * 1000;

const SINGLE_WRITES = new Set(['PutItem', 'UpdateItem', 'DeleteItem']);

type AttributeMap = Record<string, unknown>;
type ActionKind = keyof typeof ACTION_VALIDATIONS;

/** One request to the emulator behind the gate: its answer's status and parsed JSON body. */
export type UpstreamCall = (operation: string, payload: object) => Promise<{ status: number; body: AnyJson }>;
// biome-ignore lint/suspicious/noExplicitAny: DynamoDB's JSON answers are read field by field.
type AnyJson = any;

export interface TransactionAnswer {
  readonly status: number;
  readonly body: object;
}

/**
 * A readers-writer lock that grants in arrival order: a writer waits for the readers ahead of
 * it, and readers that arrive after a waiting writer wait for it. Written here because the
 * packages at hand do not fit: `@rocicorp/lock` needs Node 22 (`Promise.withResolvers`), and
 * `async-rwlock` lets a steady stream of readers starve a writer, which under the local
 * stack's constant polling would starve every transaction.
 */
export class FifoReadWriteLock {
  #readers = 0;
  #writing = false;
  readonly #queue: { readonly write: boolean; readonly grant: () => void }[] = [];

  read(): Promise<() => void> {
    return this.#acquire(false);
  }

  write(): Promise<() => void> {
    return this.#acquire(true);
  }

  async withRead<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.read();
    try {
      return await fn();
    } finally {
      release();
    }
  }

  async withWrite<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.write();
    try {
      return await fn();
    } finally {
      release();
    }
  }

  #acquire(write: boolean): Promise<() => void> {
    return new Promise((resolve) => {
      this.#queue.push({ write, grant: () => resolve(this.#releaser(write)) });
      this.#drain();
    });
  }

  #releaser(write: boolean): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (write) this.#writing = false;
      else this.#readers -= 1;
      this.#drain();
    };
  }

  #drain(): void {
    while (this.#queue.length > 0 && !this.#writing) {
      const next = this.#queue[0] as { readonly write: boolean; readonly grant: () => void };
      if (next.write && this.#readers > 0) return;
      this.#queue.shift();
      if (next.write) this.#writing = true;
      else this.#readers += 1;
      next.grant();
    }
  }
}

interface PlannedAction {
  readonly kind: ActionKind;
  readonly table: string;
  readonly key: AttributeMap;
  /** The request dynalite would take for this action alone, as the client sent it. */
  readonly request: Record<string, unknown>;
  /** The same, after dynalite's validations parsed its expressions. */
  readonly parsed: Record<string, unknown>;
  readonly returnOldOnFailure: boolean;
}

interface Applied {
  readonly action: PlannedAction;
  readonly oldItem: AttributeMap | undefined;
}

class TransactionRefused extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
    readonly extra: object = {},
  ) {
    super(message);
  }

  answer(): TransactionAnswer {
    return { status: this.status, body: { __type: this.type, message: this.message, ...this.extra } };
  }
}

const validationError = (message: string) =>
  new TransactionRefused(400, 'com.amazon.coral.validate#ValidationException', message);

/** What a DynamoDB error body says, whichever spelling of `message` it uses. */
function errorMessage(body: AnyJson): string {
  return String(body?.message ?? body?.Message ?? 'request failed');
}

export interface DynamoTransactionsOptions {
  readonly now?: () => number;
}

/** The transaction layer one gate holds: its lock, its table key schemas and its idempotency tokens. */
export class DynamoTransactions {
  readonly lock = new FifoReadWriteLock();
  readonly #now: () => number;
  readonly #keySchemas = new Map<string, readonly string[]>();
  readonly #tokens = new Map<string, { fingerprint: string; expires: number; answer: TransactionAnswer }>();

  constructor(options: DynamoTransactionsOptions = {}) {
    this.#now = options.now ?? Date.now;
  }

  /** Whether the gate answers this operation here rather than forwarding it. */
  static handles(operation: string): boolean {
    return operation === 'TransactWriteItems' || operation === 'TransactGetItems';
  }

  /** A single write whose refusal must carry the item its condition failed on (`oldItemOnFailure`). */
  static returnsOldOnFailure(operation: string, payload: AnyJson): boolean {
    return SINGLE_WRITES.has(operation) && payload?.ReturnValuesOnConditionCheckFailure === 'ALL_OLD';
  }

  /**
   * dynalite refuses a single write's condition without the item, which DynamoDB returns when
   * asked ALL_OLD: the answer's body with that item, or undefined to send the answer unchanged.
   * The caller holds the exclusive lock from before the write, so the item read here is the one
   * the condition failed on, not a later write's.
   */
  async oldItemOnFailure(
    operation: string,
    payload: AnyJson,
    answer: { status: number; body: AnyJson },
    upstream: UpstreamCall,
  ): Promise<object | undefined> {
    if (answer.status !== 400 || !String(answer.body?.__type).endsWith('#ConditionalCheckFailedException')) {
      return undefined;
    }
    try {
      const table = String(payload.TableName);
      const key =
        operation === 'PutItem'
          ? pick(payload.Item as AttributeMap, await this.#keyAttributes(table, upstream))
          : (payload.Key as AttributeMap);
      const read = await upstream('GetItem', { TableName: table, Key: key, ConsistentRead: true });
      if (read.status !== 200 || read.body?.Item === undefined) return undefined;
      return { ...answer.body, Item: read.body.Item };
    } catch (err) {
      if (err instanceof TransactionRefused) return undefined;
      throw err;
    }
  }

  async execute(operation: string, payload: AnyJson, upstream: UpstreamCall): Promise<TransactionAnswer> {
    try {
      return await this.lock.withWrite(() =>
        operation === 'TransactWriteItems'
          ? this.#transactWrite(payload, upstream)
          : this.#transactGet(payload, upstream),
      );
    } catch (err) {
      if (err instanceof TransactionRefused) return err.answer();
      throw err;
    }
  }

  // ------------------------------------------------------------ TransactWriteItems

  async #transactWrite(payload: AnyJson, upstream: UpstreamCall): Promise<TransactionAnswer> {
    const items = checkItemList(payload?.TransactItems, 'transactItems');
    const token = checkToken(payload?.ClientRequestToken);
    // The whole request but its token: DynamoDB refuses the token with any other parameter changed.
    const { ClientRequestToken: _token, ...request } = payload as Record<string, unknown>;
    const fingerprint = createHash('sha256').update(JSON.stringify(request)).digest('hex');
    const replay = token === undefined ? undefined : this.#replay(token, fingerprint);
    if (replay !== undefined) return replay;

    const actions = await this.#plan(items, upstream);
    const oldItems = await Promise.all(actions.map((action) => this.#read(action, upstream)));
    const reasons = actions.map((action, i) => conditionReason(action, oldItems[i]));
    if (reasons.some((reason) => reason.Code !== 'None')) throw cancelled(reasons);
    await this.#apply(actions, oldItems, upstream);

    const answer: TransactionAnswer = { status: 200, body: {} };
    if (token !== undefined) {
      this.#tokens.set(token, { fingerprint, expires: this.#now() + IDEMPOTENCY_WINDOW_MS, answer });
    }
    return answer;
  }

  #replay(token: string, fingerprint: string): TransactionAnswer | undefined {
    const now = this.#now();
    for (const [key, entry] of this.#tokens) if (entry.expires <= now) this.#tokens.delete(key);
    const seen = this.#tokens.get(token);
    if (seen === undefined) return undefined;
    if (seen.fingerprint !== fingerprint) {
      throw new TransactionRefused(
        400,
        'com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException',
        'The request uses the same client token as a previous, but non-identical request.',
      );
    }
    return seen.answer;
  }

  async #plan(items: readonly AnyJson[], upstream: UpstreamCall): Promise<PlannedAction[]> {
    const actions: PlannedAction[] = [];
    const targets = new Set<string>();
    for (const [index, item] of items.entries()) {
      const action = await this.#planOne(item, index, upstream);
      const target = `${action.table}\n${canonicalKey(action.key)}`;
      if (targets.has(target)) {
        throw validationError('Transaction request cannot include multiple operations on one item');
      }
      targets.add(target);
      actions.push(action);
    }
    // Counted as a lower bound of DynamoDB's own measure (a Put's item, the other actions' keys),
    // so that nothing AWS takes is refused here.
    const size = actions.reduce(
      (sum, action) =>
        sum + dynaliteDb.itemSize(action.kind === 'Put' ? (action.request.Item as AttributeMap) : action.key),
      0,
    );
    if (size > MAX_TRANSACTION_BYTES) {
      throw validationError(
        `Transaction request size has exceeded the maximum allowed size: the items total ${size} bytes, more than ${MAX_TRANSACTION_BYTES}`,
      );
    }
    return actions;
  }

  async #planOne(item: AnyJson, index: number, upstream: UpstreamCall): Promise<PlannedAction> {
    const kinds = (Object.keys(ACTION_VALIDATIONS) as ActionKind[]).filter((kind) => item?.[kind] != null);
    const kind = kinds[0];
    if (kinds.length !== 1 || kind === undefined) {
      throw validationError('TransactItems can only contain one of Check, Put, Update or Delete');
    }
    const { ReturnValuesOnConditionCheckFailure: onFailure, ...request } = item[kind] as Record<
      string,
      unknown
    >;
    if (kind === 'ConditionCheck' && typeof request.ConditionExpression !== 'string') {
      throw validationError('ConditionCheck requires a ConditionExpression');
    }
    // Required in a transaction's Update; dynalite's UpdateItem, without one, writes the bare key.
    if (kind === 'Update' && typeof request.UpdateExpression !== 'string') {
      throw validationError(
        `1 validation error detected: Value null at 'transactItems.${index + 1}.member.update.updateExpression' failed to satisfy constraint: Member must not be null`,
      );
    }
    if (onFailure !== undefined && onFailure !== 'ALL_OLD' && onFailure !== 'NONE') {
      throw validationError(
        `Value '${String(onFailure)}' at 'returnValuesOnConditionCheckFailure' failed to satisfy constraint: Member must satisfy enum value set: [ALL_OLD, NONE]`,
      );
    }
    const parsed = parseLikeDynalite(kind, request);
    const table = String(request.TableName);
    const key =
      kind === 'Put'
        ? pick(request.Item as AttributeMap, await this.#keyAttributes(table, upstream))
        : (request.Key as AttributeMap);
    return { kind, table, key, request, parsed, returnOldOnFailure: onFailure === 'ALL_OLD' };
  }

  /**
   * A table deleted, or created, under a name may come back with another key: a key schema kept
   * from before would read and compare items by attributes that are no longer their key.
   */
  forgetTable(table: unknown): void {
    if (typeof table === 'string') this.#keySchemas.delete(table);
  }

  async #keyAttributes(table: string, upstream: UpstreamCall): Promise<readonly string[]> {
    const known = this.#keySchemas.get(table);
    if (known !== undefined) return known;
    const described = await upstream('DescribeTable', { TableName: table });
    if (described.status !== 200) {
      throw new TransactionRefused(
        described.status,
        String(described.body?.__type),
        errorMessage(described.body),
      );
    }
    const names = (described.body.Table.KeySchema as { AttributeName: string }[]).map((k) => k.AttributeName);
    this.#keySchemas.set(table, names);
    return names;
  }

  async #read(action: PlannedAction, upstream: UpstreamCall): Promise<AttributeMap | undefined> {
    const answer = await upstream('GetItem', {
      TableName: action.table,
      Key: action.key,
      ConsistentRead: true,
    });
    if (answer.status !== 200) {
      throw new TransactionRefused(answer.status, String(answer.body?.__type), errorMessage(answer.body));
    }
    return answer.body.Item as AttributeMap | undefined;
  }

  /**
   * Applies the writes, all at once (they touch distinct items, under the exclusive lock: no order
   * between them is observable); on a failure, puts back what was applied and cancels.
   */
  async #apply(
    actions: readonly PlannedAction[],
    oldItems: readonly (AttributeMap | undefined)[],
    upstream: UpstreamCall,
  ): Promise<void> {
    const writes = actions.map((action) =>
      // The action keeps its own condition: it held a moment ago under this same exclusive
      // lock, so it holds now, and dynalite checks it once more for free.
      action.kind === 'ConditionCheck' ? undefined : upstream(`${action.kind}Item`, action.request),
    );
    const answers = await Promise.all(writes);
    const failed = answers.findIndex((answer) => answer !== undefined && answer.status !== 200);
    if (failed === -1) return;
    const applied = actions.flatMap((action, i) =>
      answers[i]?.status === 200 ? [{ action, oldItem: oldItems[i] }] : [],
    );
    await this.#rollBack(applied, upstream);
    const reasons = actions.map((_, j) =>
      j === failed ? { Code: 'ValidationError', Message: errorMessage(answers[j]?.body) } : { Code: 'None' },
    );
    throw cancelled(reasons);
  }

  async #rollBack(applied: readonly Applied[], upstream: UpstreamCall): Promise<void> {
    for (const { action, oldItem } of [...applied].reverse()) {
      const answer =
        oldItem === undefined
          ? await upstream('DeleteItem', { TableName: action.table, Key: action.key })
          : await upstream('PutItem', { TableName: action.table, Item: oldItem });
      if (answer.status !== 200) {
        throw new Error(`rolling back a transaction failed on ${action.table}: ${errorMessage(answer.body)}`);
      }
    }
  }

  // ------------------------------------------------------------ TransactGetItems

  async #transactGet(payload: AnyJson, upstream: UpstreamCall): Promise<TransactionAnswer> {
    const items = checkItemList(payload?.TransactItems, 'transactItems');
    const gets = items.map((item) => {
      if (item?.Get == null || Object.keys(item).length !== 1) {
        throw validationError('TransactGetItems can only contain Get actions');
      }
      return item.Get as Record<string, unknown>;
    });
    const targets = new Set(
      gets.map((get) => `${String(get.TableName)}\n${canonicalKey(get.Key as AttributeMap)}`),
    );
    if (targets.size !== gets.length) {
      throw validationError('Transaction request cannot include multiple operations on one item');
    }
    const responses = [];
    for (const get of gets) {
      const answer = await upstream('GetItem', { ...get, ConsistentRead: true });
      if (answer.status !== 200) {
        throw new TransactionRefused(answer.status, String(answer.body?.__type), errorMessage(answer.body));
      }
      responses.push(answer.body.Item === undefined ? {} : { Item: answer.body.Item });
    }
    return { status: 200, body: { Responses: responses } };
  }
}

function checkItemList(value: unknown, member: string): AnyJson[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw validationError(
      `1 validation error detected: Value at '${member}' failed to satisfy constraint: Member must have length greater than or equal to 1`,
    );
  }
  if (value.length > MAX_TRANSACTION_ITEMS) {
    throw validationError(
      `1 validation error detected: Value at '${member}' failed to satisfy constraint: Member must have length less than or equal to ${MAX_TRANSACTION_ITEMS}`,
    );
  }
  return value;
}

function checkToken(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value.length < 1 || value.length > 36) {
    throw validationError(
      "1 validation error detected: Value at 'clientRequestToken' failed to satisfy constraint: Member must have length between 1 and 36",
    );
  }
  return value;
}

/** Runs dynalite's validations of the single-item operation, which also parse its expressions. */
function parseLikeDynalite(kind: ActionKind, request: Record<string, unknown>): Record<string, unknown> {
  const validation = ACTION_VALIDATIONS[kind];
  try {
    const data = validations.checkTypes(structuredClone(request), validation.types);
    validations.checkValidations(data, validation.types, validation.custom, VALIDATION_STORE);
    return data;
  } catch (err) {
    const body = (err as DynaliteError).body;
    if (body === undefined) throw err;
    throw new TransactionRefused(
      (err as DynaliteError).statusCode ?? 400,
      body.__type ?? 'com.amazon.coral.validate#ValidationException',
      errorMessage(body),
    );
  }
}

function conditionReason(action: PlannedAction, oldItem: AttributeMap | undefined) {
  const failed = dynaliteDb.checkConditional(action.parsed, oldItem);
  if (failed == null) return { Code: 'None' } as const;
  return {
    Code: 'ConditionalCheckFailed',
    Message: 'The conditional request failed',
    ...(action.returnOldOnFailure && oldItem !== undefined ? { Item: oldItem } : {}),
  } as const;
}

function cancelled(reasons: readonly { readonly Code: string }[]): TransactionRefused {
  return new TransactionRefused(
    400,
    'com.amazonaws.dynamodb.v20120810#TransactionCanceledException',
    `Transaction cancelled, please refer cancellation reasons for specific reasons [${reasons.map((r) => r.Code).join(', ')}]`,
    { CancellationReasons: reasons },
  );
}

function pick(item: AttributeMap, names: readonly string[]): AttributeMap {
  return Object.fromEntries(names.map((name) => [name, item[name]]));
}

/**
 * One spelling per item: DynamoDB normalizes numbers, so `1`, `1.0` and `1e0` name the same item
 * (dynalite's sortable form of a key value is normalized the same way).
 */
function canonicalKey(key: AttributeMap | undefined): string {
  const value = (attribute: unknown) => {
    try {
      const [type] = Object.keys(attribute as object);
      return [type, dynaliteDb.toRangeStr(attribute)];
    } catch {
      return attribute;
    }
  };
  return JSON.stringify(
    Object.entries(key ?? {})
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, attribute]) => [name, value(attribute)]),
  );
}
