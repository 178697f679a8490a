/**
 * S3 clients for a local stack's buckets, each signing for its bucket's region: the local S3, as S3
 * does, answers a request signed for another region than the bucket's with 400 (docs/local-s3.md),
 * so a test reading a replica bucket needs a client of the replica's region.
 */
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';

export interface LocalS3Endpoints {
  readonly s3: {
    readonly endpoint: string;
    /** The home region: the origin bucket's, and any bucket's the targets do not name. */
    readonly region: string;
    readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string };
  };
  readonly targets: Readonly<Record<string, { readonly bucket?: string; readonly region?: string }>>;
}

/** A bucket's client, by the bucket's name; `destroy()` closes every client made. */
export interface BucketClients {
  (bucket: string | undefined): S3Client;
  destroy(): void;
}

/**
 * One client per region, made on first use; a bucket's region is its target's, else the home one.
 * `config` goes to each client (checksum settings, say).
 */
export function bucketClients(e: LocalS3Endpoints, config: Partial<S3ClientConfig> = {}): BucketClients {
  const made = new Map<string, S3Client>();
  const regionOf = new Map(
    Object.values(e.targets).flatMap((t) => (t.bucket && t.region ? [[t.bucket, t.region] as const] : [])),
  );
  const of = (bucket: string | undefined): S3Client => {
    const region = (bucket === undefined ? undefined : regionOf.get(bucket)) ?? e.s3.region;
    let client = made.get(region);
    if (client === undefined) {
      client = new S3Client({
        ...config,
        region,
        endpoint: e.s3.endpoint,
        credentials: { ...e.s3.credentials },
        forcePathStyle: true,
      });
      made.set(region, client);
    }
    return client;
  };
  return Object.assign(of, {
    destroy: () => {
      for (const client of made.values()) client.destroy();
    },
  });
}
