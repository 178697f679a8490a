/**
 * The boundaries between the project's parts, as imports. Each part may import only the parts
 * its row names (the agent ships alone to on-premises servers, contracts are shared by every
 * part and the browser, core knows no AWS SDK), and no two top-level folders import each other,
 * even through others. Import specifiers are read with TypeScript's own pre-processor
 * (static, re-exports, dynamic `import()` and `import type` alike).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const TOP_LEVEL = ['agent', 'cli', 'functions', 'local', 'web', 'lib', 'contracts', 'common'] as const;

/** A part of the tree: the folder's files, except those of a more specific part. */
interface Rule {
  readonly part: string;
  /** Parts (folders, relative to the root) whose files it may import. */
  readonly mayImport: readonly string[];
  /** npm packages it may import: `*` any, else the names. */
  readonly packages: '*' | readonly string[];
  /** May import node: built-ins. */
  readonly node: boolean;
  /** npm packages it must never import, even where `packages` is `*`. */
  readonly never?: RegExp;
}

const RULES: readonly Rule[] = [
  { part: 'contracts', mayImport: ['contracts'], packages: ['zod'], node: false },
  { part: 'common', mayImport: ['common', 'contracts'], packages: '*', node: true },
  {
    part: 'functions/core',
    mayImport: ['functions/core', 'contracts', 'common'],
    packages: '*',
    node: true,
    never: /^@aws-sdk\//,
  },
  {
    part: 'functions/adapters',
    mayImport: ['functions/adapters', 'functions/core', 'contracts', 'common'],
    packages: '*',
    node: true,
  },
  { part: 'functions/handlers', mayImport: ['functions', 'contracts', 'common'], packages: '*', node: true },
  { part: 'agent', mayImport: ['agent', 'contracts', 'common'], packages: '*', node: true },
  { part: 'web/client', mayImport: ['web/client', 'contracts', 'common'], packages: '*', node: false },
  {
    part: 'cli',
    mayImport: ['cli', 'agent', 'web/client', 'functions', 'contracts', 'common'],
    packages: '*',
    node: true,
  },
  { part: 'lib', mayImport: ['lib', 'contracts'], packages: '*', node: true },
  {
    part: 'local',
    mayImport: ['local', 'agent', 'cli', 'functions', 'web', 'lib', 'contracts', 'common'],
    packages: '*',
    node: true,
  },
];

function tsFiles(folder: string): string[] {
  const base = join(ROOT, folder);
  if (!existsSync(base)) return [];
  return (readdirSync(base, { recursive: true }) as string[])
    .filter((name) => /\.(ts|mts)$/.test(name) && !name.endsWith('.d.ts'))
    .filter((name) => !name.split(sep).some((segment) => segment === 'node_modules' || segment === 'dist'))
    .map((name) => join(base, name));
}

/** The folder path of a file relative to the root, with `/` separators. */
const rel = (file: string) => relative(ROOT, file).split(sep).join('/');

function specifiers(file: string): string[] {
  const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
  return info.importedFiles.map((f) => f.fileName);
}

type Target = { kind: 'file'; path: string } | { kind: 'node' } | { kind: 'package'; name: string };

function classify(file: string, specifier: string): Target {
  if (specifier.startsWith('.')) return { kind: 'file', path: rel(resolve(dirname(file), specifier)) };
  if (specifier.startsWith('node:') || builtinModules.includes(specifier)) return { kind: 'node' };
  const parts = specifier.split('/');
  return {
    kind: 'package',
    name: specifier.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] ?? ''),
  };
}

const within = (path: string, folder: string) => path === folder || path.startsWith(`${folder}/`);

/** The most specific rule for a file. */
function ruleOf(path: string): Rule | undefined {
  return RULES.filter((r) => within(path, r.part)).sort((a, b) => b.part.length - a.part.length)[0];
}

