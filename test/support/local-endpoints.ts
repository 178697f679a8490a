/** A local stack's endpoints.json, every member set (two targets: an S3 replica and a pull target). */
export const localEndpoints = {
  api: 'http://127.0.0.1:8787',
  token: 't',
  metrics: 'http://127.0.0.1:8787/metrics',
  s3: {
    endpoint: 'http://127.0.0.1:4568',
    region: 'us-east-1',
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    forcePathStyle: true,
  },
  sqs: { endpoint: 'http://127.0.0.1:4566' },
  dynamodb: { endpoint: 'http://127.0.0.1:4567' },
  table: 'mirror-ledger',
  originBucket: 'mirror-origin',
  feedShards: 4,
  ingest: {
    queue: 'http://127.0.0.1:4566/000000000000/mirror-ingest',
    dlq: 'http://127.0.0.1:4566/000000000000/mirror-ingest-dlq',
  },
  completion: {
    queue: 'http://127.0.0.1:4566/000000000000/mirror-completion',
    dlq: 'http://127.0.0.1:4566/000000000000/mirror-completion-dlq',
  },
  targets: {
    'eu-west-1': {
      kind: 's3' as const,
      bucket: 'replica-eu-west-1',
      region: 'eu-west-1',
      keyPrefix: 'media/',
      queue: 'http://127.0.0.1:4566/000000000000/mirror-target-eu-west-1.fifo',
      dlq: 'http://127.0.0.1:4566/000000000000/mirror-target-eu-west-1-dlq.fifo',
    },
    'onprem-dc1': {
      kind: 'pull' as const,
      pathPrefix: 'public/',
      queue: 'http://127.0.0.1:4566/000000000000/mirror-target-onprem-dc1.fifo',
      dlq: 'http://127.0.0.1:4566/000000000000/mirror-target-onprem-dc1-dlq.fifo',
    },
  },
};
