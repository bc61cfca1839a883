// What the report borrows from the run's dataset statistics (runs/<run>/dataset/stats.json, written
// by lib/dataset/build.ts): the heatmap of mask centres and masks per image over the whole run.
// The statistics are optional for the audit: when absent or unreadable, the report says so in a
// note and leaves the sections out rather than failing.
import { z } from 'zod';
import type { ObjectStore } from '../object-store.ts';
import { runLayout } from '../run-layout.ts';
import type { Heatmap, RunMasksPerImage } from './report.ts';

const grid = z.array(z.array(z.number()));
const statsSchema = z.object({
  // lib/dataset/statistics.ts writes `centres.counts`; a plain `heatmap` grid is accepted too.
  centres: z.object({ counts: grid }).optional(),
  heatmap: z.union([grid, z.object({ counts: grid })]).optional(),
  masksPerImage: z
    .object({
      mean: z.number().nullable(),
      median: z.number().nullable(),
      histogram: z.array(z.object({ label: z.string(), count: z.number() })),
    })
    .optional(),
});

export interface RunStats {
  heatmap: Heatmap | null;
  masksPerImage: RunMasksPerImage | null;
  notes: string[];
}

export async function readRunStats(out: ObjectStore, runId: string): Promise<RunStats> {
  const key = runLayout.datasetStats(runId);
  const none: RunStats = { heatmap: null, masksPerImage: null, notes: [] };
  if (!(await out.exists(key))) {
    return {
      ...none,
      notes: [`No dataset statistics at ${key} yet: the report has no heatmap of mask centres.`],
    };
  }
  let parsed: z.infer<typeof statsSchema>;
  try {
    parsed = statsSchema.parse(JSON.parse((await out.get(key)).toString('utf8')));
  } catch (err) {
    const reason = err instanceof z.ZodError ? z.prettifyError(err) : (err as Error).message;
    return { ...none, notes: [`${out.uri(key)} could not be read (${reason}); the report leaves it out.`] };
  }
  const counts =
    parsed.centres?.counts ?? (Array.isArray(parsed.heatmap) ? parsed.heatmap : parsed.heatmap?.counts);
  const mpi = parsed.masksPerImage;
  return {
    heatmap: counts && counts.length > 0 ? { source: key, counts } : null,
    masksPerImage: mpi ? { source: key, mean: mpi.mean, median: mpi.median, histogram: mpi.histogram } : null,
    notes: [],
  };
}
