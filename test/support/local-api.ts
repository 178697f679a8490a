/** Talking to the local stack's API as a browser would: JSON calls with the token, and presigned PUTs. */
import { createHash } from 'node:crypto';

export interface LocalApiResponse {
  // biome-ignore lint/suspicious/noExplicitAny: test responses are asserted field by field.
  body: any;
  status: number;
  headers: Headers;
}

export function localApi(endpoints: { readonly api: string; readonly token: string }) {
  const call = async (method: string, path: string, body?: unknown): Promise<LocalApiResponse> => {
    const response = await fetch(`${endpoints.api}${path}`, {
      method,
      redirect: 'manual',
      headers: { authorization: `Bearer ${endpoints.token}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : undefined };
  };

  /**
   * Declares a file and, when the API asks for its bytes (201), PUTs them with the headers it says to
   * send (fetch sets content-length and host, its automaticHeaders), plus `extraHeaders` (a hostile
   * uploader's). Returns the declaration's answer and the PUT's status.
   */
  const declareAndPut = async (
    path: string,
    bytes: Buffer,
    contentType: string,
    extraHeaders: Record<string, string> = {},
  ) => {
    const created = await call('POST', '/v1/uploads', {
      path,
      size: bytes.length,
      sha256: sha256Hex(bytes),
      contentType,
    });
    let putStatus: number | undefined;
    if (created.status === 201) {
      const { url, headers } = created.body.upload;
      putStatus = (
        await fetch(url, {
          method: 'PUT',
          headers: { ...headers, ...extraHeaders },
          body: new Uint8Array(bytes),
        })
      ).status;
    }
    return { created, putStatus };
  };

  return { call, declareAndPut };
}

export const sha256Hex = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
