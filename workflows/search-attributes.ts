// The search attributes sa-engine keeps current (registered by `sa-engine dev up`; register them on
// a production cluster with `temporal operator search-attribute create`). Filter runs in the Web UI
// with e.g. `SaeRun = "my-run"` or `SaeStage = "stage3"`.
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const SAE_RUN = defineSearchAttributeKey('SaeRun', SearchAttributeType.KEYWORD);
export const SAE_STAGE = defineSearchAttributeKey('SaeStage', SearchAttributeType.KEYWORD);
export const SAE_IMAGES_DONE = defineSearchAttributeKey('SaeImagesDone', SearchAttributeType.INT);
export const SAE_IMAGES_FAILED = defineSearchAttributeKey('SaeImagesFailed', SearchAttributeType.INT);
export const SAE_MASKS = defineSearchAttributeKey('SaeMasks', SearchAttributeType.INT);
export const SAE_MODEL = defineSearchAttributeKey('SaeModel', SearchAttributeType.KEYWORD);
/** Stage 1: the round a task or round workflow belongs to, "<run>/round-<k>". */
export const SAE_ROUND = defineSearchAttributeKey('SaeRound', SearchAttributeType.KEYWORD);
/** Stage 1: when an annotation task's lease ends; the epoch while nobody holds it. */
export const SAE_LEASE_UNTIL = defineSearchAttributeKey('SaeLeaseUntil', SearchAttributeType.DATETIME);
