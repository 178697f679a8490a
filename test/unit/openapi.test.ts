/**
 * docs/openapi.json against the code it documents, without network or emulators.
 *
 * The document is JSON (valid YAML 1.2 too) because no YAML parser is a dependency.
 * It is written by hand (prose, examples) and checked against contracts/api.ts, the API's
 * one statement: the same routes, statuses, request fields and answer fields, and every
 * example an answer the contract accepts.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { errorCodeSchema, type RouteContract, routeList } from '../../contracts/api.ts';
import { normalizePath } from '../../contracts/paths.ts';
import { quietTelemetry } from '../../functions/adapters/powertools.ts';
import { makeS3Client, S3BlobStore } from '../../functions/adapters/s3.ts';
import { systemClock } from '../../functions/adapters/wiring.ts';
import type { Ledger } from '../../functions/core/ports.ts';
import { type ApiDeps, createApiHandler } from '../../functions/handlers/api-handler.ts';
import { httpEvent, lambdaContext } from '../support/api-events.ts';
import { RecordingMetrics } from '../support/domain.ts';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Obj = { [key: string]: Json };

const read = (relative: string) => readFileSync(new URL(`../../${relative}`, import.meta.url), 'utf8');

const doc = JSON.parse(read('docs/openapi.json')) as Obj;

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
const ERROR_REF = '#/components/schemas/Error';

const isObj = (value: unknown): value is Obj =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

function obj(value: Json | undefined, what: string): Obj {
  if (!isObj(value)) throw new Error(`${what} is not an object`);
  return value;
}

/** Follows a local `$ref` (`#/a/b`) to the value it names; throws when it names nothing. */
function resolvePointer(ref: string): Json {
  if (!ref.startsWith('#/')) throw new Error(`not a local $ref: ${ref}`);
  let node: Json = doc;
  for (const raw of ref.slice(2).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (!isObj(node) || !(key in node)) throw new Error(`unresolved $ref: ${ref}`);
    node = node[key] as Json;
  }
  return node;
}

/** An object, or the object its `$ref` names. */
function deref(value: Json | undefined, what: string): Obj {
  const o = obj(value, what);
  return typeof o.$ref === 'string' ? deref(resolvePointer(o.$ref), o.$ref) : o;
}

interface Operation {
  readonly method: string;
  readonly path: string;
  readonly op: Obj;
  /** Path-level and operation-level parameters, resolved. */
  readonly parameters: Obj[];
}

function operations(): Operation[] {
  const out: Operation[] = [];
  for (const [path, itemJson] of Object.entries(obj(doc.paths, 'paths'))) {
    const item = obj(itemJson, path);
    const shared = ((item.parameters ?? []) as Json[]).map((p) => deref(p, `${path} parameter`));
    for (const method of HTTP_METHODS) {
      if (!(method in item)) continue;
      const op = obj(item[method], `${method} ${path}`);
      const own = ((op.parameters ?? []) as Json[]).map((p) => deref(p, `${method} ${path} parameter`));
      out.push({ method: method.toUpperCase(), path, op, parameters: [...shared, ...own] });
    }
  }
  return out;
}

/** Every documented operation: a HEAD (GET without the body) is held to its GET, not to the contract. */
const allOps = operations();
const ops = allOps.filter((o) => o.method !== 'HEAD');
const headOps = allOps.filter((o) => o.method === 'HEAD');
const key = (o: { method: string; path: string }) => `${o.method} ${o.path}`;
const opAt = (method: string, path: string) => {
  const found = allOps.find((o) => o.method === method && o.path === path);
  if (!found) throw new Error(`${method} ${path} is not documented`);
  return found;
};

/** The contract's JSON Schema of a zod schema (requests as sent, answers as sent). */
const jsonSchema = (schema: z.ZodType, io: 'input' | 'output') =>
  z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as unknown as Obj;

/** A schema's object branches (its `oneOf`/`anyOf`, or itself), `$ref`s followed. */
function branches(schema: Json | undefined, what: string): Obj[] {
  const o = deref(schema, what);
  const alternatives = (o.oneOf ?? o.anyOf) as Json[] | undefined;
  if (alternatives) return alternatives.flatMap((b, i) => branches(b, `${what}[${i}]`));
  return o.allOf ? [merged((o.allOf as Json[]).map((part, i) => deref(part, `${what} allOf[${i}]`)))] : [o];
}

