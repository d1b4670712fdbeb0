import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/src/**/*.test.ts', 'services/*/src/**/*.test.ts', 'test/**/*.test.ts'],
    setupFiles: ['./test/setup-backend.ts'],
    pool: 'forks',
    // In CI also write a JSON report, from which .ci/run prints a plain 'N passed, N failed' closing line.
    reporters: process.env.CI ? ['default', ['json', { outputFile: 'test-artifacts/vitest.json' }]] : ['default'],
    // Generous limits: CI machines are slow and shared; tests assert behaviour, never speed.
    testTimeout: 180_000,
    hookTimeout: 180_000,
  },
});
