/** What the local stack's /metrics says the ingest has committed (the bench and the chaos run wait on it). */
export async function committedTotal(stack: {
  readonly endpoints: { readonly metrics: string };
}): Promise<number> {
  const text = await (await fetch(stack.endpoints.metrics)).text();
  return Number(/^mirror_versions_committed_total (\d+)/m.exec(text)?.[1] ?? 0);
}