/** An `allOf` of object schemas as one: every part's fields and requirements. */
function merged(parts: readonly Obj[]): Obj {
  return {
    properties: Object.assign({}, ...parts.map((p) => p.properties ?? {})),
    required: [...new Set(parts.flatMap((p) => (p.required ?? []) as string[]))],
    additionalProperties: !parts.some((p) => p.additionalProperties === false),
  };
}

/** What an object schema lets through at its top level: its fields, the required ones, and whether others may come. */
function shape(o: Obj): string {
  const props = Object.keys(obj(o.properties ?? {}, 'properties')).sort();
  const required = [...((o.required ?? []) as string[])].sort();
  return `fields ${props.join(',')} | required ${required.join(',')} | closed ${o.additionalProperties === false}`;
}

/**
 * The shape of every object in a schema, nested ones too (through fields and array items), each
 * named by where it lies: an answer's inner objects (a target's `lag`) are held to the contract as
 * its top level is (probe api2, A2-1: `lag.agentConditions` was sent and not documented).
 */
function* nestedShapes(schema: Json | undefined, at: string): Generator<string> {
  if (schema === undefined) return;
  const all = branches(schema, at);
  for (const b of all) if (b.items !== undefined) yield* nestedShapes(b.items, `${at}[]`);
  const objects = all.filter((b) => isObj(b.properties));
  if (objects.length === 0) return;
  // Alternatives at one place are compared as what they let through together: a union of a plan
  // and a plan with its parts is one object whose parts are optional.
  const fields = Object.assign({}, ...objects.map((b) => b.properties)) as Obj;
  const required = ((objects[0]?.required ?? []) as string[]).filter((f) =>
    objects.every((b) => ((b.required ?? []) as string[]).includes(f)),
  );
  const closed = objects.every((b) => b.additionalProperties === false);
  yield `${at}: ${shape({ properties: fields, required, additionalProperties: !closed })}`;
  for (const [name, p] of Object.entries(fields)) yield* nestedShapes(p, `${at}.${name}`);
}

const contractOf = (o: { method: string; path: string }): RouteContract => {
  const found = routeList.find((r) => r.method === o.method && r.path === o.path);
  if (!found) throw new Error(`${key(o)} is not in contracts/api.ts`);
  return found;
};

interface MediaExample {
  /** `request`, or the status of the answer. */
  readonly where: string;
  readonly type: string;
  readonly schema: Json | undefined;
  readonly name: string;
  readonly value: Json | undefined;
}

/** Every example of an operation's request body and answers, with its media type's schema. */
function* mediaExamples(o: Operation): Generator<MediaExample> {
  const holders: [string, Json | undefined][] = [
    ['request', o.op.requestBody],
    ...Object.entries(obj(o.op.responses, key(o))),
  ];
  for (const [where, holder] of holders) {
    if (holder === undefined) continue;
    const content = deref(holder, `${key(o)} ${where}`).content;
    if (!isObj(content)) continue;
    for (const [type, m] of Object.entries(content)) {
      const media = obj(m, type);
      for (const [name, ex] of Object.entries(obj(media.examples ?? {}, 'examples'))) {
        yield { where, type, schema: media.schema, name, value: obj(ex, name).value };
      }
    }
  }
}

