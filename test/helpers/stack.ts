// Integration tests read the dev stack started by test/integration/global-setup.ts through inject('stack').
import { inject } from 'vitest';
import type { StackInfo } from '../../infra/stack-info.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    stack: StackInfo;
  }
}

export function testStack(): StackInfo {
  return inject('stack');
}
