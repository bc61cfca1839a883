import { defineConfig } from 'vitest/config';

// The AWS SDK warns on Node 20 about its future releases; not actionable in a test run. Set here
// for the global-setup process, and in `env` below for the test workers.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export default defineConfig({
  test: {
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          testTimeout: 60_000,
        },
      },
      {
        extends: true,
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