/** The error codes the API's sources raise (`code: '…'`, `errorBody(status, '…'`). */
function codesInSource(files: readonly string[]): Set<string> {
  const found = new Set<string>();
  for (const file of files) {
    const text = read(file);
    for (const m of text.matchAll(/\bcode:\s*(?:[\w.]+\s*\?\?\s*)?'([a-z_]+)'/g)) found.add(m[1] as string);
    for (const m of text.matchAll(/errorBody\(\s*\d{3},\s*'([a-z_]+)'/g)) found.add(m[1] as string);
  }
  return found;
}

/** Statuses API Gateway answers itself on AWS (authorizer, throttling): documented, not the function's. */
const GATEWAY_STATUSES = new Set(['401', '403', '429']);

/** Every `$ref` anywhere in a value. */
function* refsIn(value: Json): Generator<string> {
  if (Array.isArray(value)) for (const v of value) yield* refsIn(v);
  else if (isObj(value)) {
    for (const [k, v] of Object.entries(value)) {
      if (k === '$ref' && typeof v === 'string') yield v;
      else yield* refsIn(v);
    }
  }
}

/** Does a schema (or one `oneOf`/`anyOf` branch of it) point at the shared error schema? */
function usesErrorSchema(schema: Json | undefined): boolean {
  if (!isObj(schema)) return false;
  if (schema.$ref === ERROR_REF) return true;
  const branches = [...((schema.oneOf ?? []) as Json[]), ...((schema.anyOf ?? []) as Json[])];
  return branches.some((b) => isObj(b) && b.$ref === ERROR_REF);
}

function jsonSchemaOf(response: Obj): Json | undefined {
  const content = response.content;
  if (!isObj(content)) return undefined;
  const media = content['application/json'];
  return isObj(media) ? media.schema : undefined;
}

/** The examples of an operation's parameters, with each parameter's schema. */
function* parameterExamples(o: Operation): Generator<[Json | undefined, Json | undefined, string]> {
  for (const p of o.parameters) {
    if ('example' in p) yield [p.schema, p.example, `${key(o)} ${p.name}`];
    for (const [n, ex] of Object.entries(obj(p.examples ?? {}, 'examples'))) {
      yield [p.schema, obj(ex, n).value, `${key(o)} ${p.name} ${n}`];
    }
  }
}

/** Every example in the document with the schema it must meet: components, parameters, bodies. */
function* documentExamples(): Generator<[Json | undefined, Json | undefined, string]> {
  for (const [n, s] of Object.entries(schemas)) {
    for (const [i, ex] of ((obj(s, n).examples ?? []) as Json[]).entries())
      yield [s, ex, `${n}.examples[${i}]`];
  }
  for (const o of ops) {
    yield* parameterExamples(o);
    for (const ex of mediaExamples(o)) yield [ex.schema, ex.value, `${key(o)} ${ex.where} ${ex.name}`];
  }
}

// ajv is only a transitive dependency (fastify, via fauxqs): the examples are checked when it is there.
// The specifiers are variables so that the type checker does not require the packages either.
const optional = (specifier: string): Promise<unknown> => import(specifier).catch(() => undefined);
const ajvModule = await optional('ajv/dist/2020.js');
const formatsModule = await optional('ajv-formats');

/** The `application/json` media type of a request body or response. */
function json(holder: Obj, what: string): Obj {
  return obj(obj(holder.content, `${what} content`)['application/json'], `${what} application/json`);
}

const schemas = obj(obj(doc.components, 'components').schemas, 'components.schemas');
const schema = (name: string) => obj(schemas[name], `components.schemas.${name}`);

describe('docs/openapi.json', () => {
  it('is an OpenAPI 3.1 document whose $refs all resolve and whose operationIds are unique', () => {
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
    expect(obj(doc.info, 'info').title).toEqual(expect.any(String));
    const refs = [...refsIn(doc)];
    expect(refs.length).toBeGreaterThan(20);
    for (const ref of refs) expect(() => resolvePointer(ref), ref).not.toThrow();
    const ids = allOps.map((o) => o.op.operationId);
    expect(ids.every((id) => typeof id === 'string')).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('documents every route of contracts/api.ts with its method, operationId and statuses, and no other', () => {
    expect(routeList.length).toBeGreaterThanOrEqual(9);
    expect(ops.map(key).sort()).toEqual(routeList.map(key).sort());
    for (const route of routeList) {
      const o = opAt(route.method, route.path);
      expect(o.op.operationId, key(route)).toBe(route.operationId);
      const documented = Object.keys(obj(o.op.responses, key(route))).filter((s) => !GATEWAY_STATUSES.has(s));
      expect(documented.sort(), `${key(route)} statuses`).toEqual(Object.keys(route.responses).sort());
      expect(o.op.security === undefined, `${key(route)} needs credentials`).toBe(route.auth === 'required');
    }
  });

  it('declares HEAD beside every GET and nowhere else, as GET without the body: its parameters, security, statuses and headers', () => {
    const gets = ops.filter((o) => o.method === 'GET');
    expect(headOps.map((o) => o.path).sort()).toEqual(gets.map((o) => o.path).sort());
    for (const get of gets) {
      const head = opAt('HEAD', get.path);
      const what = key(head);
      expect(head.parameters, `${what} parameters`).toEqual(get.parameters);
      expect(head.op.security, `${what} security`).toEqual(get.op.security);
      expect(head.op.requestBody, `${what} body`).toBeUndefined();
      const getResponses = obj(get.op.responses, key(get));
      const headResponses = obj(head.op.responses, what);
      expect(Object.keys(headResponses).sort(), `${what} statuses`).toEqual(Object.keys(getResponses).sort());
      for (const [status, r] of Object.entries(headResponses)) {
        const answer = deref(r, `${what} ${status}`);
        expect(answer.content, `${what} ${status}: no body`).toBeUndefined();
        const headers = obj(answer.headers ?? {}, `${what} ${status} headers`);
        const getHeaders = obj(deref(getResponses[status], `${key(get)} ${status}`).headers ?? {}, 'headers');
        expect(headers, `${what} ${status} headers`).toEqual({
          ...getHeaders,
          'Content-Length': { $ref: '#/components/headers/HeadContentLength' },
        });
      }
    }
  });

  it('is held to the API: HEAD answers as GET without the body exactly where it is declared', async () => {
    // A handler that reaches nothing: an unknown query parameter is refused before any lookup, so
    // a route that answers is one the router knows (400 invalid naming it), with GET's body length.
    const api = createApiHandler({
      ledger: {} as Ledger,
      clock: systemClock,
      targets: [],
      feedShards: 4,
      telemetry: quietTelemetry(new RecordingMetrics()),
    } as unknown as ApiDeps);
    const concrete = (template: string) =>
      template
        .replace('{id}', '467bcecd-fa44-4700-afaf-697141a52797')
        .replace('{partNumber}', '1')
        .replace('{path}', 'photos%2Fa.jpg');
    const ask = (method: string, path: string) =>
      api(httpEvent(method, concrete(path), { query: { zz: '1' } }), lambdaContext('api'));
    const paths = Object.keys(obj(doc.paths, 'paths'));
    expect(paths.length).toBeGreaterThan(10);
    for (const path of paths) {
      const head = await ask('HEAD', path);
      const declared = headOps.some((o) => o.path === path);
      if (declared) {
        const get = await ask('GET', path);
        expect([head.statusCode, head.body], `HEAD ${path}`).toEqual([400, '']);
        expect(head.headers?.['content-length'], `HEAD ${path}`).toBe(
          String(Buffer.byteLength(String(get.body))),
        );
      } else {
        expect(head.statusCode, `HEAD ${path} is not declared: the API must not answer it`).not.toBe(400);
        expect(head.statusCode, `HEAD ${path}`).toBeGreaterThanOrEqual(400);
      }
    }
  });

  it("documents each route's parameters as contracts/api.ts reads them", () => {
    for (const route of routeList) {
      const o = opAt(route.method, route.path);
      const names = (where: string) =>
        o.parameters
          .filter((p) => p.in === where)
          .map((p) => String(p.name).toLowerCase())
          .sort();
      const fields = (schema: z.ZodObject | undefined) =>
        Object.keys(schema?.shape ?? {})
          .map((n) => n.toLowerCase())
          .sort();
      expect(names('query'), `${key(route)} query`).toEqual(fields(route.query));
      expect(names('header'), `${key(route)} headers`).toEqual(fields(route.headers));
      if (route.params) expect(names('path'), `${key(route)} path`).toEqual(fields(route.params));
      expect(o.op.requestBody !== undefined, `${key(route)} has a body`).toBe(route.body !== undefined);
    }
  });

  it('describes every request body and every answer with the fields of contracts/api.ts', () => {
    let compared = 0;
    for (const route of routeList) {
      const o = opAt(route.method, route.path);
      if (route.body) {
        const body = json(obj(o.op.requestBody, 'requestBody'), `${key(route)} requestBody`);
        const documented = branches(body.schema, `${key(route)} request`).map(shape);
        expect(documented, `${key(route)} request`).toEqual([shape(jsonSchema(route.body, 'input'))]);
        compared++;
      }
      for (const [status, response] of Object.entries(route.responses)) {
        if (!response.body) continue;
        const documented = deref(obj(o.op.responses, key(route))[status], `${key(route)} ${status}`);
        const mine = branches(jsonSchema(response.body, 'output'), 'contract').map(shape).sort();
        expect(
          branches(json(documented, `${key(route)} ${status}`).schema, status)
            .map(shape)
            .sort(),
          `${key(route)} ${status}`,
        ).toEqual(mine);
        compared++;
      }
    }
    expect(compared).toBeGreaterThan(30);
  });

  it('describes the objects inside each answer (nested fields, array items) as contracts/api.ts does', () => {
    let compared = 0;
    for (const route of routeList) {
      const o = opAt(route.method, route.path);
      for (const [status, response] of Object.entries(route.responses)) {
        if (!response.body) continue;
        const documented = deref(obj(o.op.responses, key(route))[status], `${key(route)} ${status}`);
        const theirs = [...nestedShapes(json(documented, `${key(route)} ${status}`).schema, 'body')].sort();
        const mine = [...nestedShapes(jsonSchema(response.body, 'output') as Json, 'body')].sort();
        expect(theirs, `${key(route)} ${status}`).toEqual(mine);
        compared += mine.length;
      }
    }
    expect(compared).toBeGreaterThan(50);
  });

  it('has only examples the contract accepts: each request body, and each answer for its status', () => {
    let checked = 0;
    for (const o of ops) {
      const route = contractOf(o);
      for (const ex of mediaExamples(o)) {
        const schema = ex.where === 'request' ? route.body : route.responses[Number(ex.where)]?.body;
        if (ex.type !== 'application/json' || schema === undefined) continue;
        const result = schema.safeParse(ex.value);
        expect(result.error?.issues ?? [], `${key(o)} ${ex.where} example ${ex.name}`).toEqual([]);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(40);
  });

  it('declares every {parameter} of a path template as a required path parameter', () => {
    for (const o of ops) {
      const names = [...o.path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
      const declared = o.parameters.filter((p) => p.in === 'path');
      expect(declared.map((p) => p.name).sort(), key(o)).toEqual(names.sort());
      for (const p of declared) expect(p.required, `${key(o)} {${p.name}}`).toBe(true);
    }
  });

  it('gives every operation a 4xx answer in the shared error schema (health: a 400 and a 500)', () => {
    for (const o of ops) {
      const responses = obj(o.op.responses, `${key(o)} responses`);
      const errors = Object.entries(responses)
        .filter(([status]) => /^[45]\d\d$/.test(status))
        .map(([status, r]) => ({
          status,
          uses: usesErrorSchema(jsonSchemaOf(deref(r, `${key(o)} ${status}`))),
        }));
      const shared4xx = errors.filter((e) => e.status.startsWith('4') && e.uses);
      if (o.path === '/v1/health') {
        // The health route has no authorizer and no lookup; its one input is the query string, and a
        // parameter there is refused as on every route that takes none.
        expect(errors, key(o)).toEqual([
          { status: '400', uses: true },
          { status: '500', uses: true },
        ]);
      } else {
        expect(shared4xx.length, `${key(o)} has a 4xx with ${ERROR_REF}`).toBeGreaterThan(0);
        expect(errors.find((e) => e.status === '500')?.uses, `${key(o)} 500`).toBe(true);
      }
    }
  });

  it('lists exactly the error codes the API can answer, each example with its documented status', () => {
    const files = [
      'functions/handlers/api-handler.ts',
      'functions/core/uploads.ts',
      'contracts/claim-limits.ts',
      'functions/core/possession.ts',
      'contracts/paths.ts',
      'functions/core/changes.ts',
      'functions/core/commit.ts',
      'functions/core/errors.ts',
      'functions/core/idempotency.ts',
      'local/api-front.ts',
    ];
    const found = codesInSource(files);
    // Codes that exist but never reach a client of the API.
    const internal = new Set([
      'claim_taken', // a lost conditional claim: the commit loop retries it
      'content_mismatch', // the ingest's, not the API's
    ]);
    const documented = schema('ErrorCode').enum as string[];
    expect([...documented].sort()).toEqual([...found].filter((c) => !internal.has(c)).sort());
    expect([...documented].sort(), 'contracts/api.ts errorCodeSchema').toEqual(
      [...errorCodeSchema.options].sort(),
    );
    for (const code of [
      'invalid',
      'invalid_json',
      'invalid_path',
      'invalid_cursor',
      'too_large',
      'unsupported_content_type',
      'proof_not_accepted',
      'version_conflict',
      'not_found',
      'no_route',
      'unknown_target',
      'not_readable',
      'unauthorized',
      'internal',
    ]) {
      expect(documented).toContain(code);
    }

    // The code → status table in ErrorCode's description, and every error example agrees with it.
    const table = new Map(
      [...String(schema('ErrorCode').description).matchAll(/^\| `([a-z_]+)` \| (\d{3}) \|/gm)].map((m) => [
        m[1] as string,
        m[2] as string,
      ]),
    );
    expect([...table.keys()].sort()).toEqual([...documented].sort());
    const errorExamples = ops.flatMap((o) =>
      [...mediaExamples(o)].flatMap((ex) =>
        isObj(ex.value) && isObj(ex.value.error)
          ? [{ ...ex, at: key(o), code: ex.value.error.code as string }]
          : [],
      ),
    );
    for (const ex of errorExamples) {
      expect(documented, `${ex.at} ${ex.where} example ${ex.name}`).toContain(ex.code);
      expect(table.get(ex.code), `${ex.at} ${ex.where} example ${ex.name} (${ex.code})`).toBe(ex.where);
    }
    expect(errorExamples.length).toBeGreaterThan(20);
  });

  it('sends, in the walk-through of info.description, only request bodies the routes take', () => {
    const info = obj(doc.info, 'info');
    const text = String(info.description);
    const sent = [...text.matchAll(/`(GET|POST|PUT|DELETE) (\/v1\/[^`\s]+)` with `\{([^}`[]*)/g)];
    expect(sent.length).toBeGreaterThanOrEqual(3);
    for (const [said, method, path, fields] of sent) {
      const route = routeList.find((r) => r.method === method && r.path === path);
      expect(route, said).toBeDefined();
      const body = route?.body as { shape?: Record<string, unknown> } | undefined;
      const taken = Object.keys(body?.shape ?? {});
      const names = (fields ?? '')
        .split(',')
        .map((f) => /^\s*"?([A-Za-z][A-Za-z0-9]*)/.exec(f)?.[1])
        .filter((name): name is string => name !== undefined);
      expect(names.length, said).toBeGreaterThan(0);
      expect(
        names.filter((name) => !taken.includes(name)),
        `${said}: fields ${method} ${path} does not take`,
      ).toEqual([]);
    }
  });

  it("names, in the error's `field`, every body field, query parameter and header a route reads", () => {
    const errorProperties = obj(obj(schema('Error').properties, 'Error.properties').error, 'Error.error');
    const fieldDoc = String(
      obj(obj(errorProperties.properties, 'error.properties').field, 'field').description,
    );
    const named = new Set([...fieldDoc.matchAll(/`([^`]+)`/g)].map((m) => m[1]));
    const keys = (schema: z.ZodType | undefined): string[] => {
      const s = schema as {
        shape?: Record<string, unknown>;
        def?: { in?: { shape?: Record<string, unknown> } };
      };
      return Object.keys(s?.shape ?? s?.def?.in?.shape ?? {});
    };
    const inputs = new Set(
      routeList.flatMap((route) => [...keys(route.body), ...keys(route.query), ...keys(route.headers)]),
    );
    expect(inputs.size).toBeGreaterThan(15);
    expect(
      [...inputs].filter((input) => !named.has(input)),
      "missing from Error.error.field's description",
    ).toEqual([]);
  });

  it('describes the POST /v1/uploads body with the patterns and bounds of contracts/api.ts', () => {
    const route = contractOf({ method: 'POST', path: '/v1/uploads' });
    const body = json(obj(opAt('POST', '/v1/uploads').op.requestBody, 'requestBody'), 'requestBody');
    const request = deref(body.schema, 'request schema');
    const mine = jsonSchema(route.body as z.ZodType, 'input');
    const props = obj(request.properties, 'properties');
    const prop = (n: string) => deref(props[n], `properties.${n}`);
    for (const [name, field] of Object.entries(obj(mine.properties, 'contract properties'))) {
      const f = obj(field, name);
      if (typeof f.pattern === 'string') {
        // Same regular expression (`.source` normalises escaping such as `\/`).
        expect(new RegExp(prop(name).pattern as string).source, name).toBe(new RegExp(f.pattern).source);
      }
      if (f.type !== undefined) expect(prop(name).type, name).toBe(f.type);
    }
    expect(request.additionalProperties).toBe(false);
    expect([...(request.required as string[])].sort()).toEqual(['contentType', 'path', 'sha256', 'size']);
    expect(prop('sha256').pattern).toBe('^[0-9a-fA-F]{64}$');
    expect(prop('contentType').maxLength).toBe(255);
    expect(prop('path').type).toBe('string');
    // limits.maxUploadBytes is at most 5 TiB (contracts/topology.ts): S3's largest object.
    expect(prop('size')).toMatchObject({ type: 'integer', minimum: 0, maximum: 5 * 1024 ** 4 });
    expect(prop('ifVersion')).toMatchObject({ type: 'integer', minimum: 0 });
  });

  it('states the path rules as a pattern that accepts exactly what normalizePath accepts (length, NFKC look-alikes and the rest of Default_Ignorable_Code_Point aside)', () => {
    const pattern = new RegExp(schema('FilePath').pattern as string, 'u');
    const accepts = (raw: string) => {
      try {
        normalizePath(raw);
        return true;
      } catch {
        return false;
      }
    };
    const agree = (raw: string) => pattern.test(raw.normalize('NFC')) === accepts(raw);
    const table = [
      'photos/2024/beach.jpg',
      'café/menü.pdf',
      'cafe\u0301',
      '...',
      '.hidden/a..b',
      'a b/%2F',
      'a\u2028b',
      '',
      '/abs',
      'a//b',
      'a/',
      '.',
      '..',
      'a/./b',
      'a/../b',
      'a\\b',
      'a\u0000b',
      'a\nb',
      'a\u007fb',
      'a\u0085b',
      'a\u009fb',
    ];
    for (const raw of table) expect(agree(raw), JSON.stringify(raw)).toBe(true);
    const chars = [
      'a',
      'é',
      'e\u0301',
      '/',
      '.',
      '\\',
      ' ',
      '%',
      '\u0000',
      '\u001f',
      '\u007f',
      '\u0085',
      '\u2028',
      '\u202e',
      '\u200b',
      '\u200d',
      '\u2215',
      '\ufdd0',
      '\u{e0041}',
      '\u{1f600}',
    ];
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...chars), { maxLength: 12 }), (parts) => agree(parts.join(''))),
      { numRuns: 2000 },
    );
    expect(schema('FilePath').maxLength).toBe(1024);
  });

  it('needs no credentials for health and bearerAuth or sigv4 everywhere else', () => {
    expect(opAt('GET', '/v1/health').op.security).toEqual([]);
    expect(doc.security).toEqual([{ bearerAuth: [] }, { sigv4: [] }]);
    for (const o of ops.filter((x) => x.path !== '/v1/health')) {
      expect(o.op.security, `${key(o)} inherits the global security`).toBeUndefined();
      expect(Object.keys(obj(o.op.responses, key(o)))).toContain('401');
    }
    const schemes = obj(obj(doc.components, 'components').securitySchemes, 'securitySchemes');
    expect(schemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(schemes.sigv4).toMatchObject({ type: 'apiKey', in: 'header', name: 'Authorization' });
  });

  it('documents the presigned PUT as functions/adapters/s3.ts signs it', async () => {
    const put = schema('PresignedPut');
    expect(put.required).toEqual(['method', 'url', 'headers', 'automaticHeaders', 'expiresAt']);
    const headers = obj(obj(put.properties, 'properties').headers, 'headers');
    const automatic = schema('AutomaticHeaders');
    expect(automatic.required).toEqual(['content-length', 'host']);
    // The headers a real presigned PUT signs (offline: signing needs no network), not a list read
    // from the source (probe docs: x-amz-meta-mirror-upload, signed through a constant, was missed).
    const store = new S3BlobStore(
      makeS3Client({
        region: 'us-east-1',
        forcePathStyle: false,
        credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x' },
      }),
      'origin',
    );
    const presigned = await store.presignPut({
      sha256: 'f'.repeat(64),
      size: 5,
      contentType: 'image/jpeg',
      expiresInSeconds: 900,
      uploadId: '467bcecd-fa44-4700-afaf-697141a52797',
    });
    const signed = (new URL(presigned.url).searchParams.get('X-Amz-SignedHeaders') ?? '')
      .split(';')
      .filter((h) => h !== 'host')
      .sort();
    expect(signed).toEqual([
      'content-length',
      'content-type',
      'x-amz-checksum-sha256',
      'x-amz-meta-mirror-upload',
    ]);
    // Signed headers are split: those to send, and those the HTTP client sets (content-length, host).
    expect([...Object.keys(obj(headers.properties, 'properties')), 'content-length'].sort()).toEqual(signed);
    expect(Object.keys(presigned.headers).sort()).toEqual(signed);
    expect(String(put.description)).toMatch(/base64/);
    expect(String(put.description)).toMatch(/15 minutes/);
    expect(String(put.description)).toMatch(/5 GiB/);

    // The 201 example is self-consistent: the checksum header is the base64 of the request's sha256.
    const op = opAt('POST', '/v1/uploads').op;
    const created = deref(obj(op.responses, 'responses')['201'], '201');
    const examples = obj(json(created, 'POST /v1/uploads 201').examples, 'examples');
    const example = obj(obj(examples.pending, 'pending').value, 'value');
    const upload = obj(example.upload, 'upload');
    const sent = obj(upload.headers, 'headers');
    const url = new URL(upload.url as string);
    expect(obj(upload.automaticHeaders, 'automaticHeaders').host).toBe(url.host);
    const sha = url.pathname.split('/').at(-1) as string;
    expect(sent['x-amz-checksum-sha256']).toBe(Buffer.from(sha, 'hex').toString('base64'));
    expect(url.searchParams.get('X-Amz-SignedHeaders')?.split(';').sort()).toEqual(
      [...signed, 'host'].sort(),
    );
    expect(Number(url.searchParams.get('X-Amz-Expires'))).toBeLessThanOrEqual(900);
  });

  it('documents the redirect, the version pages and the change feed as api.ts answers them', () => {
    const content = opAt('GET', '/v1/files/{path}/content');
    const redirect = deref(obj(content.op.responses, 'responses')['302'], '302');
    expect(obj(obj(redirect.headers, 'headers').Location, 'Location').required).toBe(true);
    expect(content.parameters.map((p) => `${p.in}:${p.name}`).sort()).toEqual([
      'path:path',
      'query:target',
      'query:version',
    ]);

    const versions = opAt('GET', '/v1/files/{path}/versions');
    const byName = (o: Operation, n: string) => obj(o.parameters.find((p) => p.name === n)?.schema, n);
    expect(byName(versions, 'limit')).toMatchObject({ minimum: 1, maximum: 1000, default: 100 });
    expect(byName(versions, 'before')).toMatchObject({ type: 'integer' });
    expect(Object.keys(obj(schema('VersionList').properties, 'props'))).toContain('nextBefore');

    const changes = opAt('GET', '/v1/changes');
    expect(byName(changes, 'limit')).toMatchObject({ minimum: 1, maximum: 1000, default: 100 });
    expect(byName(changes, 'cursor')).toMatchObject({ type: 'string', maxLength: 2048 });
    expect(schema('ChangesPage').required).toEqual(['changes', 'cursor']);

    const del = opAt('DELETE', '/v1/files/{path}');
    expect(byName(del, 'ifVersion')).toMatchObject({ type: 'integer', minimum: 0 });

    const created = Object.keys(obj(opAt('POST', '/v1/uploads').op.responses, 'responses'));
    expect(created).toEqual(expect.arrayContaining(['200', '201', '400', '401', '409', '413', '415', '500']));
  });

  it.skipIf(!ajvModule)('has examples that validate against their schemas', () => {
    type Validator = ((data: unknown) => boolean) & { errors?: unknown };
    type AjvLike = {
      addSchema(schema: object): void;
      compile(schema: object): Validator;
    };
    const Ajv = (ajvModule as unknown as { default: new (o: object) => AjvLike }).default;
    const ajv = new Ajv({ strict: false, allErrors: true });
    const addFormats = (formatsModule as { default?: (a: AjvLike) => void } | undefined)?.default;
    addFormats?.(ajv);
    // components.schemas as $defs of one schema, with refs rewritten to point into it.
    const rewrite = (value: Json) =>
      JSON.parse(JSON.stringify(value).replaceAll('"#/components/schemas/', '"openapi#/$defs/')) as Obj;
    ajv.addSchema({ $id: 'openapi', $defs: rewrite(schemas) });
    let checked = 0;
    const check = (s: Json | undefined, value: Json | undefined, where: string) => {
      if (!isObj(s)) return;
      const validate = ajv.compile(rewrite(s));
      expect(validate(value), `${where}: ${JSON.stringify(validate.errors)}`).toBe(true);
      checked++;
    };

    for (const [schemaOf, value, where] of documentExamples()) check(schemaOf, value, where);
    expect(checked).toBeGreaterThan(40);
  });
});
