/**
 * CORS as S3 applies a bucket's rules: the first rule matching the origin, the method and
 * (for a preflight) every requested header wins; without a match a preflight is refused
 * (403) and an actual request gets no CORS headers, so the browser withholds the answer.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { headerValue } from './body.ts';
import type { CorsRule } from './store.ts';
import { S3Error } from './xml.ts';

/** `*` matches any run of characters (one per pattern), case-insensitive as S3 compares. */
function wildcard(pattern: string, value: string): boolean {
  const p = pattern.toLowerCase();
  const v = value.toLowerCase();
  const star = p.indexOf('*');
  if (star < 0) return p === v;
  const head = p.slice(0, star);
  const tail = p.slice(star + 1);
  return v.length >= head.length + tail.length && v.startsWith(head) && v.endsWith(tail);
}

function matchRule(
  rules: readonly CorsRule[] | undefined,
  origin: string,
  method: string,
  requestHeaders: readonly string[],
): CorsRule | undefined {
  return rules?.find(
    (r) =>
      r.allowedOrigins.some((o) => wildcard(o, origin)) &&
      r.allowedMethods.includes(method) &&
      requestHeaders.every((h) => r.allowedHeaders.some((a) => wildcard(a, h))),
  );
}

function allowHeaders(res: ServerResponse, rule: CorsRule, origin: string): void {
  const any = rule.allowedOrigins.includes('*');
  res.setHeader('access-control-allow-origin', any ? '*' : origin);
  if (!any) res.setHeader('access-control-allow-credentials', 'true');
  res.setHeader('access-control-allow-methods', rule.allowedMethods.join(', '));
  if (rule.exposeHeaders.length > 0)
    res.setHeader('access-control-expose-headers', rule.exposeHeaders.join(', '));
  if (rule.maxAgeSeconds !== undefined) res.setHeader('access-control-max-age', String(rule.maxAgeSeconds));
}

/** Answers a preflight (`OPTIONS`), or throws S3's refusal. */
export function preflight(
  req: IncomingMessage,
  res: ServerResponse,
  rules: readonly CorsRule[] | undefined,
): void {
  const origin = headerValue(req.headers, 'origin');
  const method = headerValue(req.headers, 'access-control-request-method');
  if (origin === undefined || method === undefined) {
    throw new S3Error(400, 'BadRequest', 'Insufficient information. Origin request header needed.');
  }
  const requested = (headerValue(req.headers, 'access-control-request-headers') ?? '')
    .split(',')
    .map((h) => h.trim().toLowerCase())
    .filter((h) => h !== '');
  if (!rules) throw new S3Error(403, 'AccessForbidden', 'CORSResponse: CORS is not enabled for this bucket.');
  const rule = matchRule(rules, origin, method, requested);
  if (!rule) {
    throw new S3Error(
      403,
      'AccessForbidden',
      "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
    );
  }
  allowHeaders(res, rule, origin);
  if (requested.length > 0) res.setHeader('access-control-allow-headers', requested.join(', '));
  res.setHeader('vary', 'Origin, Access-Control-Request-Headers, Access-Control-Request-Method');
  res.statusCode = 200;
  res.setHeader('content-length', 0);
  res.end();
}

/** Adds the CORS headers an actual request from an allowed origin gets. */
export function corsHeaders(
  req: IncomingMessage,
  res: ServerResponse,
  rules: readonly CorsRule[] | undefined,
): void {
  const origin = headerValue(req.headers, 'origin');
  if (origin === undefined || !rules) return;
  res.setHeader('vary', 'Origin, Access-Control-Request-Headers, Access-Control-Request-Method');
  const rule = matchRule(rules, origin, req.method ?? 'GET', []);
  if (rule) allowHeaders(res, rule, origin);
}
