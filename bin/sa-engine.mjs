#!/usr/bin/env node
// Runs the TypeScript CLI straight from source through tsx, so `npm ci` needs no build step.
import { register } from 'tsx/esm/api';

// We run on Node 20 (package.json engines); the AWS SDK's notice about its future releases needing
// Node 22 is not actionable on every command, so it stays quiet unless the user asks for it.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
register();
await import('../cli/main.ts');
