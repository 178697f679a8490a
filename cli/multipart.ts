/**
 * Large files: the API answered with a multipart plan. The browser client module
 * (web/client) already implements parts, per-part SHA-256, retries, resume and
 * completion over fetch; Node has fetch and file-backed Blobs, so the CLI uses the
 * same code rather than a second implementation.
 */
import { openAsBlob } from 'node:fs';
import { uploadFile as uploadInParts } from '../web/client/upload-file.ts';

export interface PartUploadRequest {
  file: string;
  path: string;
  sha256: string;
  contentType: string;
  ifVersion?: number | undefined;
  onBytes: (bytesSent: number) => void;
  timeoutSeconds: number;
}

export interface PartUploadResult {
  status: 'committed' | 'rejected';
  uploadId: string;
  version?: number | undefined;
  reason?: string | undefined;
  resumed: boolean;
}

export type SendParts = (request: PartUploadRequest) => Promise<PartUploadResult>;

export function createPartSender(connection: { api: string; token: string }): SendParts {
  return async (request) => {
    const blob = await openAsBlob(request.file);
    const result = await uploadInParts(blob, {
      api: connection.api,
      token: connection.token,
      path: request.path,
      contentType: request.contentType,
      ...(request.ifVersion === undefined ? {} : { ifVersion: request.ifVersion }),
      sha256: request.sha256,
      // No Web Worker in Node: parts are hashed on this thread, one at a time as they are sent.
      workerUrl: null,
      // The CLI answered the claim's challenge already (cli/upload.ts): the mirror wants the bytes.
      proof: false,
      verifyTimeoutMs: request.timeoutSeconds * 1000,
      onProgress: (p) => {
        if (p.phase === 'uploading') request.onBytes(p.bytesDone);
      },
    });
    return {
      status: result.status,
      uploadId: result.uploadId,
      version: result.version,
      reason: result.reason,
      resumed: result.resumed,
    };
  };
}
