// Placeholder: the real handler lands shortly (owned by the lead engineer).
export const handler = async (_event: unknown): Promise<unknown> => {
  throw new Error('api handler not implemented yet');
};
