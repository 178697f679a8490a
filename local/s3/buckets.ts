/**
 * Bucket operations: ListBuckets, CreateBucket, HeadBucket, DeleteBucket,
 * Put/GetBucketVersioning, Put/Get/DeleteBucketCors, GetBucketLocation.
 */
import { createHash } from 'node:crypto';
import { headerValue, readSmallBody } from './body.ts';
import { bucketOf, type Context, send } from './context.ts';
import type { CorsRule } from './store.ts';
import { children, errors, parseXmlBody, S3Error, text, xmlDocument } from './xml.ts';

const OWNER = { ID: 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9', DisplayName: 'local' };

export function listBuckets(ctx: Context): void {
  const buckets = [...ctx.store.buckets.values()].sort((a, b) => a.name.localeCompare(b.name));
  send(
    ctx,
    200,
    {},
    xmlDocument('ListAllMyBucketsResult', {
      Owner: OWNER,
      Buckets: { Bucket: buckets.map((b) => ({ Name: b.name, CreationDate: b.createdAt })) },
    }),
  );
}

export async function createBucket(ctx: Context): Promise<void> {
  const name = ctx.target.bucket ?? '';
  const raw = await readSmallBody(ctx.req, 64 * 1024);
  const constraint =
    raw.trim() === ''
      ? undefined
      : text(parseXmlBody(raw, 'CreateBucketConfiguration'), 'LocationConstraint');
  // S3 refuses a constraint naming us-east-1: that region is the absence of one.
  if (
    constraint === 'us-east-1' ||
    (constraint !== undefined && !/^[a-z]{2}(-[a-z]+)+-\d$/.test(constraint))
  ) {
    throw new S3Error(400, 'InvalidLocationConstraint', 'The specified location-constraint is not valid', {
      LocationConstraint: constraint,
    });
  }
  if (ctx.store.buckets.has(name)) {
    throw new S3Error(
      409,
      'BucketAlreadyOwnedByYou',
      'Your previous request to create the named bucket succeeded and you already own it.',
      { BucketName: name },
    );
  }
  ctx.store.buckets.set(name, {
    name,
    createdAt: new Date().toISOString(),
    region: constraint ?? 'us-east-1',
    versioning: undefined,
    cors: undefined,
    objects: new Map(),
  });
  await ctx.store.persist({ bucket: name });
  send(ctx, 200, { location: `/${name}` });
}

export function headBucket(ctx: Context): void {
  const bucket = bucketOf(ctx);
  send(ctx, 200, { 'x-amz-bucket-region': bucket.region ?? 'us-east-1' });
}

export async function deleteBucket(ctx: Context): Promise<void> {
  const bucket = bucketOf(ctx);
  const uploads = [...ctx.store.uploads.values()].some((u) => u.bucket === bucket.name);
  if (bucket.objects.size > 0 || uploads) {
    throw new S3Error(409, 'BucketNotEmpty', 'The bucket you tried to delete is not empty', {
      BucketName: bucket.name,
    });
  }
  ctx.store.buckets.delete(bucket.name);
  await ctx.store.persist({ bucket: bucket.name });
  send(ctx, 204);
}

export function getLocation(ctx: Context): void {
  const { region } = bucketOf(ctx);
  // us-east-1 answers an empty LocationConstraint, as S3 does.
  const body =
    region === undefined || region === 'us-east-1'
      ? xmlDocument('LocationConstraint', {})
      : xmlDocument('LocationConstraint', region);
  send(ctx, 200, {}, body);
}

/** S3 requires Content-MD5 (or a checksum) on configuration writes; checked when given. */
async function configBody(ctx: Context): Promise<string> {
  const raw = await readSmallBody(ctx.req, 64 * 1024);
  const md5 = headerValue(ctx.req.headers, 'content-md5');
  if (md5 !== undefined && createHash('md5').update(raw).digest('base64') !== md5) {
    throw errors.badDigest('The Content-MD5 you specified did not match what we received.');
  }
  return raw;
}

export async function putVersioning(ctx: Context): Promise<void> {
  const bucket = bucketOf(ctx);
  const doc = parseXmlBody(await configBody(ctx), 'VersioningConfiguration');
  const status = text(doc, 'Status');
  if (text(doc, 'MfaDelete') === 'Enabled') throw errors.notImplemented('MFA delete');
  if (status !== 'Enabled' && status !== 'Suspended') throw errors.malformedXml();
  // A bucket that never had versioning stays unversioned when "suspended".
  if (status === 'Enabled' || bucket.versioning !== undefined) bucket.versioning = status;
  await ctx.store.persist({ bucket: bucket.name });
  send(ctx, 200);
}

export function getVersioning(ctx: Context): void {
  const bucket = bucketOf(ctx);
  send(ctx, 200, {}, xmlDocument('VersioningConfiguration', { Status: bucket.versioning }));
}

const CORS_METHODS = ['GET', 'PUT', 'POST', 'DELETE', 'HEAD'];

/** One CORSRule element, checked as S3 checks it. */
function parseCorsRule(rule: unknown): CorsRule {
  const list = (name: string) =>
    children(rule, name).map((v) => {
      if (typeof v !== 'string' || v === '') throw errors.malformedXml();
      return v;
    });
  const allowedMethods = list('AllowedMethod');
  const allowedOrigins = list('AllowedOrigin');
  if (allowedMethods.length === 0 || allowedOrigins.length === 0) throw errors.malformedXml();
  const unsupported = allowedMethods.find((m) => !CORS_METHODS.includes(m));
  if (unsupported !== undefined) {
    throw errors.invalidRequest(
      `Found unsupported HTTP method in CORS config. Unsupported method is ${unsupported}`,
    );
  }
  const wildcards = allowedOrigins.find((o) => o.split('*').length > 2);
  if (wildcards !== undefined) {
    throw errors.invalidRequest(`AllowedOrigin "${wildcards}" can not have more than one wildcard.`);
  }
  const maxAge = text(rule, 'MaxAgeSeconds');
  if (maxAge !== undefined && !/^\d+$/.test(maxAge)) throw errors.malformedXml();
  return {
    allowedOrigins,
    allowedMethods,
    allowedHeaders: list('AllowedHeader'),
    exposeHeaders: list('ExposeHeader'),
    maxAgeSeconds: maxAge === undefined ? undefined : Number(maxAge),
  };
}

export async function putCors(ctx: Context): Promise<void> {
  const bucket = bucketOf(ctx);
  const doc = parseXmlBody(await configBody(ctx), 'CORSConfiguration');
  const rules = children(doc, 'CORSRule').map(parseCorsRule);
  if (rules.length === 0 || rules.length > 100) throw errors.malformedXml();
  bucket.cors = rules;
  await ctx.store.persist({ bucket: bucket.name });
  send(ctx, 200);
}

const noCors = (bucket: string) =>
  new S3Error(404, 'NoSuchCORSConfiguration', 'The CORS configuration does not exist', {
    BucketName: bucket,
  });

export function getCors(ctx: Context): void {
  const bucket = bucketOf(ctx);
  if (!bucket.cors) throw noCors(bucket.name);
  send(
    ctx,
    200,
    {},
    xmlDocument('CORSConfiguration', {
      CORSRule: bucket.cors.map((r) => ({
        AllowedHeader: r.allowedHeaders,
        AllowedMethod: r.allowedMethods,
        AllowedOrigin: r.allowedOrigins,
        ExposeHeader: r.exposeHeaders,
        MaxAgeSeconds: r.maxAgeSeconds,
      })),
    }),
  );
}

export async function deleteCors(ctx: Context): Promise<void> {
  const bucket = bucketOf(ctx);
  bucket.cors = undefined;
  await ctx.store.persist({ bucket: bucket.name });
  send(ctx, 204);
}
