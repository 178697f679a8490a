import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConnection, normaliseApiUrl } from '../../../cli/endpoints.ts';
import { ConfigError } from '../../../cli/errors.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-cli-endpoints-'));
  await mkdir(join(dir, '.mirror'));
  await writeFile(
    join(dir, '.mirror', 'endpoints.json'),
    JSON.stringify({ api: 'http://127.0.0.1:8787/', token: 'file-token', s3: 'http://127.0.0.1:4569' }),
  );
  await mkdir(join(dir, 'custom-data'));
  await writeFile(
    join(dir, 'custom-data', 'endpoints.json'),
    JSON.stringify({ api: 'http://127.0.0.1:9999', token: 'custom-token' }),
  );
  await writeFile(join(dir, 'broken.json'), '{ not json');
  await writeFile(join(dir, 'no-token.json'), JSON.stringify({ api: 'http://127.0.0.1:1' }));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('loadConnection', () => {
  it('reads $MIRROR_DATA_DIR/endpoints.json, defaulting the folder to .mirror', async () => {
    expect(await loadConnection({}, {}, dir)).toEqual({
      api: 'http://127.0.0.1:8787',
      auth: 'bearer',
      token: 'file-token',
    });
    expect(await loadConnection({}, { MIRROR_DATA_DIR: 'custom-data' }, dir)).toEqual({
      api: 'http://127.0.0.1:9999',
      auth: 'bearer',
      token: 'custom-token',
    });
  });

  it('reads --endpoints <file> relative to the working directory', async () => {
    expect(await loadConnection({ endpoints: 'custom-data/endpoints.json' }, {}, dir)).toEqual({
      api: 'http://127.0.0.1:9999',
      auth: 'bearer',
      token: 'custom-token',
    });
  });

  it('reads $MIRROR_ENDPOINTS, as the agent does, over $MIRROR_DATA_DIR; --endpoints wins over it', async () => {
    const env = { MIRROR_ENDPOINTS: 'custom-data/endpoints.json', MIRROR_DATA_DIR: 'elsewhere' };
    expect(await loadConnection({}, env, dir)).toMatchObject({ token: 'custom-token' });
    expect(await loadConnection({ endpoints: '.mirror/endpoints.json' }, env, dir)).toMatchObject({
      token: 'file-token',
    });
  });

  it('a missing file says how to fix it', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'mm-cli-empty-'));
    try {
      const err = await loadConnection({}, {}, empty).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).exitCode).toBe(1);
      expect((err as Error).message).toBe(
        `no endpoints file at ${join(empty, '.mirror', 'endpoints.json')}: ` +
          'start the local stack with npm start, or pass --api/--token',
      );
      await expect(loadConnection({ api: 'https://h' }, {}, empty)).rejects.toThrow(
        /--api given without --token/,
      );
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });

  it('refuses an endpoints file another user owns or may write: it says where your files and token go (probe localsec)', async () => {
    // A shared folder (/tmp, a web root the web server's group writes): someone else's
    // .mirror/endpoints.json named their own listener, which got the bytes of every upload and
    // the MIRROR_API_TOKEN of a user who set only the token.
    const shared = await mkdtemp(join(tmpdir(), 'mm-cli-planted-'));
    try {
      await mkdir(join(shared, '.mirror'));
      const planted = join(shared, '.mirror', 'endpoints.json');
      await writeFile(planted, JSON.stringify({ api: 'http://127.0.0.1:1', token: 'planted' }));
      await chmod(planted, 0o666);
      const writable = await loadConnection({}, { MIRROR_API_TOKEN: 'mine' }, shared).catch(
        (e: unknown) => e,
      );
      expect(writable).toBeInstanceOf(ConfigError);
      expect((writable as Error).message).toBe(
        `endpoints file ${planted} is not to be trusted: other users may write it (mode 0666). ` +
          'It names where the CLI sends your files and token: fix its mode (chmod go-w) if it is yours, else pass --api and --token',
      );
      await chmod(planted, 0o620);
      await expect(loadConnection({ endpoints: planted }, {}, shared)).rejects.toThrow(
        'other users may write it (mode 0620)',
      );
      await chmod(planted, 0o600);
      expect(await loadConnection({}, {}, shared)).toMatchObject({ api: 'http://127.0.0.1:1' });
      // Another user's file, even one only its owner may write, is that user's word, not yours.
      if (process.getuid?.() === 0) {
        await chown(planted, 65534, 65534);
        await expect(loadConnection({}, {}, shared)).rejects.toThrow(
          `endpoints file ${planted} is not to be trusted: it belongs to another user (uid 65534)`,
        );
      }
    } finally {
      await rm(shared, { recursive: true, force: true });
    }
  });

  it('--api and --token override the file without reading it', async () => {
    const conn = await loadConnection(
      { api: 'https://api.example.com/prod/', token: 'flag-token', endpoints: 'does-not-exist.json' },
      {},
      dir,
    );
    expect(conn).toEqual({ api: 'https://api.example.com/prod', auth: 'bearer', token: 'flag-token' });
  });

  it('environment variables override the file, flags override the environment, field by field', async () => {
    expect(await loadConnection({}, { MIRROR_API_TOKEN: 'env-token' }, dir)).toEqual({
      api: 'http://127.0.0.1:8787',
      auth: 'bearer',
      token: 'env-token',
    });
    expect(
      await loadConnection(
        { token: 'flag-token' },
        { MIRROR_API_URL: 'https://10.0.0.1:1', MIRROR_API_TOKEN: 'env-token' },
        dir,
      ),
    ).toEqual({ api: 'https://10.0.0.1:1', auth: 'bearer', token: 'flag-token' });
  });

  it('--auth iam (or MIRROR_API_AUTH=iam) needs the API only, no token; another value is refused', async () => {
    expect(
      await loadConnection(
        { api: 'https://abc123.execute-api.eu-west-1.amazonaws.com', auth: 'iam' },
        {},
        dir,
      ),
    ).toEqual({ api: 'https://abc123.execute-api.eu-west-1.amazonaws.com', auth: 'iam' });
    expect(
      await loadConnection({ endpoints: 'no-token.json' }, { MIRROR_API_AUTH: 'iam' }, dir),
    ).toMatchObject({ auth: 'iam' });
    await expect(loadConnection({ api: 'https://x.example', auth: 'jwt' }, {}, dir)).rejects.toThrow(
      /not bearer or iam/,
    );
  });

  it('a bad flag value is a usage error (exit 2); a bad variable or file value, configuration (exit 1)', async () => {
    const exitOf = (p: Promise<unknown>) =>
      p.then(
        () => 0,
        (e: { exitCode?: number }) => e.exitCode,
      );
    expect(await exitOf(loadConnection({ api: 'https://x.example', auth: 'jwt' }, {}, dir))).toBe(2);
    expect(await exitOf(loadConnection({ api: 'not a url', token: 't' }, {}, dir))).toBe(2);
    expect(await exitOf(loadConnection({ api: 'https://x.example' }, { MIRROR_API_AUTH: 'jwt' }, dir))).toBe(
      1,
    );
    expect(
      await exitOf(loadConnection({}, { MIRROR_API_URL: 'not a url', MIRROR_API_TOKEN: 't' }, dir)),
    ).toBe(1);
  });

  it('rejects a malformed file or URL with the reason', async () => {
    await expect(loadConnection({ endpoints: 'broken.json' }, {}, dir)).rejects.toThrow(/is not valid JSON/);
    await expect(loadConnection({ endpoints: 'no-token.json' }, {}, dir)).rejects.toThrow(/has no "token"/);
    await expect(loadConnection({ api: 'ftp://x', token: 't' }, {}, dir)).rejects.toThrow(
      /--api: "ftp:\/\/x" must be an http/,
    );
    expect(() => normaliseApiUrl('not a url', '--api')).toThrow(/is not a URL/);
  });

  it('refuses plain http to any host but this machine: the token or signature would cross the network in clear (probe leak, L1)', async () => {
    for (const api of ['http://192.0.2.2:8787', 'http://api.example.com', 'http://10.0.0.1:1']) {
      await expect(loadConnection({ api, token: 't' }, {}, dir), api).rejects.toThrow(
        /clear text.*https:\/\//,
      );
      await expect(loadConnection({}, { MIRROR_API_URL: api, MIRROR_API_TOKEN: 't' }, dir)).rejects.toThrow(
        /MIRROR_API_URL/,
      );
    }
    for (const api of [
      'http://127.0.0.1:8787',
      'http://localhost:8787',
      'http://[::1]:8787',
      'http://127.1.2.3',
    ]) {
      expect(normaliseApiUrl(api, '--api'), api).toBe(api);
    }
    expect(normaliseApiUrl('https://api.example.com/', '--api')).toBe('https://api.example.com');
  });
});
