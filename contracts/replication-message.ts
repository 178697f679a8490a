/**
 * What a target's FIFO queue carries: one version of one path, as JSON. The fan-out builds
 * it through this schema; replicate and the on-prem agent parse it with the same schema.
 * A message is a hint, not a fact: consumers check it against the ledger before acting.
 */
import * as z from 'zod';

export const replicationMessageSchema = z.object({
  targetId: z.string(),
  path: z.string(),
  version: z.number().int().positive(),
  /** Lower-case hex; null for a tombstone. */
  sha256: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .nullable(),
  size: z.number().int().nonnegative(),
  contentType: z.string().nullable(),
  deleted: z.boolean(),
  committedAt: z.string(),
});

export type ReplicationMessage = Readonly<z.infer<typeof replicationMessageSchema>>;
