/**
 * A ledger whose live-files index has not caught up yet (as on AWS, where a GSI is eventually
 * consistent): `hasLiveFileUnder` sees nothing, so only a commit's own write can refuse.
 */
export function indexBehind<L extends { hasLiveFileUnder(folder: string): Promise<boolean> }>(ledger: L): L {
  return new Proxy(ledger, {
    get(target, property) {
      if (property === 'hasLiveFileUnder') return async () => false;
      const value = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}
