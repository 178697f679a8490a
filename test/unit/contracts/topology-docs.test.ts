/**
 * The topology keys an operator sets in `mirror.config.json`, against the tables of docs/deploy.md
 * that explain them: a key the schema takes and no table names is a setting nobody can find (the
 * JWT authorizer's issuer and audience were such keys, required with `api.auth: "jwt"`).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { topologySchema } from '../../../contracts/topology.ts';

const deployDoc = readFileSync(new URL('../../../docs/deploy.md', import.meta.url), 'utf8');

/** The keys of a section's object schema, through its default (`.prefault`, `.default`). */
function sectionKeys(section: 'api' | 'monitoring'): string[] {
  type Node = { shape?: Record<string, unknown>; def?: { innerType?: Node } };
  let node = topologySchema.shape[section] as unknown as Node;
  while (node.shape === undefined && node.def?.innerType !== undefined) node = node.def.innerType;
  return Object.keys(node.shape ?? {});
}

/** The first column of every table whose header names the section's keys. */
function documentedKeys(header: RegExp): string[] {
  const keys: string[] = [];
  let inTable = false;
  for (const line of deployDoc.split('\n')) {
    if (header.test(line)) inTable = true;
    else if (!line.startsWith('|')) inTable = false;
    else if (inTable) {
      const name = /^\| `([A-Za-z]+)`/.exec(line)?.[1];
      if (name !== undefined) keys.push(name);
    }
  }
  return keys;
}

describe('docs/deploy.md names every topology key', () => {
  it('of the api section', () => {
    const keys = sectionKeys('api');
    expect(keys.length).toBeGreaterThan(5);
    expect([...new Set(documentedKeys(/^\| `api` key \|/))].sort()).toEqual([...keys].sort());
  });

  it('of the monitoring section', () => {
    const keys = sectionKeys('monitoring');
    expect(keys.length).toBeGreaterThan(5);
    expect([...new Set(documentedKeys(/^\| Topology key \|/))].sort()).toEqual([...keys].sort());
  });
});
