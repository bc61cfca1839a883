// `sa-engine audit RUN`: compare a finished run's automatic masks with human masks and write the
// report (runs/<run>/audit/report.html). The run's own config supplies the reference and the gate
// unless flags say otherwise.
import type { Command } from 'commander';
import { openObjectStore } from '../../lib/object-store.ts';
import { createRunConfigSchema, loadRunConfigFile, type AuditConfig } from '../../lib/run-config.ts';
import { runLayout } from '../../lib/run-layout.ts';
import { TASK_QUEUES } from '../../lib/task-queues.ts';
import { auditStage, manualAuditWorkflowId } from '../../workflows/audit.ts';
import { SAE_RUN } from '../../workflows/search-attributes.ts';
import { connectClient, resolveEndpoints, workflowUrl } from '../endpoints.ts';
import { startLocalWorkers, unlessWorkersFail } from '../local-workers.ts';

interface AuditFlags {
  config?: string;
  output?: string;
  reference?: string;
  format?: 'coco' | 'png';
  ignoreValue?: string;
  sample?: string;
  seed?: string;
  workers?: boolean;
  address?: string;
  namespace?: string;
}

export function registerAuditCommands(program: Command): void {
  program
    .command('audit')
    .description(
      'Audit a finished run: IoU of automatic masks against human masks, an HTML report and the gate.',
    )
    .argument('<run>', 'run id')
    .option('--config <file>', "the run's config file (output, audit reference and gate)")
    .option('--output <uri>', "the run's output prefix (instead of --config)")
    .option('--reference <uri>', 'human masks: a COCO JSON, or a folder of PNG/BMP masks')
    .option('--format <coco|png>', 'format of --reference')
    .option('--ignore-value <n>', 'mask value left out of IoU (png only; GrabCut uses 128)')
    .option('--sample <n>', 'images to audit')
    .option('--seed <n>', 'seed of the sample')
    .option('--workers', 'also run the workers in this process')
    .option('--address <host:port>', 'Temporal server')
    .option('--namespace <ns>', 'Temporal namespace')
    .action(async (runId: string, flags: AuditFlags) => {
      const { outputUri, audit } = await auditSettings(runId, flags);
      const endpoints = resolveEndpoints(flags);
      const client = await connectClient(endpoints);
      const workers = flags.workers ? await startLocalWorkers(endpoints) : undefined;
      try {
        const workflowId = manualAuditWorkflowId(runId);
        console.log(`Auditing ${runId} against ${audit.reference?.uri} ...`);
        const url = workflowUrl(endpoints, workflowId);
        if (url) console.log(`Temporal UI: ${url}`);
        const audited = client.workflow.execute(auditStage, {
          taskQueue: TASK_QUEUES.orchestration,
          workflowId,
          args: [{ runId, outputUri, audit }],
          typedSearchAttributes: [{ key: SAE_RUN, value: runId }],
        });
        const summary = await unlessWorkersFail(audited, workers);
        const out = openObjectStore(outputUri);
        const pct = (x: number | null) => (x === null ? 'n/a' : `${(100 * x).toFixed(1)}%`);
        console.log(`Audited ${summary.imagesAudited} images, ${summary.humanMasks} human masks.`);
        console.log(
          `  IoU > 0.90: ${pct(summary.shareAbove090)} (paper: 94%)   IoU > 0.75: ${pct(summary.shareAbove075)} (paper: 97%)`,
        );
        console.log(`  report: ${out.uri(summary.reportHtmlKey)}`);
      } finally {
        await workers?.shutdown();
        await client.connection.close();
      }
    });
}

async function auditSettings(
  runId: string,
  flags: AuditFlags,
): Promise<{ outputUri: string; audit: AuditConfig }> {
  const config = flags.config ? await loadRunConfigFile(flags.config) : undefined;
  const outputUri = flags.output ?? config?.output;
  if (!outputUri) throw new Error('say where the run is: --config <run config file> or --output <uri>');
  const fromRun = config?.audit ?? (await auditConfigOfRun(outputUri, runId));
  const reference = flags.reference
    ? {
        uri: flags.reference,
        format: flags.format ?? 'png',
        ignoreValue: flags.ignoreValue === undefined ? null : Number(flags.ignoreValue),
      }
    : fromRun?.reference;
  if (!reference) throw new Error('no human masks to compare with: pass --reference <uri> --format coco|png');
  // Validate the merged section with the run config schema, so flags get the same checks and defaults.
  const merged = createRunConfigSchema().shape.audit.parse({
    ...(fromRun ?? {}),
    enabled: true,
    reference,
    ...(flags.sample ? { sampleSize: Number(flags.sample) } : {}),
    ...(flags.seed ? { seed: Number(flags.seed) } : {}),
  });
  return { outputUri, audit: merged };
}

/** The audit section of the resolved config the run recorded in runs/<run>/run.json, if any. */
async function auditConfigOfRun(outputUri: string, runId: string): Promise<AuditConfig | undefined> {
  const out = openObjectStore(outputUri);
  if (!(await out.exists(runLayout.runRecord(runId)))) return undefined;
  const record = JSON.parse((await out.get(runLayout.runRecord(runId))).toString('utf8')) as {
    config?: { audit?: AuditConfig };
  };
  return record.config?.audit;
}
