/**
 * `--auth iam`: each request to the API is signed with SigV4 for `execute-api`, as API Gateway's
 * IAM authorizer checks it; checked here with the local stack's verifier (local/sigv4.ts), which
 * recomputes the signature as AWS does.
 */
import { describe, expect, it } from 'vitest';
import { iamSigner, signingRegion } from '../../../cli/iam-auth.ts';
import { sha256Hex, verifySigV4 } from '../../../local/sigv4.ts';
import { type FetchLike, MirrorApi } from '../../../web/client/api.ts';

const keys = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };
const env = { AWS_ACCESS_KEY_ID: keys.accessKeyId, AWS_SECRET_ACCESS_KEY: keys.secretAccessKey };
const API = 'https://abc123.execute-api.eu-west-1.amazonaws.com';

async function signed(url: string, body?: string) {
  const sign = await iamSigner(API, env);
  const headers = { accept: 'application/json', ...(body ? { 'content-type': 'application/json' } : {}) };
  const added = await sign({ method: body ? 'POST' : 'GET', url, headers, body });
  const target = new URL(url);
  return {
    added,
    request: {
      method: body ? 'POST' : 'GET',
      url: `${target.pathname}${target.search}`,
      headers: { ...headers, ...added, host: target.host },
      payloadHash: sha256Hex(body ?? ''),
    },
  };
}

describe('--auth iam: SigV4 for execute-api', () => {
  it('signs the path as sent (a file path with %2F), the query and the body, in the region of the API host', async () => {
    const { added, request } = await signed(`${API}/v1/files/photos%2F2024%2Fbeach.jpg/versions?limit=2`);
    expect(added.authorization).toMatch(
      /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/eu-west-1\/execute-api\/aws4_request/,
    );
    expect(
      await verifySigV4(request, { service: 'execute-api', credentials: keys, region: 'eu-west-1' }),
    ).toMatchObject({
      ok: true,
    });
    const post = await signed(`${API}/v1/uploads`, '{"path":"a.png"}');
    expect(await verifySigV4(post.request, { service: 'execute-api', credentials: keys })).toMatchObject({
      ok: true,
    });
    // Another body than the one signed is refused: the signature covers it.
    const tampered = { ...post.request, payloadHash: sha256Hex('{"path":"b.png"}') };
    expect(await verifySigV4(tampered, { service: 'execute-api', credentials: keys })).toMatchObject({
      ok: false,
      reason: 'signature',
    });
  });

  it('signs nothing for another host (a content link redirects to S3 with its own signature)', async () => {
    const sign = await iamSigner(API, env);
    expect(
      await sign({
        method: 'GET',
        url: 'https://bucket.s3.amazonaws.com/x?X-Amz-Signature=s',
        headers: {},
        body: undefined,
      }),
    ).toEqual({});
  });

  it('a signed request is not followed to another host: its session token and date would go with it', async () => {
    const seen: { url: string; redirect: RequestRedirect | undefined; headers: Record<string, string> }[] =
      [];
    const fetch: FetchLike = async (url, init) => {
      seen.push({ url, redirect: init.redirect, headers: init.headers as Record<string, string> });
      return new Response(null, { status: 307, headers: { location: 'https://collector.example/steal' } });
    };
    const api = new MirrorApi({
      baseUrl: API,
      sign: await iamSigner(API, { ...env, AWS_SESSION_TOKEN: 'session-secret' }),
      fetch,
      retries: 0,
    });
    await expect(api.listTargets()).rejects.toMatchObject({ code: 'bad_answer', status: 307 });
    expect(seen).toHaveLength(1);
    expect(seen[0]?.redirect).toBe('manual');
    expect(seen[0]?.headers['x-amz-security-token']).toBe('session-secret');
  });

  it("signs with the API's clock, read from its Date header, when this host's is minutes off (probe skew)", async () => {
    // The API's clock (hours from the real one, so that signing with the real clock fails too);
    // this host's runs 20 minutes fast, then, after an NTP step, 2 hours slow.
    const server = Date.now() + 3 * 3600_000;
    let local = server + 20 * 60_000;
    const seen: number[] = [];
    const fetch: FetchLike = async (url, init) => {
      const target = new URL(url);
      const headers = init.headers as Record<string, string>;
      const verdict = await verifySigV4(
        {
          method: init.method ?? 'GET',
          url: `${target.pathname}${target.search}`,
          headers: { ...headers, host: target.host },
          payloadHash: sha256Hex(typeof init.body === 'string' ? init.body : ''),
        },
        { service: 'execute-api', credentials: keys, region: 'eu-west-1', now: new Date(server) },
      );
      seen.push(verdict.ok ? 200 : 403);
      const date = new Date(server).toUTCString();
      return verdict.ok
        ? new Response('{"targets":[]}', {
            status: 200,
            headers: { date, 'content-type': 'application/json' },
          })
        : new Response(JSON.stringify({ message: verdict.message }), { status: 403, headers: { date } });
    };
    const api = new MirrorApi({
      baseUrl: API,
      sign: await iamSigner(API, env, () => local),
      fetch,
      retries: 0,
    });
    await expect(api.listTargets()).resolves.toEqual({ targets: [] });
    // The first was refused as too skewed; the API's Date corrected the clock, and the one resend passed.
    expect(seen).toEqual([403, 200]);
    await expect(api.listTargets()).resolves.toEqual({ targets: [] });
    expect(seen).toEqual([403, 200, 200]);
    local = server - 2 * 3600_000;
    await expect(api.listTargets()).resolves.toEqual({ targets: [] });
    expect(seen).toEqual([403, 200, 200, 403, 200]);
  });

  it('a refusal that is not about the clock is not resent (probe skew)', async () => {
    let calls = 0;
    const fetch: FetchLike = async () => {
      calls++;
      const date = new Date().toUTCString();
      return new Response('{"message":"Forbidden"}', { status: 403, headers: { date } });
    };
    const api = new MirrorApi({ baseUrl: API, sign: await iamSigner(API, env), fetch, retries: 0 });
    await expect(api.listTargets()).rejects.toMatchObject({ status: 403 });
    expect(calls).toBe(1);
  });

  it('takes the region from the API host, else AWS_REGION; a custom domain without one is refused', () => {
    expect(signingRegion(API, {})).toBe('eu-west-1');
    expect(signingRegion('https://media.example.com', { AWS_REGION: 'ap-south-1' })).toBe('ap-south-1');
    expect(() => signingRegion('https://media.example.com', {})).toThrow(/set AWS_REGION/);
  });
});
