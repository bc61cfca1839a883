// The run config → datasetRun input: stage 2 continues stage 1's round numbering and images,
// shares its round settings, and carries the detector's decoding to both pre-fill and training.
import { describe, expect, it } from 'vitest';
import { loadRunConfig } from '../../lib/run-config.ts';
import { datasetRunInput } from '../../lib/run-input.ts';

const BASE = `run: demo
images: { prefix: s3://photos/raw/ }
output: s3://datasets/out/
models: { sam: s3://models/sam/ }
stage3: { enabled: false }
`;

describe('datasetRunInput', () => {
  it('with stage3.skipAnnotated, stage 3 starts after the images stages 1 and 2 annotate', () => {
    const config = (stage3: string) =>
      loadRunConfig(
        BASE.replace('stage3: { enabled: false }', `stage3: ${stage3}`) +
          'stage1: { enabled: true, rounds: 2, imagesPerRound: 5 }\nstage2: { enabled: true, rounds: 3, imagesPerRound: 4 }\n',
        '/tmp/run.yaml',
      );
    expect(datasetRunInput(config('{ skipAnnotated: true }')).stage3!.shardTemplate.firstImage).toBe(22);
    expect(datasetRunInput(config('{}')).stage3!.shardTemplate.firstImage).toBeUndefined();
    expect(
      datasetRunInput(config('{ skipAnnotated: true }')).stage3!.shardTemplate.segmenter,
    ).not.toHaveProperty('skipAnnotated');
  });

  it('puts stage 2 after stage 1: rounds, images, round settings, detector decoding', () => {
    const input = datasetRunInput(
      loadRunConfig(
        BASE +
          `stage1: { enabled: true, rounds: 3, imagesPerRound: 10, lease: 5m }
stage2:
  enabled: true
  rounds: 2
  imagesPerRound: 4
  targetMasksPerRound: 50
  detector: { scoreThreshold: 0.2 }
  retrain: { steps: 7, minGain: 0.01 }
`,
        '/tmp/run.yaml',
      ),
    );
    const stage2 = input.stage2!;
    expect(stage2).toMatchObject({ rounds: 2, imagesPerRound: 4, firstRound: 4, firstImage: 30 });
    expect(stage2.round).toMatchObject({ leaseSeconds: 300, targetMasks: 50, modelUri: 's3://models/sam/' });
    expect(input.stage1!.round.targetMasks).toBeNull();
    expect(stage2.prefill).toMatchObject({ prompt: 'box', detect: { scoreThreshold: 0.2 } });
    expect(stage2.detector).toMatchObject({
      registry: 's3://datasets/out/models',
      detectorName: 'detector',
      seedUri: null,
      gate: { minGain: 0.01 },
      train: { steps: 7, decode: { scoreThreshold: 0.2 } },
    });
    expect(stage2.sam).toEqual({ registry: 's3://datasets/out/models', name: 'sam' });
    expect(input.configSummary.stages).toBe('stage1,stage2');
  });

  it('starts stage 2 at the first image and round without stage 1, from models.detector', () => {
    const input = datasetRunInput(
      loadRunConfig(
        BASE.replace(
          'models: { sam: s3://models/sam/ }',
          'models: { sam: s3://models/sam/, detector: s3://models/det/ }',
        ) + 'stage2: { enabled: true }\n',
        '/tmp/run.yaml',
      ),
    );
    expect(input.stage1).toBeUndefined();
    expect(input.stage2).toMatchObject({
      firstRound: 1,
      firstImage: 0,
      detector: { seedUri: 's3://models/det/' },
    });
  });
});
