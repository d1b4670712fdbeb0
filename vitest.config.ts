import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/src/**/*.test.ts', 'services/*/src/**/*.test.ts', 'test/**/*.test.ts'],
    setupFiles: ['./test/setup-backend.ts'],
    pool: 'forks',
    // Generous limits: CI machines are slow and shared; tests assert behaviour, never speed.
    testTimeout: 180_000,
    hookTimeout: 180_000,
  },
});