function allowed(rule: Rule, target: Target): boolean {
  switch (target.kind) {
    case 'node':
      return rule.node;
    case 'package':
      if (rule.never?.test(target.name)) return false;
      return rule.packages === '*' || rule.packages.includes(target.name);
    case 'file':
      if (within(target.path, 'test')) return false;
      if (!TOP_LEVEL.some((top) => within(target.path, top))) return true;
      return rule.mayImport.some((part) => within(target.path, part));
  }
}

function violations(rule: Rule): string[] {
  const files = tsFiles(rule.part).filter((file) => ruleOf(rel(file)) === rule);
  return files.flatMap((file) =>
    specifiers(file)
      .filter((specifier) => !allowed(rule, classify(file, specifier)))
      .map((specifier) => `${rel(file)} imports '${specifier}'`),
  );
}

/** Which top-level folders each top-level folder imports. */
function folderGraph(): Map<string, Set<string>> {
  const edges = new Map<string, Set<string>>(TOP_LEVEL.map((t) => [t, new Set<string>()]));
  for (const top of TOP_LEVEL) {
    for (const file of tsFiles(top)) {
      const targets = specifiers(file).map((specifier) => classify(file, specifier));
      for (const target of targets) {
        const to = target.kind === 'file' ? TOP_LEVEL.find((t) => within(target.path, t)) : undefined;
        if (to && to !== top) edges.get(top)?.add(to);
      }
    }
  }
  return edges;
}

/** A path of edges from `from` to `goal`, if any. */
function pathBetween(
  edges: Map<string, Set<string>>,
  from: string,
  goal: string,
  seen = new Set<string>(),
): string[] | undefined {
  if (from === goal) return [goal];
  if (seen.has(from)) return undefined;
  seen.add(from);
  for (const next of edges.get(from) ?? []) {
    const path = pathBetween(edges, next, goal, seen);
    if (path) return [from, ...path];
  }
  return undefined;
}

describe('import boundaries', () => {
  it.each(RULES.map((r) => [r.part, r] as const))('%s imports only what its row allows', (_, rule) => {
    expect(violations(rule)).toEqual([]);
  });

  it('no folder-level import loop among the top-level folders', () => {
    const edges = folderGraph();
    // Every loop goes through some edge a -> b with a path b -> ... -> a.
    const loops = [...edges].flatMap(([from, tos]) =>
      [...tos].flatMap((to) => {
        const back = pathBetween(edges, to, from);
        return back ? [[from, ...back].join(' -> ')] : [];
      }),
    );
    expect(loops).toEqual([]);
  });

  it('the scan sees the imports it judges, and the table refuses what it should', () => {
    const agentFiles = tsFiles('agent').map(rel);
    expect(agentFiles).toContain('agent/safe-path.ts');
    expect(specifiers(join(ROOT, 'agent/safe-path.ts'))).toContain('../contracts/paths.ts');
    expect(classify(join(ROOT, 'agent/x.ts'), '../functions/core/paths.js')).toEqual({
      kind: 'file',
      path: 'functions/core/paths.js',
    });
    const agent = RULES.find((r) => r.part === 'agent') as Rule;
    expect(allowed(agent, classify(join(ROOT, 'agent/x.ts'), '../functions/adapters/s3.js'))).toBe(false);
    expect(allowed(agent, classify(join(ROOT, 'agent/x.ts'), '../cli/errors.ts'))).toBe(false);
    expect(allowed(agent, classify(join(ROOT, 'agent/x.ts'), '../contracts/paths.ts'))).toBe(true);
    const contracts = RULES.find((r) => r.part === 'contracts') as Rule;
    expect(allowed(contracts, classify(join(ROOT, 'contracts/x.ts'), 'node:crypto'))).toBe(false);
    const core = RULES.find((r) => r.part === 'functions/core') as Rule;
    expect(allowed(core, classify(join(ROOT, 'functions/core/x.ts'), '@aws-sdk/client-s3'))).toBe(false);
  });
});
