// Every storage key of a run (DESIGN.md "Storage layout"), relative to the run's output store.
// Keys are deterministic so that a retried activity overwrites its own output, never duplicates it.
/** Whose training set: SAM's or stage 2's box detector's. */
export type TrainingSetKind = 'sam' | 'detector';

export const runLayout = {
  runRecord: (run: string) => `runs/${run}/run.json`,
  stage3Plan: (run: string) => `runs/${run}/stage3/plan.json`,
  shardInput: (run: string, shard: number) => `runs/${run}/stage3/shards/${shardName(shard)}.input.jsonl`,
  shardResult: (run: string, shard: number) => `runs/${run}/stage3/shards/${shardName(shard)}.result.jsonl`,
  /** What the shard's masks are made with (model, generator settings), written before its first part. */
  shardSettings: (run: string, shard: number) =>
    `runs/${run}/stage3/shards/${shardName(shard)}.settings.json`,
  /** Dry run: one line per image with its format and size, or why it cannot be read. */
  shardProbe: (run: string, shard: number) => `runs/${run}/stage3/shards/${shardName(shard)}.probe.jsonl`,
  /** Results of one batch of a shard, kept until the shard's result manifest is written. */
  shardPart: (run: string, shard: number, start: number) =>
    `runs/${run}/stage3/shards/${shardName(shard)}.parts/${String(start).padStart(9, '0')}.jsonl`,
  shardPartsPrefix: (run: string, shard: number) => `runs/${run}/stage3/shards/${shardName(shard)}.parts/`,
  masks: (run: string, imageId: number) => `runs/${run}/masks/${imageId}.json`,
  masksPrefix: (run: string) => `runs/${run}/masks/`,
  datasetManifest: (run: string) => `runs/${run}/dataset/manifest.jsonl`,
  datasetStats: (run: string) => `runs/${run}/dataset/stats.json`,
  datasetFailed: (run: string) => `runs/${run}/dataset/failed.jsonl`,
  /** One shard's share of the dataset, merged into the files above by the last step. */
  datasetShardManifest: (run: string, shard: number) =>
    `runs/${run}/dataset/shards/${shardName(shard)}.manifest.jsonl`,
  datasetShardFailed: (run: string, shard: number) =>
    `runs/${run}/dataset/shards/${shardName(shard)}.failed.jsonl`,
  /** Written last: while it exists, the shard's manifest and failed parts are complete. */
  datasetShardSummary: (run: string, shard: number) =>
    `runs/${run}/dataset/shards/${shardName(shard)}.summary.json`,
  releaseImage: (run: string, imageId: number) => `runs/${run}/dataset/images/${imageId}.jpg`,
  /** Stage 1: an image's embedding, computed once per model (lib/sam/embedding-file.ts). */
  embedding: (run: string, imageId: number) => `runs/${run}/embeddings/${imageId}.bin`,
  /** Stage 1: everything a round stores (stage 2's rounds share the numbering and the folder). */
  stage1Round: (run: string, round: number) => `runs/${run}/stage1/round-${round}/`,
  /** Stage 1: one accepted mask of an image in a round (lib/stage1/annotations.ts). */
  stage1Annotation: (run: string, round: number, imageId: number, submissionId: string) =>
    `runs/${run}/stage1/round-${round}/annotations/${imageId}/${submissionId}.json`,
  stage1AnnotationsPrefix: (run: string, round: number) => `runs/${run}/stage1/round-${round}/annotations/`,
  /** Stage 1: an annotator's word that an image cannot be annotated. */
  stage1Flag: (run: string, round: number, imageId: number, annotator: string) =>
    `runs/${run}/stage1/round-${round}/flags/${imageId}/${annotator}.json`,
  stage1FlagsPrefix: (run: string, round: number) => `runs/${run}/stage1/round-${round}/flags/`,
  /** Stage 1: a round's figures (seconds per mask, masks per image, ...), written when it closes. */
  stage1RoundSummary: (run: string, round: number) => `runs/${run}/stage1/round-${round}/summary.json`,
  /** Stage 1: a round's accepted masks as COCO instances, and the manifest trainSam reads. */
  stage1RoundCoco: (run: string, round: number) => `runs/${run}/stage1/round-${round}/export/instances.json`,
  stage1RoundTrainingSet: (run: string, round: number) =>
    `runs/${run}/stage1/round-${round}/export/training-set.json`,
  /**
   * A retrain's training set (train.json, holdout.json, manifest.json; lib/stage1/training-set.ts):
   * SAM's `set-<n>`, stage 2's detector's `detector-set-<n>`.
   */
  stage1TrainingSet: (run: string, set: number, kind: TrainingSetKind = 'sam') =>
    `runs/${run}/stage1/training/${kind === 'sam' ? '' : `${kind}-`}set-${set}`,
  /** Stage 2: an image's pre-filled masks, from the detector's boxes (lib/stage2/prefill-store.ts). */
  stage2Prefill: (run: string, imageId: number) => `runs/${run}/stage2/prefill/${imageId}.json`,
  /** Stage 2: a pre-filled mask an annotator deleted, kept with who and why (lib/stage2/prefill-review.ts). */
  stage2Rejection: (run: string, round: number, imageId: number, index: number) =>
    `runs/${run}/stage1/round-${round}/rejected/${imageId}/${index}.json`,
  stage2RejectionsPrefix: (run: string, round: number) => `runs/${run}/stage1/round-${round}/rejected/`,
  /** Stage 1: who annotated which image of a stage-3 shard in a round (lib/stage1/provenance.ts). */
  stage1Provenance: (run: string, shard: number, round: number) =>
    `runs/${run}/stage1/provenance/${shardName(shard)}/round-${round}.jsonl`,
  stage1ProvenancePrefix: (run: string, shard: number) =>
    `runs/${run}/stage1/provenance/${shardName(shard)}/`,
  /** Everything the quality audit writes lives under this prefix, and nothing else does. */
  auditPrefix: (run: string) => `runs/${run}/audit/`,
  auditReportJson: (run: string) => `runs/${run}/audit/report.json`,
  auditReportHtml: (run: string) => `runs/${run}/audit/report.html`,
  auditRows: (run: string) => `runs/${run}/audit/rows.jsonl`,
  /** The audit's sample: what was drawn, then the images in chunks with their reference entries. */
  auditSample: (run: string) => `runs/${run}/audit/sample.json`,
  auditSamplePrefix: (run: string) => `runs/${run}/audit/sample/`,
  auditSampleChunk: (run: string, chunk: number) => `runs/${run}/audit/sample/${chunk}.json`,
  auditMatchedPrefix: (run: string) => `runs/${run}/audit/matched/`,
  /** A chunk's matches of automatic with human masks. */
  auditMatchedChunk: (run: string, chunk: number) => `runs/${run}/audit/matched/${chunk}.json`,
  auditGalleryPrefix: (run: string) => `runs/${run}/audit/gallery/`,
  /** The gallery's images in rank order (0 = the worst image); the report embeds them too. */
  auditGalleryImage: (run: string, rank: number) =>
    `runs/${run}/audit/gallery/${String(rank).padStart(3, '0')}.jpg`,
  /** The engine report: one self-contained page of the run's figures, stage by stage (lib/report/). */
  engineReport: (run: string) => `runs/${run}/report/index.html`,
};

/** Zero-padded so shard files list in numeric order. */
function shardName(shard: number): string {
  return String(shard).padStart(6, '0');
}
