/**
 * docs/openapi.json against the code it documents, without network or emulators.
 *
 * The document is JSON (valid YAML 1.2 too) because no YAML parser is a dependency.
 * The api handler reads its environment at import, so its routes and request schema
 * are read from the source text instead of imported.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { normalizePath } from '../../contracts/paths.ts';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Obj = { [key: string]: Json };

const read = (relative: string) => readFileSync(new URL(`../../${relative}`, import.meta.url), 'utf8');

const doc = JSON.parse(read('docs/openapi.json')) as Obj;
const apiSource = read('functions/handlers/api.ts');

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

const ops = operations();
const key = (o: { method: string; path: string }) => `${o.method} ${o.path}`;
const opAt = (method: string, path: string) => {
  const found = ops.find((o) => o.method === method && o.path === path);
  if (!found) throw new Error(`${method} ${path} is not documented`);
  return found;
};

/** `{method, path}` of every entry of api.ts's `routes` array, in source order. */
function sourceRoutes(): { method: string; path: string }[] {
  const start = apiSource.indexOf('const routes = [');
  const end = apiSource.indexOf('\n];', start);
  expect(start, 'api.ts has a `const routes = [` array').toBeGreaterThan(0);
  const block = apiSource.slice(start, end);
  const pairs = [...block.matchAll(/method:\s*'([A-Z]+)'(?:\s+as\s+const)?\s*,\s*path:\s*'([^']+)'/g)].map(
    (m) => ({ method: m[1] as string, path: m[2] as string }),
  );
  // Every `method:` must have been read with its path: a reordered route must not go unseen.
  expect(pairs.length, 'routes whose method and path could be read').toBe(block.match(/\bmethod:/g)?.length);
  return pairs;
}

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
    const ids = ops.map((o) => o.op.operationId);
    expect(ids.every((id) => typeof id === 'string')).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('documents every route of functions/handlers/api.ts with the same method, and no other', () => {
    const fromSource = sourceRoutes().map(key).sort();
    expect(fromSource.length).toBeGreaterThanOrEqual(9);
    expect(ops.map(key).sort()).toEqual(fromSource);
  });

  it('declares every {parameter} of a path template as a required path parameter', () => {
    for (const o of ops) {
      const names = [...o.path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
      const declared = o.parameters.filter((p) => p.in === 'path');
      expect(declared.map((p) => p.name).sort(), key(o)).toEqual(names.sort());
      for (const p of declared) expect(p.required, `${key(o)} {${p.name}}`).toBe(true);
    }
  });

  it('gives every operation a 4xx answer in the shared error schema (health: only a 500)', () => {
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
        // The health route has no authorizer, no input and no lookup: it cannot answer a 4xx.
        expect(errors, key(o)).toEqual([{ status: '500', uses: true }]);
      } else {
        expect(shared4xx.length, `${key(o)} has a 4xx with ${ERROR_REF}`).toBeGreaterThan(0);
        expect(errors.find((e) => e.status === '500')?.uses, `${key(o)} 500`).toBe(true);
      }
    }
  });

  it('lists exactly the error codes the API can answer, each example with its documented status', () => {
    const files = [
      'functions/handlers/api.ts',
      'functions/core/uploads.ts',
      'functions/core/possession.ts',
      'contracts/paths.ts',
      'functions/core/changes.ts',
      'functions/core/commit.ts',
      'functions/core/errors.ts',
      'functions/core/idempotency.ts',
      'local/api-front.ts',
    ];
    const found = new Set<string>();
    for (const file of files) {
      const text = read(file);
      for (const m of text.matchAll(/\bcode:\s*(?:[\w.]+\s*\?\?\s*)?'([a-z_]+)'/g)) found.add(m[1] as string);
      for (const m of text.matchAll(/errorBody\(\s*\d{3},\s*'([a-z_]+)'/g)) found.add(m[1] as string);
    }
    // Codes that exist but never reach a client of the API.
    const internal = new Set([
      'claim_taken', // a lost conditional claim: the commit loop retries it
      'content_mismatch', // the ingest's, not the API's
    ]);
    const documented = schema('ErrorCode').enum as string[];
    expect([...documented].sort()).toEqual([...found].filter((c) => !internal.has(c)).sort());
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
    let examples = 0;
    for (const o of ops) {
      for (const [status, r] of Object.entries(obj(o.op.responses, key(o)))) {
        const media = deref(r, `${key(o)} ${status}`).content;
        if (!isObj(media) || !isObj(media['application/json'])) continue;
        for (const [name, ex] of Object.entries(obj(media['application/json'].examples ?? {}, key(o)))) {
          const value = obj(ex, name).value;
          if (!isObj(value) || !isObj(value.error)) continue;
          examples++;
          const code = value.error.code as string;
          expect(documented, `${key(o)} ${status} example ${name}`).toContain(code);
          expect(table.get(code), `${key(o)} ${status} example ${name} (${code})`).toBe(status);
        }
      }
    }
    expect(examples).toBeGreaterThan(20);
  });

  it('describes the POST /v1/uploads body as api.ts parses it', () => {
    const body = json(obj(opAt('POST', '/v1/uploads').op.requestBody, 'requestBody'), 'requestBody');
    const request = deref(body.schema, 'request schema');

    // The zod schema's fields, read from the source.
    const start = apiSource.indexOf('const uploadRequestSchema = z.strictObject({');
    expect(start, 'api.ts has uploadRequestSchema as a strict object').toBeGreaterThan(0);
    const block = apiSource.slice(start, apiSource.indexOf('\n});', start));
    const fields = [...block.matchAll(/^ {2}(\w+): z([\s\S]*?)(?=^ {2}\w+: z|(?![\s\S]))/gm)].map((m) => ({
      name: m[1] as string,
      chain: m[2] as string,
    }));
    expect(fields.map((f) => f.name)).toEqual([
      'path',
      'size',
      'sha256',
      'contentType',
      'ifVersion',
      'newVersion',
    ]);
    const required = fields.filter((f) => !f.chain.includes('.optional()')).map((f) => f.name);

    expect(request.type).toBe('object');
    expect(request.additionalProperties).toBe(false); // z.strictObject
    expect([...(request.required as string[])].sort()).toEqual(required.sort());
    expect([...(request.required as string[])].sort()).toEqual(['contentType', 'path', 'sha256', 'size']);
    const props = obj(request.properties, 'properties');
    expect(Object.keys(props).sort()).toEqual(fields.map((f) => f.name).sort());

    const prop = (n: string) => deref(props[n], `properties.${n}`);
    for (const f of fields) {
      const literal = /\.regex\(\/(.+?)\/([a-z]*),/.exec(f.chain);
      if (!literal) continue;
      const documented = prop(f.name).pattern;
      expect(documented, `${f.name} has a pattern`).toEqual(expect.any(String));
      // Same regular expression (`.source` normalises escaping such as `\/`).
      expect(new RegExp(documented as string).source, f.name).toBe(new RegExp(literal[1] as string).source);
    }
    expect(prop('sha256').pattern).toBe('^[0-9a-fA-F]{64}$');
    expect(prop('contentType').maxLength).toBe(255);
    expect(prop('path').type).toBe('string');
    // limits.maxUploadBytes is at most 50 GiB (contracts/topology.ts): what the ingest verifies in time.
    expect(prop('size')).toMatchObject({ type: 'integer', minimum: 0, maximum: 50 * 1024 ** 3 });
    expect(prop('ifVersion')).toMatchObject({ type: 'integer', minimum: 0 });
  });

  it('states the path rules as a pattern that accepts exactly what normalizePath accepts (length aside)', () => {
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

  it('documents the presigned PUT as functions/adapters/s3.ts signs it', () => {
    const put = schema('PresignedPut');
    expect(put.required).toEqual(['method', 'url', 'headers', 'expiresAt']);
    const headers = obj(obj(put.properties, 'properties').headers, 'headers');
    const s3Source = read('functions/adapters/s3.ts');
    const signable = /signableHeaders:\s*new Set\(\[([^\]]*)\]\)/.exec(s3Source)?.[1];
    const signed = [...(signable ?? '').matchAll(/'([^']+)'/g)].map((m) => m[1]).sort();
    expect(signed).toEqual(['content-length', 'content-type', 'x-amz-checksum-sha256']);
    expect([...(headers.required as string[])].sort()).toEqual(signed);
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
    expect(content.parameters.map((p) => `${p.in}:${p.name}`).sort()).toEqual(['path:path', 'query:target']);

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

    for (const [n, s] of Object.entries(schemas)) {
      for (const [i, ex] of ((obj(s, n).examples ?? []) as Json[]).entries())
        check(s, ex, `${n}.examples[${i}]`);
    }
    for (const o of ops) {
      for (const p of o.parameters) {
        if ('example' in p) check(p.schema, p.example, `${key(o)} ${p.name}`);
        for (const [n, ex] of Object.entries(obj(p.examples ?? {}, 'examples'))) {
          check(p.schema, obj(ex, n).value, `${key(o)} ${p.name} ${n}`);
        }
      }
      const bodies: [string, Json | undefined][] = [['request', o.op.requestBody]];
      for (const [status, r] of Object.entries(obj(o.op.responses, key(o)))) bodies.push([status, r]);
      for (const [where, b] of bodies) {
        if (b === undefined) continue;
        const media = deref(b, where).content;
        if (!isObj(media)) continue;
        for (const [type, m] of Object.entries(media)) {
          const mediaType = obj(m, type);
          for (const [n, ex] of Object.entries(obj(mediaType.examples ?? {}, 'examples'))) {
            check(mediaType.schema, obj(ex, n).value, `${key(o)} ${where} ${n}`);
          }
        }
      }
    }
    expect(checked).toBeGreaterThan(40);
  });
});
