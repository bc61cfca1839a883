import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          testTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          globalSetup: ['test/integration/global-setup.ts'],
          testTimeout: 300_000,
          hookTimeout: 300_000,
          // One real dev stack is shared by every integration file; run the files one at a time
          // so timing-sensitive tests (killed workers, restarted servers) do not starve each other.
          fileParallelism: false,
        },
      },
    ],
  },
});
