import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Integration suites start their own emulators on ephemeral ports: files may run in parallel.
    pool: 'forks',
    // The memory-flatness tests collect garbage while sampling, so they see live memory only.
    execArgv: ['--expose-gc'],
    reporters: process.env.CI ? ['default'] : ['default'],
  },
});
